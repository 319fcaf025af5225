// ipam/: IP pools, blocks with node affinity claimed by compare-and-swap, per-pod
// allocation made durable before it is handed out, and garbage collection.
// Built under the IPAM/CNI issue; this file is its public face.
//
// The agent makes one NodeIpam per node and calls it from its CNI handler:
//   const ipam = new NodeIpam({ node, api: KubeBlockApi.fromFile(kubeconfig), log,
//                               autoSyncMs: 500 });   // stateDir: /var/lib/wiremesh/ipam
//   await ipam.start();            // replay the journal, adopt, first sync (works offline)
//   ADD:   const { address, prefix } = await ipam.allocate({ handle, namespace, pod,
//                                                 podUID, containerID, ifName, family });
//   DEL:   await ipam.release(handle);             // idempotent; every family
//   CHECK: ipam.find(handle, family);
//   GC:    await ipam.releaseExcept(network, validAttachments);
//   timer: await ipam.collectGarbage(livePodsOf(podsOfThisNode), graceMs); await ipam.sync();
//   watch: ipam.setPools(pools, nodeLabels)  (or ipam.refresh())
// allocate() resolves only once the allocation is journaled and fsynced; the
// IPAMBlock objects follow on sync(). store.ts has the durability argument,
// allocator.ts the allocation decisions, deploy/crds.yaml the CRDs. The agent's
// ServiceAccount needs ippools get/list/watch (and create, for the default pool the
// agents make on a cluster without any, agent/defaultpool.ts) and ipamblocks
// get/list/watch/create/patch/delete (and nodes get, which it has).
export {
  NodeIpam,
  DEFAULT_STATE_DIR,
  type NodeIpamOptions,
  type AllocateRequest,
  type AllocateResult,
  type SyncReport,
  type GcReport,
  type IpamUsage,
  type BlockUsage,
} from './store.ts';
export {
  poolsForNode,
  defaultPools,
  encryptionRank,
  checkPoolOverlaps,
  chooseFreeBlock,
  allocateFromBlocks,
  lowestFreeAddress,
  findAllocation,
  planRelease,
  planGarbageCollection,
  livePodsOf,
  podIsLive,
  isKubernetesAllocation,
  blockCount,
  blockOccupies,
  compareCidrs,
  PoolExhaustedError,
  NoPoolError,
  EMPTY_GC_STATE,
  type AllocationDecision,
  type GcInput,
  type LivePods,
  type ListedPod,
  type GcPlan,
  type GcState,
} from './allocator.ts';
export {
  IpamApiError,
  apiErrorReason,
  type BlockApi,
  type BlockWrite,
  type BlockList,
  type PoolList,
  type IpamApiErrorReason,
} from './api.ts';
export {
  KubeBlockApi,
  ipPoolFromK8s,
  ipamBlockFromK8s,
  ipamBlockToK8s,
  IPAM_API_VERSION,
} from './k8s.ts';
export { FakeBlockApi, type FakeCall } from './fake.ts';
export { BlockSyncer, type PushOutcome } from './syncer.ts';
export { Journal, JournalCorruptError, JOURNAL_FILE, type JournalRecord } from './journal.ts';
export { selectorMatches, parseLabelSelector } from './selector.ts';
export {
  blockName,
  memoised,
  parseCanonicalCidr,
  parseCanonicalAddress,
  type Family,
} from './cidr.ts';
export * from './types.ts';
