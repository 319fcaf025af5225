// The agent's pod networking: the node's IPAM (journal + blocks) behind the CNI
// handler, served on /run/wiremesh/cni.sock for the relay in /opt/cni/bin, plus
// periodic garbage collection of addresses whose Kubernetes pod is gone for good
// (by UID; ipam/allocator.ts says what counts), which also removes the pairs of the
// attachments it releases, as DEL would. The pods' kernel work
// is done by the netlink worker (wiremesh-netlinkd), which this object starts,
// supervises (restarts it when it dies) and stops; a node without the worker's
// binary does not start, with an error naming the path.
import type { Server } from 'node:http';
import {
  NodeIpam,
  KubeBlockApi,
  livePodsOf,
  type AllocateRequest,
  type Allocation,
} from '../ipam/index.ts';
import {
  CniHandler,
  NetlinkWorker,
  hostVethName,
  legacyHostVethName,
  nodeNetnsCheck,
  defaultNetlinkdPath,
  serveCni,
  type PodIpam,
  type PodAllocation,
  type AttachmentRequest,
} from '../cni/index.ts';
import type { KubeClient } from '../kube/index.ts';
import type { Logger } from './log.ts';

/**
 * The started PodNetworks of this process (one in an agent): how the metrics
 * endpoint (agent/metrics.ts), which sees only the Agent's public methods, reads
 * the node's IPAM usage. Read-only use.
 */
const started = new Set<PodNetwork>();

export function startedPodNetworks(): readonly PodNetwork[] {
  return [...started];
}

/** How long an address outlives its pod before garbage collection takes it back. */
export const GC_GRACE_MS = 60_000;

/**
 * The node's IPAM as the CNI handler sees it. A pod gets one address per family its
 * node serves (NodeIpam.servedFamilies: a family is served when an enabled pool of it
 * selects the node), so a node with an IPv4 and an IPv6 pool makes dual-stack pods and
 * an IPv4-only cluster is unchanged. A namespace's `wiremesh.io/ippool` annotation may
 * name one pool per family, comma-separated (as Calico's ipv4pools and ipv6pools): a
 * named pool decides its own family's address, the other families take the node's
 * pools. A name IPAM does not know is asked for as it is, and fails the ADD.
 */
class IpamForCni implements PodIpam {
  private readonly ipam: NodeIpam;
  private readonly poolFor: (namespace: string) => Promise<string | undefined>;
  started = false;
  constructor(ipam: NodeIpam, poolFor: (namespace: string) => Promise<string | undefined>) {
    this.ipam = ipam;
    this.poolFor = poolFor;
  }
  async allocate(req: AttachmentRequest): Promise<PodAllocation[]> {
    // An attachment without Kubernetes has no namespace to name a pool: the node's pools.
    const named = ((req.namespace ? await this.poolFor(req.namespace) : undefined) ?? '')
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    const unknown = named.filter((p) => this.ipam.poolFamily(p) === undefined);
    const families = this.ipam.servedFamilies();
    const wants: AllocateRequest[] = unknown.length
      ? unknown.map((pool) => ({ ...req, pool }))
      : families.length
        ? families.map((family) => {
            const pool = named.find((p) => this.ipam.poolFamily(p) === family);
            return pool === undefined ? { ...req, family } : { ...req, family, pool };
          })
        : [named[0] === undefined ? req : { ...req, pool: named[0] }];
    const out: PodAllocation[] = [];
    try {
      for (const want of wants) {
        const a = await this.ipam.allocate(want);
        out.push({ address: a.address, pool: a.pool });
      }
    } catch (e) {
      // All or none: the families already taken go back (release frees every family).
      if (out.length) await this.ipam.release(req.handle).catch(() => false);
      throw e;
    }
    return out;
  }
  release(handle: string) {
    return this.ipam.release(handle);
  }
  lookup(handle: string) {
    const found = [this.ipam.find(handle, 4), this.ipam.find(handle, 6)].filter(
      (f): f is NonNullable<typeof f> => f !== null,
    );
    const first = found[0];
    return first
      ? {
          addresses: found.map((f) => f.address),
          namespace: first.namespace,
          pod: first.pod,
          containerID: first.containerID,
          ifName: first.ifName,
          pools: found.map((f) => f.pool),
        }
      : undefined;
  }
  handles(network: string): string[] {
    return [
      ...new Set(
        this.ipam
          .blocks()
          .flatMap((b) => [...b.allocations.keys()].filter((h) => h.startsWith(`${network}.`))),
      ),
    ];
  }
  ready(): boolean {
    return this.started;
  }
}

export class PodNetwork {
  readonly ipam: NodeIpam;
  private readonly adapter: IpamForCni;
  private readonly handler: CniHandler;
  readonly wiring: NetlinkWorker;
  private readonly log: Logger;
  private readonly node: string;
  private readonly kube: KubeClient;
  private server: Server | undefined;
  readonly cniLatencies: number[] = [];

  constructor(opts: {
    node: string;
    kube: KubeClient;
    stateDir: string;
    log: Logger;
    /** Pod MTU for a pod of the pool (agent/paths.ts planMtu). */
    mtu: (pool?: string) => number;
    /** The pool a namespace's pods take addresses from, if it names one (agent/pools.ts). */
    poolFor?: (namespace: string) => Promise<string | undefined>;
    /** Path of wiremesh-netlinkd (default: defaultNetlinkdPath()). */
    netlinkd?: string;
  }) {
    this.node = opts.node;
    this.kube = opts.kube;
    this.log = opts.log;
    this.ipam = new NodeIpam({
      node: opts.node,
      stateDir: `${opts.stateDir}/ipam`,
      api: new KubeBlockApi(opts.kube, { owner: opts.node }),
      log: opts.log,
      autoSyncMs: 200,
    });
    this.adapter = new IpamForCni(this.ipam, opts.poolFor ?? (() => Promise.resolve(undefined)));
    // Started in the agent's network namespace, which is the node's.
    this.wiring = new NetlinkWorker({
      binary: opts.netlinkd ?? defaultNetlinkdPath(),
      log: (msg, fields) => this.log.warn(msg, fields),
    });
    this.handler = new CniHandler({
      ipam: this.adapter,
      wiring: this.wiring,
      mtu: opts.mtu,
      isNodeNetns: nodeNetnsCheck(),
      log: (msg, fields) => this.log.warn(msg, fields),
    });
  }

  async start(socketPath: string): Promise<void> {
    await this.wiring.start();
    this.log.info('netlink worker started', { pid: this.wiring.pid });
    try {
      await this.ipam.start();
    } catch (e) {
      await this.wiring.stop();
      throw e;
    }
    this.adapter.started = true;
    this.server = await serveCni(this.handler, socketPath, (ms, command, code) => {
      this.cniLatencies.push(ms);
      if (this.cniLatencies.length > 1000) this.cniLatencies.shift();
      this.log.info('CNI request', { command, code, ms: Math.round(ms * 10) / 10 });
    });
    started.add(this);
  }

  private lastGc = 0;

  /**
   * At most every 30 s: take back addresses of pods gone for GC_GRACE_MS (and their
   * pairs, should the runtime's DEL never have come), then sync blocks.
   */
  async collectGarbage(now = Date.now()): Promise<void> {
    if (now - this.lastGc < 30_000) return;
    this.lastGc = now;
    const pods = await this.kube.request<{
      items: {
        metadata?: {
          namespace?: string;
          name?: string;
          uid?: string;
          annotations?: Record<string, string>;
        };
        status?: { phase?: string };
      }[];
    }>('GET', '/api/v1/pods', undefined, {
      query: { fieldSelector: `spec.nodeName=${this.node}` },
    });
    const live = livePodsOf(
      pods.items.map((p) => {
        const mirrorOf = p.metadata?.annotations?.['kubernetes.io/config.mirror'];
        const phase = p.status?.phase;
        return {
          namespace: p.metadata?.namespace ?? '',
          name: p.metadata?.name ?? '',
          uid: p.metadata?.uid ?? '',
          ...(phase ? { phase } : {}),
          ...(mirrorOf ? { mirrorOf } : {}),
        };
      }),
    );
    const before = new Map<string, Allocation>();
    for (const b of this.ipam.blocks()) for (const [h, a] of b.allocations) before.set(h, a);
    const report = await this.ipam.collectGarbage(live, GC_GRACE_MS);
    for (const handle of report.releasedHandles) {
      const a = before.get(handle);
      if (!a) continue;
      const names = [hostVethName(a.containerID, a.ifName)];
      if (a.namespace && a.pod) names.push(legacyHostVethName(a.namespace, a.pod));
      for (const name of names)
        await this.wiring.teardown(name, handle).catch((e: unknown) =>
          this.log.warn('cannot remove the pair of a collected attachment', {
            handle,
            link: name,
            error: (e as Error).message,
          }),
        );
    }
    await this.ipam.sync();
  }

  async stop(): Promise<void> {
    started.delete(this);
    this.server?.close();
    try {
      await this.ipam.close();
    } finally {
      await this.wiring.stop();
    }
  }
}
