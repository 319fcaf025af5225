// What `wiremesh explain` and `wiremesh graph` read from the apiserver: the objects
// the agents read, translated by the agents' own translations (policy/k8s.ts,
// policy/admin-k8s.ts, agent/meshnode.ts, agent/pools.ts, ipam/), so the verdicts
// and paths computed from it are the ones the agents compute. One list per resource;
// the admin policies' and the multicluster CRDs may be missing (404: none), as the
// agent treats them. IPAMBlocks go through the agents' own admission
// (agent/blocks.ts): a block no agent routes is no path, only a refusal to show.
import type { V1Node } from '@kubernetes/client-node';
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import { meshNodeFromK8s, type MeshNode } from '../agent/meshnode.ts';
import { poolsFromK8s } from '../agent/pools.ts';
import { admitBlocks, blockClaimFromK8s, type RefusedBlock } from '../agent/blocks.ts';
import {
  PEER_PATH,
  REMOTECLUSTER_PATH,
  REMOTE_BLOCKS_PATH,
  REMOTE_NODES_PATH,
  peerFromK8s,
  remoteClientFromSecret,
  remoteClusterFromK8s,
  type ExternalPeer,
} from '../multicluster/index.ts';
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
  /** The blocks the agents route (admitted as agent/blocks.ts does). */
  blocks: IpamBlock[];
  /** The IPAMBlocks no agent routes, with the reason. */
  refusedBlocks: RefusedBlock[];
  /** Valid Peer objects: WireGuard peers outside Kubernetes. */
  peers: ExternalPeer[];
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
  const [nodes, pools, blocks, pods, namespaces, policies, anps, banps, peers] = await Promise.all([
    list(kube, '/api/v1/nodes'),
    list(kube, `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPPOOL_PLURAL}`),
    list(kube, `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPAMBLOCK_PLURAL}`),
    list(kube, '/api/v1/pods'),
    list(kube, '/api/v1/namespaces'),
    list(kube, '/apis/networking.k8s.io/v1/networkpolicies'),
    list(kube, `${ADMIN_API}/adminnetworkpolicies`, true),
    list(kube, `${ADMIN_API}/baselineadminnetworkpolicies`, true),
    list(kube, PEER_PATH, true),
  ]);
  const banp = present(banps.map((o) => baselineAdminNetworkPolicyFromK8s(o as object).policy));
  const meshNodes = nodes.map((n) => meshNodeFromK8s(n as V1Node));
  const routed = poolsFromK8s(pools).pools;
  const { blocks: admitted, refused } = admitClusterBlocks(blocks, meshNodes, routed);
  return {
    nodes: meshNodes,
    pools: routed,
    blocks: admitted,
    refusedBlocks: refused,
    peers: present(peers.map((p) => peerFromK8s(p).peer)),
    pods: present(pods.map((p) => podFromK8s(p as object).pod)),
    namespaces: present(namespaces.map((n) => namespaceFromK8s(n as object).namespace)),
    policies: present(policies.map((p) => networkPolicyFromK8s(p as object).policy)),
    adminPolicies: present(anps.map((a) => adminNetworkPolicyFromK8s(a as object).policy)),
    baselinePolicy: banp.find((b) => b.name === 'default') ?? null,
  };
}

/**
 * The IPAMBlock objects as the agents admit them. The one rule of a single node's
 * (a block holding that node's own pod addresses) needs its IPAM journal, which the
 * API does not hold, so it is left out: it refuses only on the node that would
 * lose its pods' addresses.
 */
export function admitClusterBlocks(
  raw: readonly unknown[],
  nodes: readonly MeshNode[],
  pools: readonly IpPool[],
): { blocks: IpamBlock[]; refused: RefusedBlock[] } {
  const parsed = raw.flatMap((b) => ipamBlockFromK8s(b).block ?? []);
  const admission = admitBlocks({
    self: '',
    blocks: raw.flatMap((b) => blockClaimFromK8s(b) ?? []),
    pools,
    nodes: nodes.map((n) => n.name),
    localAddresses: [],
  });
  const keep = new Set(admission.blocks.map((b) => `${b.cidr} ${b.node}`));
  return {
    blocks: parsed.filter((b) => keep.has(`${b.cidr} ${b.node}`)),
    refused: admission.refused,
  };
}

/** A remote cluster's nodes and imported blocks as its API shows them, or why not. */
export interface RemoteView {
  name: string;
  nodes: MeshNode[];
  blocks: IpamBlock[];
  error: string | null;
}

/**
 * Each RemoteCluster's nodes and blocks, read with the kubeconfig of its Secret as
 * the agents read them (needs read access to that Secret). A cluster that cannot be
 * read is returned with the error, after `timeoutMs`.
 */
export async function loadRemoteClusters(
  kube: KubeClient,
  timeoutMs = 5000,
): Promise<RemoteView[]> {
  const clusters = (await list(kube, REMOTECLUSTER_PATH, true)).flatMap(
    (r) => remoteClusterFromK8s(r).cluster ?? [],
  );
  return Promise.all(
    clusters.map(async (c): Promise<RemoteView> => {
      try {
        const remote = await remoteClientFromSecret(kube, c.secretRef);
        const read = Promise.all([
          list(remote, REMOTE_NODES_PATH),
          list(remote, REMOTE_BLOCKS_PATH),
        ]);
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
        });
        const [nodes, blocks] = await Promise.race([read, late]).finally(() => clearTimeout(timer));
        return {
          name: c.name,
          nodes: nodes.map((n) => meshNodeFromK8s(n as V1Node)),
          blocks: present(blocks.map((b) => ipamBlockFromK8s(b).block)).filter(
            (b) => c.importPools === null || c.importPools.includes(b.pool),
          ),
          error: null,
        };
      } catch (e) {
        return {
          name: c.name,
          nodes: [],
          blocks: [],
          error: e instanceof Error ? e.message : String(e),
        };
      }
    }),
  );
}

const present = <X>(xs: (X | null)[]): X[] => xs.filter((x): x is X => x !== null);
