// An in-memory PodWiring for unit tests: it keeps the pairs it wired (by host
// interface name, with owner, namespace and addresses) the way the kernel would,
// including the owner rule of teardown, and can fail on demand (`failNext`), with
// a plain error or as an unavailable worker.
import {
  podNetProblems,
  vethMac,
  type PodNetResult,
  type PodNetSpec,
  type PodWiring,
} from './podnet.ts';
import { WiringUnavailableError } from './netlinkd.ts';

export type FakeWiringOp = 'setup' | 'teardown' | 'check';

export class FakeWiring implements PodWiring {
  /** The pairs that exist, by host interface name. */
  readonly links = new Map<string, PodNetSpec>();
  readonly calls: { op: FakeWiringOp; hostIfName: string }[] = [];
  /** Namespaces that exist; every path exists when this is undefined. */
  netnsPaths: Set<string> | undefined;
  private readonly failures: { op: FakeWiringOp; error: Error }[] = [];

  /** The next call of `op` fails; `unavailable` fails it as a dead worker would. */
  failNext(op: FakeWiringOp, how: 'error' | 'unavailable' = 'error', message = 'injected'): void {
    this.failures.push({
      op,
      error: how === 'unavailable' ? new WiringUnavailableError(message) : new Error(message),
    });
  }

  private injected(op: FakeWiringOp, hostIfName: string): void {
    this.calls.push({ op, hostIfName });
    const i = this.failures.findIndex((f) => f.op === op);
    if (i >= 0) {
      const [f] = this.failures.splice(i, 1);
      if (f) throw f.error;
    }
  }

  setup(spec: PodNetSpec): Promise<PodNetResult> {
    return Promise.resolve().then(() => {
      this.injected('setup', spec.hostIfName);
      if (this.netnsPaths && !this.netnsPaths.has(spec.netns))
        throw new Error(`network namespace ${spec.netns} does not exist`);
      // As the kernel: the name is taken, and a pair of another attachment stays.
      const taken = this.links.get(spec.hostIfName);
      if (taken?.owner && taken.owner !== spec.owner)
        throw new Error(
          `creating veth ${spec.hostIfName}: it exists for attachment "${taken.owner}"`,
        );
      this.links.set(spec.hostIfName, { ...spec, addresses: [...spec.addresses] });
      return { hostMac: vethMac(spec.hostIfName, 'host'), podMac: vethMac(spec.hostIfName, 'pod') };
    });
  }

  teardown(hostIfName: string, owner?: string): Promise<void> {
    return Promise.resolve().then(() => {
      this.injected('teardown', hostIfName);
      const link = this.links.get(hostIfName);
      if (!link) return;
      if (owner !== undefined && link.owner && link.owner !== owner) return;
      this.links.delete(hostIfName);
    });
  }

  check(spec: PodNetSpec): Promise<string[]> {
    return Promise.resolve().then(() => {
      this.injected('check', spec.hostIfName);
      const link = this.links.get(spec.hostIfName);
      const v4 = link?.addresses.filter((a) => !a.includes(':')) ?? [];
      return podNetProblems(spec, {
        hostLink: link !== undefined,
        netns: !this.netnsPaths || this.netnsPaths.has(spec.netns),
        podLink: link !== undefined && link.podIfName === spec.podIfName,
        podAddrs: link?.addresses ?? [],
        hostRoutes: link?.addresses ?? [],
        podGateway4: v4.length ? '169.254.1.1' : '',
        podGateway6: link?.addresses.some((a) => a.includes(':')) ? 'fe80::1' : '',
      });
    });
  }
}
