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
import {
  hostVethName,
  legacyHostVethName,
  POD_GATEWAY_V4,
  POD_GATEWAY_V6,
  type PodWiring,
} from './podnet.ts';
import { WiringUnavailableError } from './netlinkd.ts';

/** An attachment asking for an address (a subset of ipam's AllocateRequest). */
export interface AttachmentRequest {
  handle: string;
  /** The Kubernetes pod's namespace and name; the namespace '' without Kubernetes arguments. */
  namespace: string;
  pod: string;
  /** K8S_POD_UID when the runtime passes it (containerd, CRI-O). */
  podUID?: string;
  containerID: string;
  ifName: string;
}

/** One address of an attachment, and the IP pool it came from (for the pool's MTU). */
export interface PodAllocation {
  address: string;
  pool?: string;
}

/** What IPAM recorded for an attachment. */
export interface AttachmentRecord {
  addresses: string[];
  namespace: string;
  pod: string;
  containerID: string;
  ifName: string;
  pools: string[];
}

/** What the handler needs from IPAM (ipam/'s NodeIpam provides it). */
export interface PodIpam {
  /**
   * The attachment's addresses, one per family its node serves (dual-stack: an IPv4
   * and an IPv6 address), IPv4 first; all or none (a failure gives back what it took).
   */
  allocate(req: AttachmentRequest): Promise<PodAllocation[]>;
  release(handle: string): Promise<boolean>;
  /** The allocations recorded for a handle, if any. */
  lookup(handle: string): AttachmentRecord | undefined;
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
  /** Whether a CNI_NETNS path is the node's own namespace (hostnetns.ts); ADD refuses it. */
  isNodeNetns?: (path: string) => Promise<boolean>;
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

  /**
   * The Kubernetes pod of a request, from CNI_ARGS: the kubelet's runtimes (containerd,
   * CRI-O) pass its namespace, name and UID. A client without Kubernetes passes no
   * namespace: podman passes its container's name as K8S_POD_NAME (for the dnsname
   * plugin) and nothing else, cnitool what it is told. Such an attachment is recorded
   * with no namespace (the name kept, for people reading the blocks), which keeps it
   * out of the agent's pod-based garbage collection.
   */
  private podOf(req: CniRequest): { namespace: string; pod: string; podUID?: string } {
    const pod = req.args.K8S_POD_NAME ?? '';
    const namespace = req.args.K8S_POD_NAMESPACE ?? '';
    if (!pod || !namespace) return { namespace: '', pod };
    const uid = req.args.K8S_POD_UID;
    return { namespace, pod, ...(uid ? { podUID: uid } : {}) };
  }

  private async add(req: CniRequest): Promise<object> {
    const { namespace, pod, podUID } = this.podOf(req);
    const who = namespace ? `${namespace}/${pod}` : `container ${req.containerID}`;
    if (await this.opts.isNodeNetns?.(req.netns))
      throw new CniError(
        CniErrorCode.invalidEnvironment,
        `CNI_NETNS ${req.netns} is the node's own network namespace`,
        "a pod needs a network namespace of its own; wiring the node's would take over its interfaces and routes",
      );
    const handle = handleOf(req.conf.name, req.containerID, req.ifName);
    const hostIfName = hostVethName(req.containerID, req.ifName);
    let allocations: PodAllocation[];
    try {
      allocations = await this.opts.ipam.allocate({
        handle,
        namespace,
        pod,
        ...(podUID ? { podUID } : {}),
        containerID: req.containerID,
        ifName: req.ifName,
      });
    } catch (e) {
      throw new CniError(11, `no address for ${who}`, (e as Error).message);
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
      throw new CniError(5, `cannot wire ${who}`, (e as Error).message);
    }
  }

  /** The smallest MTU over the pools of the pod's addresses (the default's without any). */
  private podMtu(pools: readonly (string | undefined)[]): number {
    const known = pools.filter((p): p is string => p !== undefined);
    return known.length ? Math.min(...known.map((p) => this.opts.mtu(p))) : this.opts.mtu();
  }

  private async del(req: CniRequest): Promise<void> {
    const handle = handleOf(req.conf.name, req.containerID, req.ifName);
    await this.teardown(handle, req.containerID, req.ifName);
    await this.opts.ipam.release(handle);
  }

  /**
   * Remove an attachment's pair: the one named after it, and one an earlier version
   * named after its pod, when that pair is recorded for this attachment.
   */
  private async teardown(handle: string, containerID: string, ifName: string): Promise<void> {
    await this.opts.wiring.teardown(hostVethName(containerID, ifName), handle);
    const known = this.opts.ipam.lookup(handle);
    if (known?.namespace && known.pod)
      await this.opts.wiring.teardown(legacyHostVethName(known.namespace, known.pod), handle);
  }

  private async check(req: CniRequest): Promise<void> {
    const handle = handleOf(req.conf.name, req.containerID, req.ifName);
    const known = this.opts.ipam.lookup(handle);
    if (!known)
      throw new CniError(
        3,
        `no wiremesh attachment for container ${req.containerID} interface ${req.ifName}`,
      );
    const spec = {
      netns: req.netns,
      podIfName: req.ifName,
      hostIfName: hostVethName(req.containerID, req.ifName),
      addresses: known.addresses,
      mtu: req.conf.mtu ?? this.podMtu(known.pools),
    };
    let problems = await this.opts.wiring.check(spec);
    if (
      problems[0] === `host interface ${spec.hostIfName} is missing` &&
      known.namespace &&
      known.pod
    ) {
      // Wired by an earlier version, under the pod's name.
      const legacy = { ...spec, hostIfName: legacyHostVethName(known.namespace, known.pod) };
      const legacyProblems = await this.opts.wiring.check(legacy);
      if (legacyProblems[0] !== `host interface ${legacy.hostIfName} is missing`)
        problems = legacyProblems;
    }
    if (problems.length)
      throw new CniError(
        999,
        `attachment of ${known.namespace ? `${known.namespace}/${known.pod}` : `container ${known.containerID}`} is broken`,
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
      if (known) await this.teardown(handle, known.containerID, known.ifName);
      await this.opts.ipam.release(handle);
    }
  }
}
