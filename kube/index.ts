// kube/: the agent's own small Kubernetes API client and informer (see client.ts for
// why it is not @kubernetes/client-node, which the lab and the tests still use).
export {
  kubeClient,
  kubeClientForServer,
  kubeClientFromKubeconfig,
  KubeApiError,
  type KubeClient,
  type WatchEvent,
  type RequestOpts,
} from './client.ts';
export { Informer, sameButVersion } from './informer.ts';
export type { ListFields } from './liststream.ts';
