// The agent side of the CNI plugin: every request the relay in /opt/cni/bin forwards
// (environment + stdin) is parsed and validated here, answered with the spec's
// result or error JSON, and carried out with the node's IPAM and the pod wiring.
// An address reaches the runtime only after IPAM made its allocation durable; a
// failed ADD gives its address back and removes what it wired. The kernel work goes
// through a PodWiring (the agent's netlink worker); when that is unavailable (the
// worker died or is restarting) the request fails with code 11, try again later.
import {
  parseCniRequest,
  versionResult,
  errorResult,
  CniError,
  CniErrorCode,
  toCniError,
  cniVersionOf,
  type CniRequest,
} from './protocol.ts';
import { addResult } from './result.ts';
import { hostVethName, POD_GATEWAY_V4, POD_GATEWAY_V6, type PodWiring } from './podnet.ts';
import { WiringUnavailableError } from './netlinkd.ts';

/** What the handler needs from IPAM (ipam/'s NodeIpam provides it). */
/** An attachment asking for an address (a subset of ipam's AllocateRequest). */
export interface AttachmentRequest {
  handle: string;
  namespace: string;
  pod: string;
  containerID: string;
  ifName: string;
}

/** One address of an attachment, and the IP pool it came from (for the pool's MTU). */
export interface PodAllocation {
  address: string;
  pool?: string;
}

export interface PodIpam {
  /**
   * The attachment's addresses, one per family its node serves (dual-stack: an IPv4
   * and an IPv6 address), IPv4 first; all or none (a failure gives back what it took).
   */
  allocate(req: AttachmentRequest): Promise<PodAllocation[]>;
  release(handle: string): Promise<boolean>;
  /** The allocations recorded for a handle, if any. */
  lookup(
    handle: string,
  ): { addresses: string[]; namespace: string; pod: string; pools: string[] } | undefined;
  /** Every handle this node holds for a network (by handle prefix `<network>.`). */
  handles(network: string): string[];
  ready(): boolean;
}

export interface CniReply {
  code: number;
  stdout: string;
}

export interface CniHandlerOptions {
  ipam: PodIpam;
  /** The kernel work: veth pairs, addresses, routes, sysctls. */
  wiring: PodWiring;
  /**
   * Pod MTU: the smallest over the paths a pod of the pool (when known) can take; a
   * dual-stack pod takes the smaller of its two pools'.
   */
  mtu: (pool?: string) => number;
  log?: (msg: string, fields: Record<string, unknown>) => void;
}

export function handleOf(network: string, containerID: string, ifName: string): string {
  return `${network}.${containerID}.${ifName}`;
}

export class CniHandler {
  private readonly opts: CniHandlerOptions;
  constructor(opts: CniHandlerOptions) {
    this.opts = opts;
  }

  async handle(env: Record<string, string | undefined>, stdin: string): Promise<CniReply> {
    try {
      const stdout = await this.dispatch(parseCniRequest(env, stdin));
      return { code: 0, stdout };
    } catch (e) {
      const err =
        e instanceof WiringUnavailableError
          ? new CniError(
              CniErrorCode.tryAgainLater,
              'wiremesh cannot wire pods right now',
              e.message,
            )
          : toCniError(e);
      this.opts.log?.('CNI request failed', {
        command: env.CNI_COMMAND,
        container: env.CNI_CONTAINERID,
        code: err.code,
        error: err.message,
      });
      // Errors are reported in the config's own CNI version when it has a usable one.
      return { code: 1, stdout: JSON.stringify(errorResult(err, cniVersionOf(stdin))) };
    }
  }

  private async dispatch(req: CniRequest): Promise<string> {
    switch (req.command) {
      case 'VERSION':
        return JSON.stringify(versionResult(req.conf));
      case 'ADD':
        return JSON.stringify(await this.add(req));
      case 'DEL':
        await this.del(req);
        return '';
      case 'CHECK':
        await this.check(req);
        return '';
      case 'GC':
        await this.gc(req);
        return '';
      case 'STATUS':
        if (!this.opts.ipam.ready())
          throw new CniError(
            50,
            'wiremesh IPAM is not ready',
            'the agent has not loaded its IP pools and blocks yet',
          );
        return '';
    }
  }

  private podOf(req: CniRequest): { namespace: string; pod: string } {
    return {
      namespace: req.args.K8S_POD_NAMESPACE ?? 'default',
      pod: req.args.K8S_POD_NAME ?? req.containerID,
    };
  }

  private async add(req: CniRequest): Promise<object> {
    const { namespace, pod } = this.podOf(req);
    const handle = handleOf(req.conf.name, req.containerID, req.ifName);
    const hostIfName = hostVethName(namespace, pod);
    let allocations: PodAllocation[];
    try {
      allocations = await this.opts.ipam.allocate({
        handle,
        namespace,
        pod,
        containerID: req.containerID,
        ifName: req.ifName,
      });
    } catch (e) {
      throw new CniError(11, `no address for ${namespace}/${pod}`, (e as Error).message);
    }
    const addresses = allocations.map((a) => a.address);
    const mtu = req.conf.mtu ?? this.podMtu(allocations.map((a) => a.pool));
    try {
      const wired = await this.opts.wiring.setup({
        netns: req.netns,
        podIfName: req.ifName,
        hostIfName,
        addresses,
        mtu,
        owner: handle,
      });
      return addResult(
        {
          hostIfName,
          hostMac: wired.hostMac,
          podIfName: req.ifName,
          podMac: wired.podMac,
          sandbox: req.netns,
          mtu,
          addresses,
          gateway4: POD_GATEWAY_V4,
          gateway6: POD_GATEWAY_V6,
        },
        req.conf.cniVersion,
      );
    } catch (e) {
      // Give the address back only once nothing routes to it any more: a pair that
      // may still exist (its removal failed too) keeps the address until DEL or GC.
      const removed = await this.opts.wiring.teardown(hostIfName, handle).then(
        () => true,
        () => false,
      );
      if (removed) await this.opts.ipam.release(handle).catch(() => false);
      if (e instanceof WiringUnavailableError) throw e;
      throw new CniError(5, `cannot wire ${namespace}/${pod}`, (e as Error).message);
    }
  }

  /** The smallest MTU over the pools of the pod's addresses (the default's without any). */
  private podMtu(pools: readonly (string | undefined)[]): number {
    const known = pools.filter((p): p is string => p !== undefined);
    return known.length ? Math.min(...known.map((p) => this.opts.mtu(p))) : this.opts.mtu();
  }

  private async del(req: CniRequest): Promise<void> {
    const handle = handleOf(req.conf.name, req.containerID, req.ifName);
    const known = this.opts.ipam.lookup(handle);
    const { namespace, pod } = known ?? this.podOf(req);
    await this.opts.wiring.teardown(hostVethName(namespace, pod), handle);
    await this.opts.ipam.release(handle);
  }

  private async check(req: CniRequest): Promise<void> {
    const handle = handleOf(req.conf.name, req.containerID, req.ifName);
    const known = this.opts.ipam.lookup(handle);
    if (!known)
      throw new CniError(
        3,
        `no wiremesh attachment for container ${req.containerID} interface ${req.ifName}`,
      );
    const problems = await this.opts.wiring.check({
      netns: req.netns,
      podIfName: req.ifName,
      hostIfName: hostVethName(known.namespace, known.pod),
      addresses: known.addresses,
      mtu: req.conf.mtu ?? this.podMtu(known.pools),
    });
    if (problems.length)
      throw new CniError(
        999,
        `attachment of ${known.namespace}/${known.pod} is broken`,
        problems.join('; '),
      );
  }

  /** CNI 1.1 GC: release every attachment of this network the runtime no longer lists. */
  private async gc(req: CniRequest): Promise<void> {
    const valid = new Set(
      (req.conf['cni.dev/valid-attachments'] ?? []).map((a) =>
        handleOf(req.conf.name, a.containerID, a.ifname),
      ),
    );
    for (const handle of this.opts.ipam.handles(req.conf.name)) {
      if (valid.has(handle)) continue;
      const known = this.opts.ipam.lookup(handle);
      if (known) await this.opts.wiring.teardown(hostVethName(known.namespace, known.pod), handle);
      await this.opts.ipam.release(handle);
    }
  }
}
