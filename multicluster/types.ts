// multicluster's own types: what a RemoteCluster and a Peer object mean once the
// Kubernetes boundary (k8s.ts) has validated them, what the planner takes (a
// snapshot per remote cluster, as RemoteClusterWatch keeps it) and what it returns.
// Everything past the boundary may rely on these invariants: public keys are 32
// bytes in canonical base64, endpoints are canonical host:port, CIDRs are canonical.
import type { MeshNode } from '../agent/meshnode.ts';
import type { IpPool, IpamBlock } from '../ipam/types.ts';

export const MULTICLUSTER_GROUP = 'wiremesh.io';
export const MULTICLUSTER_VERSION = 'v1alpha1';
export const REMOTECLUSTER_PLURAL = 'remoteclusters';
export const PEER_PLURAL = 'peers';
export const REMOTECLUSTER_PATH = `/apis/${MULTICLUSTER_GROUP}/${MULTICLUSTER_VERSION}/${REMOTECLUSTER_PLURAL}`;
export const PEER_PATH = `/apis/${MULTICLUSTER_GROUP}/${MULTICLUSTER_VERSION}/${PEER_PLURAL}`;

/** The only namespace whose Secrets the agents may read (deploy/multicluster-rbac.yaml). */
export const DEFAULT_SECRET_NAMESPACE = 'wiremesh-remotes';
export const DEFAULT_SECRET_KEY = 'kubeconfig';

export interface SecretRef {
  namespace: string;
  name: string;
  key: string;
}

export interface RemoteCluster {
  name: string;
  uid: string;
  generation: number;
  resourceVersion: string;
  secretRef: SecretRef;
  /** Remote pool names to import; null imports every pool. */
  importPools: string[] | null;
}

/** A WireGuard peer outside Kubernetes (a Peer object). */
export interface ExternalPeer {
  name: string;
  uid: string;
  publicKey: string;
  /** Canonical host:port, or null for a peer that connects first (behind NAT). */
  endpoint: string | null;
  /** Canonical CIDRs, sorted. */
  allowedIPs: string[];
  persistentKeepalive: number;
}

export type MultiClusterProblemReason =
  | 'InvalidName'
  | 'InvalidSecretRef'
  | 'InvalidImportPools'
  | 'InvalidPublicKey'
  | 'InvalidEndpoint'
  | 'InvalidAllowedIPs'
  | 'InvalidKeepalive'
  | 'DuplicatePublicKey'
  | 'CIDRConflict'
  | 'UnknownPool'
  | 'BlockOutsidePool'
  | 'OverlappingBlock'
  | 'NoEndpoint'
  | 'InvalidRemoteObject';

/** Something refused, kept for a log line, an Event or a condition's message. */
export interface MultiClusterProblem {
  /** `RemoteCluster/<name>`, `Peer/<name>`, `<cluster>/Node/<name>`, `<cluster>/IPPool/<name>`... */
  object: string;
  reason: MultiClusterProblemReason;
  message: string;
}

/** What RemoteClusterWatch knows of one remote cluster: the planner's input. */
export interface RemoteClusterSnapshot {
  /** The RemoteCluster object's name. */
  name: string;
  importPools: readonly string[] | null;
  /** True once nodes, pools and blocks have all been listed once; stays true afterwards. */
  synced: boolean;
  /** False while the remote API does not answer; the last known state is kept. */
  reachable: boolean;
  /** The last failure talking to the remote API (or reading its Secret), or null. */
  lastError: string | null;
  nodes: readonly MeshNode[];
  pools: readonly IpPool[];
  blocks: readonly IpamBlock[];
  /** Remote objects refused at the boundary. */
  problems: readonly MultiClusterProblem[];
}

export type ConditionType = 'Connected' | 'Unreachable' | 'CIDRConflict';
export type ConditionStatus = 'True' | 'False' | 'Unknown';

/** A condition as the planner decides it; the status writer adds the times and generation. */
export interface DesiredCondition {
  type: ConditionType;
  status: ConditionStatus;
  reason: string;
  message: string;
}

/** metav1.Condition, as stored in RemoteCluster.status.conditions. */
export interface Condition extends DesiredCondition {
  lastTransitionTime: string;
  observedGeneration: number;
}

/** One WireGuard peer to add to wiremesh.wg; the same shape as agent/plan.ts's PeerPlan. */
export interface RemotePeerPlan {
  /** `<cluster>/<node>` for a remote node, `peer/<name>` for a Peer object. */
  node: string;
  publicKey: string;
  endpoint: string | null;
  /** Remote blocks (or the Peer's allowedIPs), sorted; never from annotations. */
  allowedIPs: string[];
  persistentKeepalive: number;
  /** The RemoteCluster it comes from, or null for a Peer object. */
  cluster: string | null;
}

/** A route through the tunnel, the shape of agent/plan.ts's RoutePlan. */
export interface RemoteRoutePlan {
  dst: string;
  dev: string;
  src: string;
}

export interface RemoteClusterReport {
  name: string;
  conditions: DesiredCondition[];
  /** Remote nodes programmed as peers, and the blocks routed to them. */
  nodes: number;
  blocks: number;
}

export interface RemotePlan {
  peers: RemotePeerPlan[];
  /** One route per allowed IP of every peer (empty without a tunnel address). */
  routes: RemoteRoutePlan[];
  /** Per RemoteCluster, in name order: the conditions for its status. */
  clusters: RemoteClusterReport[];
  refused: MultiClusterProblem[];
}
