// explain/: what an operator asks when a pod cannot reach another. `wiremesh
// explain` gives a flow's path and the policy verdict at both ends with the rule
// that decided, computed by the agent's own compiler and planners from the objects
// in the API (snapshot.ts reads them, explain.ts is pure).
export {
  loadSnapshot,
  loadRemoteClusters,
  admitClusterBlocks,
  type ClusterSnapshot,
  type RemoteView,
} from './snapshot.ts';
export {
  explainFlow,
  describeOrigin,
  parsePortProtocol,
  renderExplanation,
  resolveEndpoint,
  PolicyCompiler,
  type Decision,
  type Endpoint,
  type Explanation,
  type FlowQuery,
  type PathHop,
  type Protocol,
} from './explain.ts';
export {
  planGraph,
  renderDot,
  handshakeAges,
  HANDSHAKE_STALE_S,
  type AgentFacts,
  type MeshGraph,
} from './graph.ts';
