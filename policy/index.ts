// policy/: a pure compiler from pods, namespaces and NetworkPolicies to this node's
// fragment of the one `inet wiremesh` nftables table (the nftables/ driver applies
// it). Built under the network policy issue; this file is its public face.
//
// The agent, per reconcile:
//   const pods = rawPods.map(podFromK8s);             // { pod | null, problems[] }
//   const namespaces = rawNamespaces.map(namespaceFromK8s);
//   const policies = rawPolicies.map(networkPolicyFromK8s);  // fail-closed on faults
//   const adminPolicies = rawAnps.map(adminNetworkPolicyFromK8s);      // likewise
//   const baselinePolicy = baselineAdminNetworkPolicyFromK8s(rawBanp);  // or null
//   const { table, problems, stats } = compilePolicies({
//     self: nodeName, pods, namespaces, policies, adminPolicies, baselinePolicy });
// then composes `table` into `inet wiremesh`, with its forward base chain doing
// `jump policy-forward` and its input base chain `jump policy-input`. The fragment
// never accepts (allowed traffic returns, denied traffic drops), so the jumps may sit
// anywhere in the base chains. compile.ts explains the shape and the decisions,
// k8s.ts and admin-k8s.ts the fail-closed handling of malformed objects.
export { checkPolicy, checkAdminRule, effectivePolicyTypes } from './check.ts';
export {
  compilePolicies,
  POLICY_FORWARD_CHAIN,
  POLICY_INPUT_CHAIN,
  DROP_LOG_GROUP,
  DISPATCH_MAPS,
  ADMIN_MAPS,
  ADMIN_CHAINS,
  type CompileResult,
  type RuleOrigin,
} from './compile.ts';
export {
  networkPolicyFromK8s,
  podFromK8s,
  podRecordForPolicy,
  POD_FIELDS_FOR_POLICY,
  samePodRecord,
  type PodRecord,
  namespaceFromK8s,
  labelSelectorFromK8s,
  ANNOTATION_LOG_DROPS,
} from './k8s.ts';
export { adminNetworkPolicyFromK8s, baselineAdminNetworkPolicyFromK8s } from './admin-k8s.ts';
export { hookVerdict, traceVerdict, renderFragment, type Packet } from './nftsim.ts';
export * from './types.ts';
