// RemoteClusterWatch: the driver side of one RemoteCluster. It builds a client for
// the remote API (remoteClientFromSecret reads the kubeconfig from the referenced
// Secret), lists and watches the remote Nodes, IPPools and IPAMBlocks with
// Informers, and exposes them, translated through the same boundaries as local
// objects (meshNodeFromK8s, ipPoolFromK8s, ipamBlockFromK8s), as a
// RemoteClusterSnapshot for planRemotePeers.
//
// The remote API going away must not take tunnels down: the caches keep the last
// known state, the snapshot says reachable=false (condition Unreachable), and the
// Informers resume their watches with their own backoff. A probe (a one-item list of
// Nodes, which needs the same permission as the watch) marks the remote reachable
// again. The first connection (Secret, kubeconfig, first lists) is retried with
// exponential backoff; `initial` lets a replacement watch (a rotated Secret, an
// edited RemoteCluster) serve its predecessor's state until its own first list.
import {
  Informer,
  KubeApiError,
  kubeClientFromKubeconfig,
  type KubeClient,
} from '../kube/index.ts';
import { meshNodeFromK8s, sameNodeForMesh, trimNodeForMesh } from '../agent/meshnode.ts';
import { sameBlockClaim, trimBlockClaim } from '../agent/blocks.ts';
import { ipPoolFromK8s, ipamBlockFromK8s } from '../ipam/k8s.ts';
import type { IpPool, IpamBlock } from '../ipam/types.ts';
import type { MeshNode } from '../agent/meshnode.ts';
import type { Logger } from '../agent/log.ts';
import type {
  MultiClusterProblem,
  RemoteCluster,
  RemoteClusterSnapshot,
  SecretRef,
} from './types.ts';

export const REMOTE_NODES_PATH = '/api/v1/nodes';
export const REMOTE_POOLS_PATH = '/apis/wiremesh.io/v1alpha1/ippools';
export const REMOTE_BLOCKS_PATH = '/apis/wiremesh.io/v1alpha1/ipamblocks';

/** A client for the remote API from the kubeconfig in the referenced Secret (embedded credentials only). */
export async function remoteClientFromSecret(
  local: KubeClient,
  ref: SecretRef,
): Promise<KubeClient> {
  const what = `Secret ${ref.namespace}/${ref.name}`;
  let secret: { data?: Record<string, string> };
  try {
    secret = await local.request(
      'GET',
      `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/secrets/${encodeURIComponent(ref.name)}`,
    );
  } catch (e) {
    throw new Error(`reading ${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const data = secret.data?.[ref.key];
  if (!data) throw new Error(`${what} has no key ${ref.key}`);
  return kubeClientFromKubeconfig(
    Buffer.from(data, 'base64').toString('utf8'),
    `${what} key ${ref.key}`,
  );
}

export interface RemoteClusterWatchOptions {
  cluster: Pick<RemoteCluster, 'name' | 'importPools'>;
  /** Builds the remote client; called for each connection attempt until the first list succeeds. */
  connect: () => Promise<KubeClient>;
  /** Called (synchronously, often) after anything in the snapshot changed: schedule a reconcile. */
  onChange?: () => void;
  log?: Pick<Logger, 'info' | 'warn'>;
  /** Backoff of connection attempts and reachability probes. */
  backoff?: { initialMs: number; maxMs: number };
  /** State to serve until the first list (e.g. the snapshot of the watch this one replaces). */
  initial?: RemoteClusterSnapshot;
}

type Obj = { metadata?: { name?: string; resourceVersion?: string } };

const describe = (e: unknown) => (e instanceof Error ? e.message.split('\n')[0]! : String(e));

export class RemoteClusterWatch {
  readonly name: string;
  private readonly options: RemoteClusterWatchOptions;
  private readonly backoff: { initialMs: number; maxMs: number };
  private nodes: Informer<Obj> | undefined;
  private pools: Informer<Obj> | undefined;
  private blocks: Informer<Obj> | undefined;
  private client: KubeClient | undefined;
  private synced = false;
  private reachable = false;
  private lastError: string | null = null;
  private running = false;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(options: RemoteClusterWatchOptions) {
    this.options = options;
    this.name = options.cluster.name;
    this.backoff = options.backoff ?? { initialMs: 1000, maxMs: 60_000 };
  }

  /** Starts connecting in the background; never throws (failures go to the snapshot). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.abort = new AbortController();
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.abort.abort();
    await this.loop;
    await Promise.all([this.nodes?.stop(), this.pools?.stop(), this.blocks?.stop()]);
  }

  snapshot(): RemoteClusterSnapshot {
    if (!this.synced && this.options.initial?.synced) {
      return {
        ...this.options.initial,
        reachable: false,
        lastError: this.lastError ?? 'reconnecting',
      };
    }
    const problems: MultiClusterProblem[] = [];
    const nodes: MeshNode[] = [];
    const pools: IpPool[] = [];
    const blocks: IpamBlock[] = [];
    for (const raw of this.nodes?.list() ?? []) {
      const n = meshNodeFromK8s(raw);
      if (n.name) nodes.push(n);
    }
    for (const raw of this.pools?.list() ?? []) {
      const res = ipPoolFromK8s(raw);
      if (res.pool) pools.push(res.pool);
      for (const p of res.problems)
        problems.push({
          object: `${this.name}/${p.object}`,
          reason: 'InvalidRemoteObject',
          message: p.message,
        });
    }
    for (const raw of this.blocks?.list() ?? []) {
      const res = ipamBlockFromK8s(raw);
      if (res.block) blocks.push(res.block);
    }
    return {
      name: this.name,
      importPools: this.options.cluster.importPools,
      synced: this.synced,
      reachable: this.synced && this.reachable,
      lastError: this.lastError,
      nodes,
      pools,
      blocks,
      problems,
    };
  }

  private changed(): void {
    try {
      this.options.onChange?.();
    } catch {
      /* the callback's own business */
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.abort.signal.aborted) return resolve();
      const timer = setTimeout(resolve, ms);
      this.abort.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
  }

  private fail(e: unknown): void {
    const message = describe(e);
    const wasReachable = this.reachable;
    this.reachable = false;
    if (message !== this.lastError || wasReachable) {
      this.lastError = message;
      this.options.log?.warn('remote cluster API failed', { cluster: this.name, error: message });
      this.changed();
    }
  }

  private async run(): Promise<void> {
    let delay = this.backoff.initialMs;
    while (this.running && !this.synced) {
      const informers: Informer<Obj>[] = [];
      try {
        const client = await this.options.connect();
        // Kept trimmed as the agent keeps its own cluster's: a remote cluster's Node
        // heartbeats and pod allocations change nothing routed.
        const nodes = new Informer<Obj>(
          client,
          REMOTE_NODES_PATH,
          {},
          { transform: trimNodeForMesh, unchanged: sameNodeForMesh },
        );
        const pools = new Informer<Obj>(client, REMOTE_POOLS_PATH);
        const blocks = new Informer<Obj>(
          client,
          REMOTE_BLOCKS_PATH,
          {},
          { transform: trimBlockClaim, unchanged: sameBlockClaim },
        );
        informers.push(nodes, pools, blocks);
        for (const inf of informers) {
          for (const ev of ['add', 'update', 'delete'])
            inf.on(ev, () => {
              if (!this.synced) return;
              // An event is the remote API answering: no need to wait for the probe.
              if (!this.reachable) this.answered();
              this.changed();
            });
          inf.on('error', (e: unknown) => {
            // An expired resourceVersion is routine: the Informer lists again.
            if (e instanceof KubeApiError && e.status === 410) return;
            if (this.running) this.fail(e);
          });
        }
        await Promise.all(informers.map((i) => i.start()));
        if (!this.running) {
          await Promise.all(informers.map((i) => i.stop()));
          return;
        }
        [this.nodes, this.pools, this.blocks, this.client] = [nodes, pools, blocks, client];
        this.synced = true;
        this.reachable = true;
        this.lastError = null;
        this.options.log?.info('remote cluster listed', {
          cluster: this.name,
          nodes: nodes.list().length,
          blocks: blocks.list().length,
        });
        this.changed();
      } catch (e) {
        await Promise.all(informers.map((i) => i.stop()));
        if (!this.running) return;
        this.fail(e);
        await this.sleep(delay);
        delay = Math.min(delay * 2, this.backoff.maxMs);
      }
    }
    await this.probeLoop();
  }

  private answered(): void {
    this.reachable = true;
    this.lastError = null;
    this.options.log?.info('remote cluster API answers again', { cluster: this.name });
  }

  /** While unreachable: probe with backoff, and say so when the remote answers again. */
  private async probeLoop(): Promise<void> {
    let delay = this.backoff.initialMs;
    while (this.running) {
      await this.sleep(this.reachable ? this.backoff.maxMs : delay);
      if (!this.running || !this.client) return;
      try {
        await this.client.request('GET', REMOTE_NODES_PATH, undefined, {
          query: { limit: 1 },
          timeoutMs: 10_000,
        });
        if (!this.reachable) {
          this.answered();
          this.changed();
        }
        delay = this.backoff.initialMs;
      } catch (e) {
        if (!this.running) return;
        this.fail(e);
        delay = Math.min(delay * 2, this.backoff.maxMs);
      }
    }
  }
}
