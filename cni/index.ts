// cni/: the CNI plugin (spec 1.1: ADD, DEL, CHECK, VERSION, GC, STATUS). The binary
// in /opt/cni/bin is a minimal static Go relay (cni/relay) to the agent's unix
// socket; parsing, validation, error codes, results and the pod wiring live here,
// in the agent, which is already running; the kernel work goes through the agent's
// long-lived netlink worker (cni/netlinkd), so an ADD starts no process.
export * from './protocol.ts';
export * from './result.ts';
export {
  CniHandler,
  handleOf,
  type PodIpam,
  type AttachmentRecord,
  type PodAllocation,
  type AttachmentRequest,
  type CniReply,
  type CniHandlerOptions,
} from './handler.ts';
export { nodeNetnsCheck, type NetnsIdentity } from './hostnetns.ts';
export { serveCni, CNI_REQUEST_CHANNEL, type CniRequestEvent } from './server.ts';
export {
  setupPodNetwork,
  teardownPodNetwork,
  checkPodNetwork,
  podNetProblems,
  CommandWiring,
  hostVethName,
  POD_ROUTE_PROTOCOL,
  legacyHostVethName,
  vethMac,
  procSysctl,
  runnerSysctl,
  POD_GATEWAY_V4,
  type PodWiring,
  type PodNetSpec,
  type PodNetResult,
  type PodNetFacts,
  type SysctlWriter,
} from './podnet.ts';
export {
  NetlinkWorker,
  WiringUnavailableError,
  defaultNetlinkdPath,
  NETLINKD_PROTOCOL,
  type NetlinkWorkerOptions,
  type WorkerProcess,
  type SpawnWorker,
} from './netlinkd.ts';
export { FakeWiring, type FakeWiringOp } from './wiring-fake.ts';
export {
  installCni,
  wiremeshConflist,
  CONFLIST_VERSION,
  DEFAULT_CHAIN,
  type ChainedPlugin,
  type InstallOptions,
} from './install.ts';
