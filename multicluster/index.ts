// multicluster/: several clusters in one encrypted mesh, and WireGuard peers outside
// Kubernetes (issue #7). RemoteCluster and Peer objects are translated at the
// boundary (k8s.ts); RemoteClusterWatch keeps each remote cluster's Nodes, IPPools
// and IPAMBlocks, surviving an unreachable remote with its last known state; the
// pure planRemotePeers turns it all into WireGuard peers, routes and conditions
// (overlapping pod ranges refused on both sides); RemoteClusterStatusWriter puts the
// conditions on the RemoteCluster objects. The agent adds the planned peers and
// routes to wiremesh.wg beside planMesh's; `wiremesh peer-config` prints a Peer's
// wg-quick file. deploy/multicluster-{crds,rbac}.yaml hold the CRDs and permissions.
export * from './types.ts';
export { remoteClusterFromK8s, peerFromK8s } from './k8s.ts';
export { planRemotePeers, type RemotePlanInput } from './plan.ts';
export {
  RemoteClusterWatch,
  remoteClientFromSecret,
  REMOTE_NODES_PATH,
  REMOTE_POOLS_PATH,
  REMOTE_BLOCKS_PATH,
  type RemoteClusterWatchOptions,
} from './watch.ts';
export {
  RemoteClusterStatusWriter,
  mergeConditions,
  planStatus,
  conditionsFromK8s,
  statusWriterNode,
  type RemoteClusterStatus,
} from './status.ts';
export { FakeRemoteApi } from './fake.ts';
export { MultiClusterWatch, type MultiClusterWatchOptions } from './agentwatch.ts';
