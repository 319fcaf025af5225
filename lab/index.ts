// lab/: a real Kubernetes cluster on one machine (real etcd and kube-apiserver,
// nodes as network + mount namespaces, pods wired by cnitool) for the end-to-end
// tests, the benchmarks and `make lab`.
export { labLeftovers } from './leftovers.ts';
export { Lab, type LabState, type LabStatus, type LabPod, type UpOptions } from './lab.ts';
export {
  planLab,
  validateLabName,
  validateIpFamily,
  LAB_POOL_V6,
  type IpFamily,
  type LabPlan,
  type NodePlan,
} from './plan.ts';
export { parseCniChoice, type CniChoice } from './cni.ts';
export { kubeClient } from './kube.ts';
export { createPoolNamespace, IPPOOL_PATH, patchPoolSpec } from './pools.ts';
export {
  connectLabs,
  disconnectLabs,
  planUnderlayConnection,
  type UnderlayConnection,
} from './connect.ts';
