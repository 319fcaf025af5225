// IPAM's pure planners: which pools serve a node, which block to claim next, which
// address to give a handle, what to release, and what garbage to collect. No I/O,
// the clock passed in; store.ts applies the decisions durably.
//
// Decisions written down here:
// - Every address of a block is used, the block's first and last included (as
//   Calico does). Pods get a /32 (/128) with a route via 169.254.1.1 and the host
//   routes each pod's /32 to its veth; blocks are routed between nodes as wholes.
//   No block is ever an on-link subnet, so there is no network or broadcast address
//   to protect, and skipping them would only waste two addresses per block.
// - The lowest free address is given, deterministically. Addresses are reused as
//   soon as their release is durable.
// - A pod keeps its address when its sandbox is replaced (a node that rebooted, a
//   sandbox the kubelet re-creates): the kubelet stops a pod's sandbox before it
//   starts the next, so an allocation of the same pod UID, network and interface
//   under another container is its dead predecessor, whose address the new one
//   takes over (its DEL was lost: the node went down with it); and an address the
//   same pod released moments ago (store.ts remembers a few minutes) is given back
//   to it when still free. Without a pod UID (podman, cnitool) neither applies.
// - No borrowing: a node allocates only from blocks it owns, so the node's own
//   journal is enough to keep its addresses unique. A pool is full for a node when
//   its own blocks are full and no block is left to claim, even if other nodes'
//   blocks have room; garbage collection of empty blocks makes room flow back.
// - Pools that overlap: the older one (creation time, then name) wins, the younger
//   one is refused with a problem, identically on every node. Blocks are never
//   claimed over any existing block, of whatever pool or size, unless it is one no
//   IPAM could have made (blockOccupies).
// - Garbage collection trusts the runtime: an address goes on DEL, on the runtime's
//   GC (its valid attachments), or when its Kubernetes pod is gone for good. The pod
//   is compared by UID where the runtime passed one (containerd and CRI-O pass
//   K8S_POD_UID), so a pod deleted and re-created under its name does not keep the
//   old pod's addresses alive; by namespace and name otherwise. A pod in a terminal
//   phase (Succeeded, Failed) is gone: it never runs again. An attachment made
//   without Kubernetes arguments (podman, cnitool) is never collected by the pod
//   check: nothing in the API speaks for it, so only its runtime can release it.
// - Garbage collection keeps one empty block per pool the node still uses, so a
//   node whose pods come and go does not churn block claims; blocks of pools that
//   are disabled, gone or no longer select the node are all released once empty.
import {
  mustParseCidr,
  cidrSize,
  cidrsOverlap,
  cidrLast,
  fromBigInt,
  formatCidr,
  parseCanonicalAddress,
  type Cidr,
  type Family,
} from './cidr.ts';
import { selectorMatches } from './selector.ts';
import {
  BLOCK_SIZE_RANGE,
  type Allocation,
  type AllocationAttributes,
  type IpamBlock,
  type IpamProblem,
  type IpPool,
} from './types.ts';

/** No pool that selects the node has an address left for it. */
export class PoolExhaustedError extends Error {
  readonly pools: string[];
  constructor(pools: readonly IpPool[], node: string) {
    const list = pools.map((p) => `'${p.name}' (${p.cidr}, /${p.blockSize} blocks)`).join(', ');
    super(
      pools.length === 1
        ? `IP pool ${list} is exhausted: node ${node} has no free address in its blocks and every block of the pool is claimed`
        : `IP pools ${list} are exhausted: node ${node} has no free address in its blocks and every block of these pools is claimed`,
    );
    this.name = 'PoolExhaustedError';
    this.pools = pools.map((p) => p.name);
  }
}

/** No enabled pool selects the node (for the family or pool asked for). */
export class NoPoolError extends Error {
  constructor(node: string, want: { pool?: string | undefined; family?: Family | undefined }) {
    const what = want.pool
      ? `IP pool '${want.pool}' is missing, disabled, refused or does not select node ${node}`
      : `no enabled IP pool${want.family ? ` of IPv${want.family}` : ''} selects node ${node}`;
    super(what);
    this.name = 'NoPoolError';
  }
}

export function comparePools(a: IpPool, b: IpPool): number {
  return a.family - b.family || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * Pools that overlap an older pool are refused (older by creation time, then name).
 * Disabled pools count: their blocks may still be in use.
 */
export function checkPoolOverlaps(pools: readonly IpPool[]): {
  pools: IpPool[];
  problems: IpamProblem[];
} {
  const ordered = [...pools].sort(
    (a, b) => a.createdAt - b.createdAt || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const kept: { pool: IpPool; cidr: Cidr }[] = [];
  const problems: IpamProblem[] = [];
  for (const pool of ordered) {
    const cidr = mustParseCidr(pool.cidr);
    const older = kept.find((k) => cidrsOverlap(k.cidr, cidr));
    if (older) {
      problems.push({
        object: `IPPool/${pool.name}`,
        reason: 'OverlappingPool',
        message: `${pool.cidr} overlaps the older pool '${older.pool.name}' (${older.pool.cidr}); this pool is not used`,
      });
    } else kept.push({ pool, cidr });
  }
  return { pools: kept.map((k) => k.pool).sort(comparePools), problems };
}

/** Enabled, non-overlapping pools whose nodeSelector matches, by family then name. */
export function poolsForNode(
  pools: readonly IpPool[],
  nodeLabels: Readonly<Record<string, string>>,
): IpPool[] {
  return checkPoolOverlaps(pools).pools.filter(
    (p) => !p.disabled && selectorMatches(p.nodeSelector, nodeLabels),
  );
}

/** How strongly a pool's traffic between nodes is encrypted: 0 the strongest. */
export function encryptionRank(pool: Pick<IpPool, 'encryption' | 'encryptionMode'>): number {
  if (pool.encryption === 'None') return 2;
  return pool.encryptionMode === 'Required' ? 0 : 1;
}

/**
 * The pools an address request that names no pool may take, of a node's pools: per
 * family, only those of the strongest encryption among them (WireGuard Required, then
 * Preferred, then None). A namespace that names no pool thus never gets a plaintext
 * pool's address while an encrypted pool serves the node, even when the plaintext pool
 * is newer, sorts first by name, or already has a block with room on the node (made
 * for a namespace that named it); and when those pools are full the request fails
 * rather than fall to a weaker one.
 */
export function defaultPools(nodePools: readonly IpPool[]): IpPool[] {
  const best = new Map<number, number>();
  for (const p of nodePools)
    best.set(p.family, Math.min(best.get(p.family) ?? 3, encryptionRank(p)));
  return nodePools.filter((p) => encryptionRank(p) === best.get(p.family));
}

/**
 * Whether an existing block (another node's, from the API) keeps its range from being
 * claimed. A block naming a pool it does not fit (outside it, or not of its block
 * size) was made by no IPAM and is routed by no agent (agent/blocks.ts), so it holds
 * nothing back; a block of a pool that no longer exists still does (its pods may
 * hold addresses), if its size is a block size at all. Otherwise one object of a
 * node's own (0.0.0.0/0) would stop every claim of every node.
 */
export function blockOccupies(
  block: Pick<IpamBlock, 'cidr' | 'pool'>,
  pools: readonly IpPool[],
): boolean {
  const cidr = mustParseCidr(block.cidr);
  const pool = pools.find((p) => p.name === block.pool);
  if (!pool) {
    const [min, max] = BLOCK_SIZE_RANGE[cidr.family];
    return cidr.prefix >= min && cidr.prefix <= max;
  }
  const range = mustParseCidr(pool.cidr);
  return (
    cidr.family === range.family && cidr.prefix === pool.blockSize && cidrsOverlap(cidr, range)
  );
}

export function blockCount(pool: IpPool): bigint {
  return 1n << BigInt(pool.blockSize - mustParseCidr(pool.cidr).prefix);
}

/**
 * The next block of the pool that overlaps no existing block, searching from block
 * index `preferredOffset` (taken modulo the block count, so each node can start
 * elsewhere and races are rare) and wrapping round; null when the pool is full.
 */
export function chooseFreeBlock(
  pool: IpPool,
  existingBlocks: readonly Pick<IpamBlock, 'cidr'>[],
  preferredOffset = 0n,
): string | null {
  const poolCidr = mustParseCidr(pool.cidr);
  const count = blockCount(pool);
  const shift = BigInt(poolCidr.bits - pool.blockSize);
  // The block indices each existing block covers, as merged closed intervals.
  const taken: [bigint, bigint][] = [];
  for (const b of existingBlocks) {
    const c = mustParseCidr(b.cidr);
    if (!cidrsOverlap(c, poolCidr)) continue;
    const from = c.base > poolCidr.base ? c.base : poolCidr.base;
    const last = cidrLast(c) < cidrLast(poolCidr) ? cidrLast(c) : cidrLast(poolCidr);
    taken.push([(from - poolCidr.base) >> shift, (last - poolCidr.base) >> shift]);
  }
  taken.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: [bigint, bigint][] = [];
  for (const [s, e] of taken) {
    const top = merged.at(-1);
    if (top && s <= top[1] + 1n) top[1] = e > top[1] ? e : top[1];
    else merged.push([s, e]);
  }
  const firstFreeFrom = (start: bigint): bigint | null => {
    let i = start;
    for (const [s, e] of merged) {
      if (e < i) continue;
      if (s > i) return i;
      i = e + 1n;
    }
    return i < count ? i : null;
  };
  const offset = ((preferredOffset % count) + count) % count;
  const index = firstFreeFrom(offset) ?? firstFreeFrom(0n);
  if (index === null) return null;
  const base = poolCidr.base + (index << shift);
  return formatCidr({ ...poolCidr, base, prefix: pool.blockSize });
}

export function findAllocation(
  blocks: readonly IpamBlock[],
  handle: string,
): { block: IpamBlock; allocation: Allocation } | null {
  for (const block of blocks) {
    const allocation = block.allocations.get(handle);
    if (allocation) return { block, allocation };
  }
  return null;
}

/** The lowest address of the block that no allocation holds, or null. */
export function lowestFreeAddress(block: IpamBlock): string | null {
  const cidr = mustParseCidr(block.cidr);
  if (BigInt(block.allocations.size) >= cidrSize(cidr)) return null; // full: skip the parsing
  const used = new Set<bigint>();
  for (const a of block.allocations.values()) {
    const p = parseCanonicalAddress(a.address);
    if (p.ok) used.add(p.value.value);
  }
  if (BigInt(used.size) >= cidrSize(cidr)) return null;
  for (let v = cidr.base; v <= cidrLast(cidr); v++) {
    if (!used.has(v)) return fromBigInt(v, cidr.family);
  }
  return null;
}

/** The network part of a handle `<network>.<containerID>.<ifName>`, or null when it is not one. */
export function handleNetwork(
  handle: string,
  a: Pick<AllocationAttributes, 'containerID' | 'ifName'>,
): string | null {
  const tail = `.${a.containerID}.${a.ifName}`;
  return handle.endsWith(tail) ? handle.slice(0, -tail.length) : null;
}

/**
 * The allocation of an earlier sandbox of the same pod for the same network and
 * interface (same pod UID, another container), or null. Only with a pod UID.
 */
export function earlierSandbox(
  blocks: readonly IpamBlock[],
  handle: string,
  attrs: AllocationAttributes,
): { block: IpamBlock; allocation: Allocation } | null {
  const network = handleNetwork(handle, attrs);
  if (!attrs.podUID || network === null) return null;
  for (const block of blocks) {
    for (const a of block.allocations.values()) {
      if (
        a.podUID === attrs.podUID &&
        a.namespace === attrs.namespace &&
        a.pod === attrs.pod &&
        a.ifName === attrs.ifName &&
        a.containerID !== attrs.containerID &&
        handleNetwork(a.handle, a) === network
      )
        return { block, allocation: a };
    }
  }
  return null;
}

/** The block of `blocks` that holds `address` in its range with no allocation on it, or null. */
export function blockWithFreeAddress(
  blocks: readonly IpamBlock[],
  address: string,
): IpamBlock | null {
  const p = parseCanonicalAddress(address);
  if (!p.ok) return null;
  const v = p.value.value;
  for (const block of blocks) {
    const cidr = mustParseCidr(block.cidr);
    if (cidr.family !== p.value.family || v < cidr.base || v > cidrLast(cidr)) continue;
    return [...block.allocations.values()].some((a) => a.address === address) ? null : block;
  }
  return null;
}

export type AllocationDecision =
  | { kind: 'existing'; block: IpamBlock; allocation: Allocation }
  | { kind: 'new'; block: IpamBlock; allocation: Allocation }
  | { kind: 'full' };

/**
 * An address for `handle` from the given blocks (the node's own, in preference
 * order): the one it already has (same handle, same address), else the lowest free
 * address of the first block with room. A handle held by another container or
 * interface is an error, never a shared address.
 */
export function allocateFromBlocks(
  blocks: readonly IpamBlock[],
  handle: string,
  attrs: AllocationAttributes,
  now: number,
): AllocationDecision {
  const found = findAllocation(blocks, handle);
  if (found) {
    assertSameAttachment(found.allocation, attrs);
    return { kind: 'existing', ...found };
  }
  for (const block of blocks) {
    const address = lowestFreeAddress(block);
    if (address === null) continue;
    return { kind: 'new', block, allocation: { handle, address, allocatedAt: now, ...attrs } };
  }
  return { kind: 'full' };
}

export function assertSameAttachment(existing: Allocation, attrs: AllocationAttributes): void {
  if (existing.containerID !== attrs.containerID || existing.ifName !== attrs.ifName) {
    throw new Error(
      `handle '${existing.handle}' already holds ${existing.address} for container ` +
        `${existing.containerID} interface ${existing.ifName}, not ${attrs.containerID} ${attrs.ifName}`,
    );
  }
}

/** What releasing `handle` frees, or null when no block holds it (release is idempotent). */
export function planRelease(
  blocks: readonly IpamBlock[],
  handle: string,
): { block: IpamBlock; allocation: Allocation } | null {
  return findAllocation(blocks, handle);
}

/** What garbage collection remembers between runs: when each orphan and each empty block was first seen. */
export interface GcState {
  orphanSince: ReadonlyMap<string, number>;
  emptySince: ReadonlyMap<string, number>;
}

export const EMPTY_GC_STATE: GcState = { orphanSince: new Map(), emptySince: new Map() };

/** The pods bound to this node that may still run, from a complete list. */
export interface LivePods {
  /** Their UIDs (a static pod's own UID, the one the kubelet gives the runtime, included). */
  uids: ReadonlySet<string>;
  /** `<namespace>/<name>`. */
  names: ReadonlySet<string>;
}

/** A pod as the API lists it, reduced to what garbage collection compares. */
export interface ListedPod {
  namespace: string;
  name: string;
  uid: string;
  phase?: string;
  /** `kubernetes.io/config.mirror` of a static pod's mirror: the UID the kubelet runs it under. */
  mirrorOf?: string;
}

/** The pods of a node's list that may still run: not in a terminal phase. */
export function livePodsOf(pods: readonly ListedPod[]): LivePods {
  const running = pods.filter((p) => p.phase !== 'Succeeded' && p.phase !== 'Failed');
  return {
    uids: new Set(running.flatMap((p) => [p.uid, ...(p.mirrorOf ? [p.mirrorOf] : [])])),
    names: new Set(running.map((p) => `${p.namespace}/${p.name}`)),
  };
}

/**
 * Whether an allocation was made for a Kubernetes pod: it has a namespace and a pod
 * name (without K8S_POD_NAMESPACE the namespace is empty, whatever name podman
 * passed); earlier versions recorded the container id in place of a missing name.
 */
export function isKubernetesAllocation(a: AllocationAttributes): boolean {
  return a.namespace !== '' && a.pod !== '' && a.pod !== a.containerID;
}

/** Whether an allocation's Kubernetes pod is among the live ones (by UID when it has one). */
export function podIsLive(a: AllocationAttributes, live: LivePods): boolean {
  if (!isKubernetesAllocation(a)) return true;
  if (a.podUID) return live.uids.has(a.podUID);
  return live.names.has(`${a.namespace}/${a.pod}`);
}

export interface GcInput {
  /** The node's own blocks. */
  blocks: readonly IpamBlock[];
  /** The pods bound to this node that may still run (from a complete list). */
  livePods: LivePods;
  /** Pools that are enabled and select this node, or null when unknown (then all count as used). */
  activePools: ReadonlySet<string> | null;
  now: number;
  graceMs: number;
  state: GcState;
}

export interface GcPlan {
  /** Allocations whose pod has been gone for longer than the grace period. */
  releaseHandles: string[];
  /** CIDRs of empty blocks to give back. */
  releaseBlocks: string[];
  /** To pass to the next run. */
  state: GcState;
}

/**
 * An allocation is garbage when its pod has not been live (podIsLive) for graceMs
 * (first sighting as an orphan recorded in the state) and it is at least graceMs old.
 * Allocations made without Kubernetes arguments are left to CNI DEL and GC. A block is garbage when it has been empty for graceMs, unless it is the one
 * block the node keeps for a pool it still uses (the lowest, when none has pods).
 */
export function planGarbageCollection(input: GcInput): GcPlan {
  const { blocks, livePods, activePools, now, graceMs, state } = input;
  const orphanSince = new Map<string, number>();
  const releaseHandles: string[] = [];
  const remaining = new Map<string, number>(); // block cidr -> allocations left
  for (const block of blocks) {
    let left = 0;
    for (const a of block.allocations.values()) {
      if (podIsLive(a, livePods)) {
        left++;
        continue;
      }
      const since = state.orphanSince.get(a.handle) ?? now;
      if (now - since >= graceMs && now - a.allocatedAt >= graceMs) {
        releaseHandles.push(a.handle);
      } else {
        orphanSince.set(a.handle, since);
        left++;
      }
    }
    remaining.set(block.cidr, left);
  }

  const emptySince = new Map<string, number>();
  const releaseBlocks: string[] = [];
  const byPool = new Map<string, IpamBlock[]>();
  for (const b of blocks) byPool.set(b.pool, [...(byPool.get(b.pool) ?? []), b]);
  for (const [pool, own] of byPool) {
    const empty = own
      .filter((b) => remaining.get(b.cidr) === 0)
      .sort((a, b) => compareCidrs(a.cidr, b.cidr));
    const used = activePools === null || activePools.has(pool);
    const keep = used && empty.length === own.length ? empty[0]?.cidr : undefined;
    for (const b of empty) {
      const since = state.emptySince.get(b.cidr) ?? now;
      if (b.cidr !== keep && now - since >= graceMs) releaseBlocks.push(b.cidr);
      else emptySince.set(b.cidr, since);
    }
  }
  return {
    releaseHandles: [...new Set(releaseHandles)].sort(), // dual-stack: one handle, two blocks
    releaseBlocks: releaseBlocks.sort(compareCidrs),
    state: { orphanSince, emptySince },
  };
}

/** Numeric order: IPv4 before IPv6, then by network address, then by prefix. */
export function compareCidrs(a: string, b: string): number {
  const x = mustParseCidr(a);
  const y = mustParseCidr(b);
  if (x.family !== y.family) return x.family - y.family;
  if (x.base !== y.base) return x.base < y.base ? -1 : 1;
  return x.prefix - y.prefix;
}
