// The agent's view of the IP pools: it watches IPPool objects (translated and
// validated at the IPAM boundary, ipam/k8s.ts; overlapping pools refused as IPAM
// refuses them, so the dataplane and the allocator agree on which pools exist) and
// Namespaces, whose `wiremesh.io/ippool` annotation names the pool their pods take
// addresses from (as Calico's cni.projectcalico.org/ipv4pools). A namespace rather
// than a pod annotation: a kubelet creates the Pod before CNI ADD, but reading it
// would cost an API round trip on every ADD, while namespaces are few and cached.
// A pod whose namespace names no pool gets the first pool that serves its node.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Informer, type KubeClient } from '../kube/index.ts';
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

  constructor(kube: KubeClient, log: Logger) {
    this.log = log;
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

  current(): { pools: IpPool[]; problems: IpamProblem[] } {
    return poolsFromK8s(this.pools.list());
  }

  poolForNamespace(namespace: string): string | undefined {
    return poolOfNamespace(this.namespaces.get(namespace));
  }
}
