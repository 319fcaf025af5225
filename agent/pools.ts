// The agent's view of the IP pools: it watches IPPool objects (translated and
// validated at the IPAM boundary, ipam/k8s.ts; overlapping pools refused as IPAM
// refuses them, so the dataplane and the allocator agree on which pools exist) and
// Namespaces, whose `wiremesh.io/ippool` annotation names the pool their pods take
// addresses from (as Calico's cni.projectcalico.org/ipv4pools). A namespace rather
// than a pod annotation: a kubelet creates the Pod before CNI ADD, but reading it
// would cost an API round trip on every ADD, while namespaces are few and cached.
// A pod whose namespace names no pool gets the first pool that serves its node.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Informer, KubeApiError, type KubeClient } from '../kube/index.ts';
import {
  checkPoolOverlaps,
  ipPoolFromK8s,
  IPAM_GROUP,
  IPAM_VERSION,
  IPPOOL_PLURAL,
  type IpamProblem,
  type IpPool,
} from '../ipam/index.ts';
import { runInformer } from './watch.ts';
import type { Logger } from './log.ts';

/** Namespace annotation naming the IP pool of the namespace's pods. */
export const ANNOTATION_IPPOOL = 'wiremesh.io/ippool';

/** The pools an agent routes: valid, non-overlapping (disabled ones too: their blocks live on). */
export function poolsFromK8s(objects: readonly unknown[]): {
  pools: IpPool[];
  problems: IpamProblem[];
} {
  const pools: IpPool[] = [];
  const problems: IpamProblem[] = [];
  for (const raw of objects) {
    const r = ipPoolFromK8s(raw);
    problems.push(...r.problems);
    if (r.pool) pools.push(r.pool);
  }
  const checked = checkPoolOverlaps(pools);
  return { pools: checked.pools, problems: [...problems, ...checked.problems] };
}

/** The pool a namespace's annotation names, or undefined (a blank or absent annotation). */
export function poolOfNamespace(ns: KubernetesObject | undefined): string | undefined {
  const v = ns?.metadata?.annotations?.[ANNOTATION_IPPOOL]?.trim();
  return v ? v : undefined;
}

export class PoolWatch {
  private readonly pools: Informer<KubernetesObject>;
  private readonly namespaces: Informer<KubernetesObject>;
  private readonly log: Logger;
  private readonly kube: KubeClient;

  constructor(kube: KubeClient, log: Logger) {
    this.log = log;
    this.kube = kube;
    this.pools = new Informer(kube, `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPPOOL_PLURAL}`);
    this.namespaces = new Informer(kube, '/api/v1/namespaces');
  }

  /** Resolves once both are listed; a pool change calls `onChange`. */
  async start(onChange: (reason: string) => void): Promise<void> {
    await Promise.all([
      runInformer(this.pools, 'IP pools', this.log, onChange),
      runInformer(this.namespaces, 'namespaces (pool annotations)', this.log, () => {}),
    ]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.pools.stop(), this.namespaces.stop()]);
  }

  /** IPPool objects in the cache, valid or not (the default pool is made only when none). */
  objectCount(): number {
    return this.pools.list().length;
  }

  current(): { pools: IpPool[]; problems: IpamProblem[] } {
    return poolsFromK8s(this.pools.list());
  }

  /**
   * The pool a namespace names. From the watch's cache; a namespace the cache does not
   * hold yet (made a moment ago, or the watch is catching up after an outage) is read
   * from the API, so its first pods do not land in the wrong pool. Without an answer
   * (the apiserver away), the node's pools serve it, with a log line.
   */
  async poolForNamespace(namespace: string): Promise<string | undefined> {
    const cached = this.namespaces.get(namespace);
    if (cached) return poolOfNamespace(cached);
    try {
      const ns = await this.kube.request<KubernetesObject>(
        'GET',
        `/api/v1/namespaces/${encodeURIComponent(namespace)}`,
        undefined,
        { timeoutMs: 2000 },
      );
      return poolOfNamespace(ns);
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404) return undefined;
      this.log.warn("cannot read the namespace of a new pod; the node's pools serve it", {
        namespace,
        error: (e as Error).message,
      });
      return undefined;
    }
  }
}
