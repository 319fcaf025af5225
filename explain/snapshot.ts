// What `wiremesh explain` and `wiremesh graph` read from the apiserver: the objects
// the agents read, translated by the agents' own translations (policy/k8s.ts,
// policy/admin-k8s.ts, agent/meshnode.ts, agent/pools.ts, ipam/), so the verdicts
// and paths computed from it are the ones the agents compute. One list per resource;
// the admin policies' CRDs may be missing (404: none), as the agent treats them.
import type { V1Node } from '@kubernetes/client-node';
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import { meshNodeFromK8s, type MeshNode } from '../agent/meshnode.ts';
import { poolsFromK8s } from '../agent/pools.ts';
import {
  IPAM_GROUP,
  IPAM_VERSION,
  IPAMBLOCK_PLURAL,
  IPPOOL_PLURAL,
  ipamBlockFromK8s,
  type IpPool,
  type IpamBlock,
} from '../ipam/index.ts';
import {
  adminNetworkPolicyFromK8s,
  baselineAdminNetworkPolicyFromK8s,
  namespaceFromK8s,
  networkPolicyFromK8s,
  podFromK8s,
  type AdminNetworkPolicy,
  type BaselineAdminNetworkPolicy,
  type NetworkPolicy,
  type PolicyNamespace,
  type PolicyPod,
} from '../policy/index.ts';

export interface ClusterSnapshot {
  nodes: MeshNode[];
  pools: IpPool[];
  blocks: IpamBlock[];
  pods: PolicyPod[];
  namespaces: PolicyNamespace[];
  policies: NetworkPolicy[];
  adminPolicies: AdminNetworkPolicy[];
  /** The BaselineAdminNetworkPolicy named `default` (the only one enforced), or null. */
  baselinePolicy: BaselineAdminNetworkPolicy | null;
}

const ADMIN_API = '/apis/policy.networking.k8s.io/v1alpha1';

async function list(kube: KubeClient, path: string, optional = false): Promise<unknown[]> {
  try {
    return (await kube.request<{ items?: unknown[] }>('GET', path)).items ?? [];
  } catch (e) {
    if (optional && e instanceof KubeApiError && e.status === 404) return [];
    throw e;
  }
}

export async function loadSnapshot(kube: KubeClient): Promise<ClusterSnapshot> {
  const [nodes, pools, blocks, pods, namespaces, policies, anps, banps] = await Promise.all([
    list(kube, '/api/v1/nodes'),
    list(kube, `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPPOOL_PLURAL}`),
    list(kube, `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPAMBLOCK_PLURAL}`),
    list(kube, '/api/v1/pods'),
    list(kube, '/api/v1/namespaces'),
    list(kube, '/apis/networking.k8s.io/v1/networkpolicies'),
    list(kube, `${ADMIN_API}/adminnetworkpolicies`, true),
    list(kube, `${ADMIN_API}/baselineadminnetworkpolicies`, true),
  ]);
  const present = <X>(xs: (X | null)[]): X[] => xs.filter((x): x is X => x !== null);
  const banp = present(banps.map((o) => baselineAdminNetworkPolicyFromK8s(o as object).policy));
  return {
    nodes: nodes.map((n) => meshNodeFromK8s(n as V1Node)),
    pools: poolsFromK8s(pools).pools,
    blocks: present(blocks.map((b) => ipamBlockFromK8s(b).block)),
    pods: present(pods.map((p) => podFromK8s(p as object).pod)),
    namespaces: present(namespaces.map((n) => namespaceFromK8s(n as object).namespace)),
    policies: present(policies.map((p) => networkPolicyFromK8s(p as object).policy)),
    adminPolicies: present(anps.map((a) => adminNetworkPolicyFromK8s(a as object).policy)),
    baselinePolicy: banp.find((b) => b.name === 'default') ?? null,
  };
}
