// agent/: the node daemon. It watches the API (Nodes, IP pools, IPAM blocks, Pods,
// Namespaces, NetworkPolicies, other clusters), keeps a snapshot, and runs two
// coalescing reconcile loops, the dataplane's and the nftables table's, that ask the
// planners for desired state and the drivers to apply it (agent.ts says how). Nothing
// is written to the dataplane before the first full lists.
export * from './annotations.ts';
export { Agent } from './agent.ts';
export {
  defaultAgentConfig,
  DEFAULT_TUNNEL_CIDR,
  DEFAULT_POOL_CIDR,
  type AgentConfig,
} from './config.ts';
export type { AgentStatus, PeerStatus } from './status.ts';
export { serveAgentApi, callAgent } from './server.ts';
export {
  serveHealth,
  getHealth,
  checkLiveness,
  checkReadiness,
  healthResponse,
  type HealthFacts,
  type HealthSource,
} from './health.ts';
export { meshNodeFromK8s, type MeshNode, type NodeProblem } from './meshnode.ts';
export {
  planMesh,
  assignTunnelAddresses,
  type MeshPlan,
  type PeerPlan,
  type MeshSettings,
} from './plan.ts';
export { MeshDriver, type DeviceProvider, type ApplyReport } from './meshdriver.ts';
export { Reconciler } from './reconciler.ts';
export { jsonLogger, silentLogger, type Logger } from './log.ts';
export { parseEndpoint, formatEndpoint } from './endpoint.ts';
export { pathMtu } from './mtu.ts';
export type { WireGuardMode } from './device.ts';
export { kernelHasWireGuard, EXTERNAL_WIREGUARD_GO } from './device.ts';
export { EXTERNAL_BIRD } from './bgpphase.ts';
