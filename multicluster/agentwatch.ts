// The agent's multi-cluster concern: it watches the local RemoteCluster and Peer
// objects (and the kubeconfig Secrets in wiremesh-remotes, to notice a rotation),
// keeps one RemoteClusterWatch per valid RemoteCluster, and hands the agent's mesh
// pass what planRemotePeers needs. It holds no dataplane state: the agent adds the
// planned peers and routes to wiremesh.wg and writes the conditions.
//
// The CRDs are optional, like the AdminNetworkPolicy ones (agent/policy.ts): a 404
// on the first list counts as "none", start-up goes on, and the list is retried in
// the background until they are served. The Secrets are optional the same way (403:
// a cluster without deploy/multicluster-rbac.yaml): a rotation is then noticed only
// when the RemoteCluster changes. A RemoteClusterWatch is replaced (with its
// predecessor's snapshot as `initial`, so no tunnel drops meanwhile) when the
// object's generation or its Secret's resourceVersion changes, and stopped when
// the object goes away.
import { Informer, KubeApiError, type KubeClient } from '../kube/index.ts';
import type { Logger } from '../agent/log.ts';
import { peerFromK8s, remoteClusterFromK8s } from './k8s.ts';
import { RemoteClusterWatch, remoteClientFromSecret } from './watch.ts';
import {
  DEFAULT_SECRET_NAMESPACE,
  PEER_PATH,
  REMOTECLUSTER_PATH,
  type ExternalPeer,
  type MultiClusterProblem,
  type RemoteCluster,
  type RemoteClusterSnapshot,
} from './types.ts';

type Obj = { metadata?: { name?: string; resourceVersion?: string } };

interface Running {
  cluster: RemoteCluster;
  secretVersion: string;
  watch: RemoteClusterWatch;
}

export interface MultiClusterWatchOptions {
  kube: KubeClient;
  log: Logger;
  /** Called after anything changed: schedule a mesh pass. */
  onChange: (reason: string) => void;
  /** Builds a remote client (tests pass a fake); default reads the Secret. */
  connect?: (cluster: RemoteCluster) => Promise<KubeClient>;
  backoff?: { initialMs: number; maxMs: number };
  retryDelays?: { first: number; max: number };
}

export class MultiClusterWatch {
  private readonly options: MultiClusterWatchOptions;
  private readonly clusters: Informer<Obj>;
  private readonly peers: Informer<Obj>;
  private readonly secrets: Informer<Obj>;
  private readonly running = new Map<string, Running>();
  private readonly retries = new Set<NodeJS.Timeout>();
  private stopped = false;
  private syncing: Promise<void> = Promise.resolve();

  constructor(options: MultiClusterWatchOptions) {
    this.options = options;
    this.clusters = new Informer(options.kube, REMOTECLUSTER_PATH);
    this.peers = new Informer(options.kube, PEER_PATH);
    this.secrets = new Informer(
      options.kube,
      `/api/v1/namespaces/${DEFAULT_SECRET_NAMESPACE}/secrets`,
    );
  }

  /** Resolves once RemoteClusters and Peers are listed (or found not served). */
  async start(): Promise<void> {
    this.stopped = false;
    const changed = (reason: string) => {
      this.sync();
      this.options.onChange(reason);
    };
    await Promise.all([
      this.startOptional(this.clusters, 'remote clusters', changed),
      this.startOptional(this.peers, 'peers', (r) => this.options.onChange(r)),
      this.startOptional(this.secrets, 'remote kubeconfig secrets', changed),
    ]);
    this.sync();
    await this.syncing;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.retries) clearTimeout(t);
    this.retries.clear();
    await this.syncing;
    await Promise.all([this.clusters.stop(), this.peers.stop(), this.secrets.stop()]);
    await Promise.all([...this.running.values()].map((r) => r.watch.stop()));
    this.running.clear();
  }

  /** The valid RemoteClusters, the valid Peers and what was refused at the boundary. */
  objects(): {
    clusters: RemoteCluster[];
    peers: ExternalPeer[];
    problems: MultiClusterProblem[];
  } {
    const problems: MultiClusterProblem[] = [];
    const clusters: RemoteCluster[] = [];
    const peers: ExternalPeer[] = [];
    for (const raw of this.clusters.list()) {
      const r = remoteClusterFromK8s(raw);
      problems.push(...r.problems);
      if (r.cluster) clusters.push(r.cluster);
    }
    for (const raw of this.peers.list()) {
      const r = peerFromK8s(raw);
      problems.push(...r.problems);
      if (r.peer) peers.push(r.peer);
    }
    return { clusters, peers, problems };
  }

  /** What each running watch knows, by RemoteCluster name order. */
  snapshots(): RemoteClusterSnapshot[] {
    return [...this.running.values()]
      .map((r) => r.watch.snapshot())
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The RemoteCluster a snapshot was taken for (its generation, for the status). */
  cluster(name: string): RemoteCluster | undefined {
    return this.running.get(name)?.cluster;
  }

  /** Start, replace and stop RemoteClusterWatches to match the objects (serialised). */
  private sync(): void {
    this.syncing = this.syncing
      .then(() => this.syncNow())
      .catch((e: unknown) => {
        this.options.log.warn('remote cluster watches could not be updated', {
          error: (e as Error).message,
        });
      });
  }

  private async syncNow(): Promise<void> {
    if (this.stopped) return;
    const { clusters } = this.objects();
    const want = new Map(clusters.map((c) => [c.name, c]));
    for (const [name, r] of this.running) {
      const c = want.get(name);
      const secretVersion = c ? this.secretVersion(c) : '';
      if (c && c.generation === r.cluster.generation && secretVersion === r.secretVersion) {
        r.cluster = c;
        continue;
      }
      this.running.delete(name);
      await r.watch.stop();
      if (c) this.launch(c, r.watch.snapshot());
      else this.options.log.info('stopped watching remote cluster', { cluster: name });
    }
    for (const c of clusters) if (!this.running.has(c.name)) this.launch(c);
  }

  private launch(cluster: RemoteCluster, initial?: RemoteClusterSnapshot): void {
    const { kube, log } = this.options;
    const connect = this.options.connect ?? ((c) => remoteClientFromSecret(kube, c.secretRef));
    const watch = new RemoteClusterWatch({
      cluster,
      connect: () => connect(cluster),
      onChange: () => this.options.onChange(`remote cluster ${cluster.name} changed`),
      log,
      ...(this.options.backoff ? { backoff: this.options.backoff } : {}),
      ...(initial ? { initial } : {}),
    });
    this.running.set(cluster.name, { cluster, secretVersion: this.secretVersion(cluster), watch });
    log.info(initial ? 'reconnecting to remote cluster' : 'watching remote cluster', {
      cluster: cluster.name,
      secret: `${cluster.secretRef.namespace}/${cluster.secretRef.name}`,
    });
    watch.start();
  }

  private secretVersion(c: RemoteCluster): string {
    if (c.secretRef.namespace !== DEFAULT_SECRET_NAMESPACE) return '';
    return this.secrets.get(c.secretRef.name)?.metadata?.resourceVersion ?? '';
  }

  /**
   * The first list of a resource that may not be served (404) or not be readable
   * (403): resolves at once with none, and lists again in the background.
   */
  private async startOptional(
    informer: Informer<Obj>,
    what: string,
    onChange: (reason: string) => void,
  ): Promise<void> {
    for (const verb of ['add', 'update', 'delete'] as const)
      informer.on(verb, () => onChange(`${what} ${verb}`));
    informer.on('error', (err: unknown) => {
      if (err instanceof KubeApiError && err.status === 410) return;
      this.options.log.warn(`${what} watch failed; retrying`, { error: (err as Error)?.message });
    });
    const first = this.options.retryDelays?.first ?? 5_000;
    for (let delay = 500; !this.stopped; delay = Math.min(delay * 2, 10_000)) {
      try {
        await informer.start();
        return;
      } catch (e) {
        if (e instanceof KubeApiError && (e.status === 404 || e.status === 403)) {
          this.options.log.info(
            e.status === 404
              ? `${what} are not served (CRDs not installed); none until they are`
              : `${what} may not be read (RBAC); none until they may`,
            { retryInMs: first },
          );
          this.listLater(informer, what, onChange, first);
          return;
        }
        this.options.log.warn(`cannot list ${what} yet; retrying`, {
          error: (e as Error).message,
          retryInMs: delay,
        });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private listLater(
    informer: Informer<Obj>,
    what: string,
    onChange: (reason: string) => void,
    delay: number,
  ): void {
    const max = this.options.retryDelays?.max ?? 60_000;
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      if (this.stopped) return;
      informer.start().then(
        () => {
          this.options.log.info(`${what} are served now`, { count: informer.list().length });
          onChange(`${what} listed`);
        },
        (e: unknown) => {
          const absent = e instanceof KubeApiError && (e.status === 404 || e.status === 403);
          this.listLater(informer, what, onChange, absent ? Math.min(delay * 2, max) : delay);
        },
      );
    }, delay);
    this.retries.add(timer);
  }
}
