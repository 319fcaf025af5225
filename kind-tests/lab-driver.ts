// The lab as a cluster driver. With WIREMESH_E2E_LAB=<name> the suites attach to a
// lab that is already running (one lab shared by every suite of a run, which
// keeps the suite fast); otherwise a suite brings up its own lab and removes it.
// Pods are network namespaces sharing the host's files, so the test tools are the
// host's; the underlay of a node is its veth on the lab bridge, captured from the
// host side, without the apiserver's host (the bridge's own address).
import type { AgentStatus } from '../agent/index.ts';
import { Lab, type UpOptions } from '../lab/index.ts';
import { Cluster } from '../lab/cluster.ts';
import { toolPath } from '../sys/index.ts';
import type { RunOptions, RunResult } from '../sys/index.ts';
import type { ClusterDriver, ClusterPod, ContainerPort } from './driver.ts';
import { proberPath } from './netpol/prober.ts';
import { filterAnd, startStreamCapture, type Capture } from './probes.ts';

export class LabDriver implements ClusterDriver {
  readonly kind = 'lab';
  readonly lab: Lab;
  private readonly owned: boolean;

  private constructor(lab: Lab, owned: boolean) {
    this.lab = lab;
    this.owned = owned;
  }

  static async open(options: UpOptions): Promise<LabDriver> {
    const shared = process.env.WIREMESH_E2E_LAB;
    if (shared) return new LabDriver(await Lab.load(shared), false);
    return new LabDriver(await Lab.up(options), true);
  }

  /** A lab this suite owns outright, whatever the environment says. */
  static async fresh(options: UpOptions): Promise<LabDriver> {
    return new LabDriver(await Lab.up(options), true);
  }

  get kubeconfig(): string {
    return this.lab.state.kubeconfig;
  }

  nodeNames(): string[] {
    return this.lab.plan.nodes.map((n) => n.name);
  }

  pods(): ClusterPod[] {
    return this.lab.state.pods.map(({ namespace, name, node, ips }) => ({
      namespace,
      name,
      node,
      ips,
    }));
  }

  execInNode(node: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.lab.execInNode(node, argv, opts);
  }

  execInPod(
    namespace: string,
    pod: string,
    argv: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult> {
    return this.lab.execInPod(pod, argv, { ...opts, namespace });
  }

  async createPod(
    node: string,
    namespace: string,
    name: string,
    labels?: Record<string, string>,
    ports?: readonly ContainerPort[],
    command?: readonly string[],
  ): Promise<ClusterPod> {
    const p = await this.lab.addPod(node, namespace, name, labels, ports ? [...ports] : []);
    if (command?.length) {
      // Recorded by the lab, so `lab down` stops it too.
      await this.lab.spawnInNode(p.node, podProcName(namespace, name), [
        'nsenter',
        `--net=/run/netns/${p.netns}`,
        '--',
        ...command,
      ]);
    }
    return { namespace: p.namespace, name: p.name, node: p.node, ips: p.ips };
  }

  async deletePod(namespace: string, name: string): Promise<void> {
    await this.lab.stopProcess(podProcName(namespace, name));
    await this.lab.deletePod(name, namespace);
  }

  underlayIP(node: string): string {
    return this.lab.node(node).underlayIP;
  }

  agentStatus(node: string): Promise<AgentStatus> {
    return this.lab.agentStatus(node);
  }

  async pauseAgent(node: string): Promise<() => Promise<void>> {
    const name = this.lab.agentProcName(node);
    const rec = this.lab.state.procs.find((p) => p.name === name);
    if (!rec) throw new Error(`no agent process of ${node} in lab ${this.lab.plan.name}`);
    process.kill(rec.pid, 'SIGSTOP');
    return async () => {
      process.kill(rec.pid, 'SIGCONT');
    };
  }

  captureUnderlay(node: string, filter = ''): Promise<Capture> {
    const own = `not host ${this.lab.plan.gatewayIP}`;
    return startStreamCapture([], this.lab.node(node).hostVeth, filterAnd(own, filter));
  }

  captureInNode(node: string, iface: string, filter = ''): Promise<Capture> {
    return startStreamCapture(this.lab.execPrefix({ node }), iface, filter);
  }

  proberPath(): string {
    return proberPath();
  }

  async close(): Promise<void> {
    if (this.owned) await this.lab.down();
  }
}

/** The lab process of a pod's own command. */
function podProcName(namespace: string, name: string): string {
  return `pod-${namespace}-${name}`;
}

export async function openCluster(options: UpOptions): Promise<ClusterDriver> {
  const kind = process.env.WIREMESH_E2E_CLUSTER ?? 'lab';
  if (kind === 'lab') return LabDriver.open(options);
  if (kind === 'kind') {
    // kind-tests/kind/run.sh: a cluster with wiremesh installed, at $KUBECONFIG.
    const kubeconfig = process.env.KUBECONFIG;
    if (!kubeconfig) throw new Error('WIREMESH_E2E_CLUSTER=kind needs KUBECONFIG');
    const { KindDriver } = await import('./kind-driver.ts');
    return KindDriver.open(kubeconfig, process.env.WIREMESH_KUBECTL ?? 'kubectl');
  }
  if (kind === 'real') {
    // A real-node lab (lab/cluster.ts) already up, shared by the suites of a run: its
    // pods are the kubelet's, reached through kubectl like any kubeadm cluster's.
    const name = process.env.WIREMESH_E2E_LAB;
    if (!name) throw new Error('WIREMESH_E2E_CLUSTER=real needs WIREMESH_E2E_LAB (the lab name)');
    const { KindDriver } = await import('./kind-driver.ts');
    const cluster = await Cluster.load(name);
    return KindDriver.open(cluster.state.kubeconfig, toolPath('kubectl'), undefined, 'real');
  }
  throw new Error(`WIREMESH_E2E_CLUSTER=${kind}: the drivers are 'lab', 'real' and 'kind'`);
}
