// The real-node lab as the suites that reach into its nodes open it: the cluster
// driver (kubectl, probe pods) and the lab itself (node processes, reboots).
import { openCluster } from '../lab-driver.ts';
import { KindDriver } from '../kind-driver.ts';
import { Cluster } from '../../lab/cluster.ts';

export class RealLab {
  private opened: { driver: KindDriver; cluster: Cluster } | undefined;

  /**
   * Opens the lab named by WIREMESH_E2E_LAB (in test.before); `needs` says what the
   * suite does with real nodes, for the error when it is run without them.
   */
  async open(suite: string, needs: string): Promise<KindDriver> {
    const name = process.env.WIREMESH_E2E_LAB;
    if (process.env.WIREMESH_E2E_CLUSTER !== 'real' || !name)
      throw new Error(
        `this suite ${needs}: it needs WIREMESH_E2E_CLUSTER=real and WIREMESH_E2E_LAB`,
      );
    const driver = await openCluster({ name: suite, nodes: 3, podsPerNode: 0 });
    if (!(driver instanceof KindDriver)) throw new Error('this suite needs the real-node lab');
    this.opened = { driver, cluster: await Cluster.load(name) };
    return driver;
  }

  get driver(): KindDriver {
    if (!this.opened) throw new Error('no cluster: test.before failed');
    return this.opened.driver;
  }

  get cluster(): Cluster {
    if (!this.opened) throw new Error('no lab: test.before failed');
    return this.opened.cluster;
  }

  /** The driver's pods and namespace removed; nothing when the lab never opened. */
  async close(): Promise<void> {
    await this.opened?.driver.close();
  }

  get isOpen(): boolean {
    return this.opened !== undefined;
  }
}
