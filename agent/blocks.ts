// Which IPAMBlocks an agent believes: a pure function from the block objects, the
// pools, the nodes and this node's own pod addresses to the blocks every planner
// (agent/plan.ts peers and routes, agent/paths.ts paths) may route, and the refused
// rest with a reason for an Event and a log line. No I/O, no clock.
//
// A block object is a claim made by whoever could write it, and a claim routed to a
// node pulls that range's traffic to the node. So a block is routed only when it is
// one IPAM itself could have made:
// - its name is the one derived from its CIDR (one object per range, as the CRD asks);
// - its node is a Node of the cluster;
// - its pool is a pool this agent routes (valid, not overlapped by an older one;
//   disabled pools count, their blocks live on), it lies inside that pool and has the
//   pool's block size. Blocks of one pool are then aligned ranges of one size, so two
//   of them either are the same range or are disjoint;
// - it overlaps no block that was created before it. Aligned blocks of disjoint pools
//   cannot overlap, so this catches what slips past the rules above (an object written
//   past the CRD's validation, a pool's range changed by re-creating it). The older
//   claim wins, by creationTimestamp then name, as overlapping pools are decided
//   (ipam/allocator.ts checkPoolOverlaps): the apiserver sets the timestamp, so no
//   writer can backdate a claim; the older block was made while its range was free
//   and its node may already have handed its addresses out, while a younger
//   overlapping one is a mistake or a forgery; and every agent sees the same
//   timestamps and names, so every agent keeps the same block;
// - for another node's block, it holds no address of this node's own pods (from this
//   node's IPAM journal, which only this node writes). That rule is this node's alone
//   and is applied last, so it never changes which block wins elsewhere: a node never
//   routes its own pods' addresses away, and never replaces their host routes.
import { blockName, ipamBlockFromK8s, type IpPool } from '../ipam/index.ts';
import { cidrsOverlap, mustParseCidr, type Cidr } from '../ipam/cidr.ts';
import { cidrContains } from './cidr.ts';
import { sameButVersion } from '../kube/informer.ts';
import type { PathBlock } from './paths.ts';

/** An IPAMBlock object as the admission reads it. */
export interface BlockClaim {
  /** The object's name. */
  name: string;
  cidr: string;
  node: string;
  pool: string;
  /** creationTimestamp in ms since the epoch (0 when absent). */
  createdAt: number;
}

export type BlockRefusalReason =
  | 'InvalidBlockName'
  | 'UnknownNode'
  | 'UnknownPool'
  | 'OutsidePool'
  | 'WrongBlockSize'
  | 'OverlappingBlock'
  | 'LocalAddressConflict';

export interface RefusedBlock {
  /** The IPAMBlock object's name. */
  block: string;
  cidr: string;
  node: string;
  reason: BlockRefusalReason;
  message: string;
}

export interface BlockAdmissionInput {
  self: string;
  blocks: readonly BlockClaim[];
  /** The pools this agent routes (agent/pools.ts poolsFromK8s: valid, not overlapping). */
  pools: readonly Pick<IpPool, 'name' | 'cidr' | 'blockSize'>[];
  /** Names of the cluster's Nodes. */
  nodes: readonly string[];
  /** Addresses of this node's own pods (its IPAM's allocations). */
  localAddresses: readonly string[];
}

export interface BlockAdmission {
  /** The blocks to route, by CIDR. */
  blocks: PathBlock[];
  refused: RefusedBlock[];
}

/** An IPAMBlock object as a claim, or null when it names no usable CIDR, pool and node. */
export function blockClaimFromK8s(raw: unknown): BlockClaim | null {
  const { block } = ipamBlockFromK8s(raw);
  if (!block) return null;
  const meta = (raw as { metadata?: { creationTimestamp?: unknown } }).metadata;
  const ts = meta?.creationTimestamp;
  const created =
    ts instanceof Date ? ts.getTime() : typeof ts === 'string' ? Date.parse(ts) : Number.NaN;
  return {
    name: block.name,
    cidr: block.cidr,
    node: block.node,
    pool: block.pool,
    createdAt: Number.isFinite(created) ? created : 0,
  };
}

const byAge = (a: BlockClaim, b: BlockClaim) =>
  a.createdAt - b.createdAt || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export function admitBlocks(input: BlockAdmissionInput): BlockAdmission {
  const refused: RefusedBlock[] = [];
  const refuse = (b: BlockClaim, reason: BlockRefusalReason, why: string) =>
    refused.push({
      block: b.name,
      cidr: b.cidr,
      node: b.node,
      reason,
      message: `IPAMBlock ${b.name} (${b.cidr}, node ${b.node}): ${why}; it is not routed`,
    });
  const nodes = new Set(input.nodes);
  const pools = new Map(input.pools.map((p) => [p.name, { pool: p, cidr: mustParseCidr(p.cidr) }]));

  const candidates: { claim: BlockClaim; cidr: Cidr }[] = [];
  for (const b of input.blocks) {
    const cidr = mustParseCidr(b.cidr);
    const pool = pools.get(b.pool);
    if (b.name !== blockName(b.cidr))
      refuse(b, 'InvalidBlockName', `its name must be ${blockName(b.cidr)}`);
    else if (!nodes.has(b.node)) refuse(b, 'UnknownNode', `${b.node} is not a node of the cluster`);
    else if (!pool) refuse(b, 'UnknownPool', `pool ${b.pool} does not exist or is refused`);
    else if (cidr.family !== pool.cidr.family || !containsCidr(pool.cidr, cidr))
      refuse(b, 'OutsidePool', `it lies outside its pool ${b.pool} (${pool.pool.cidr})`);
    else if (cidr.prefix !== pool.pool.blockSize)
      refuse(b, 'WrongBlockSize', `pool ${b.pool} has /${pool.pool.blockSize} blocks`);
    else candidates.push({ claim: b, cidr });
  }

  // Overlaps: sorted by start address, a block overlaps another only within a run of
  // ranges that chain into each other; within a run, the oldest claims win.
  const kept: { claim: BlockClaim; cidr: Cidr }[] = [];
  const sorted = [...candidates].sort(
    (x, y) =>
      x.cidr.family - y.cidr.family ||
      (x.cidr.base < y.cidr.base ? -1 : x.cidr.base > y.cidr.base ? 1 : 0),
  );
  let run: typeof sorted = [];
  let runEnd = -1n;
  const settle = () => {
    const winners: typeof run = [];
    for (const c of [...run].sort((x, y) => byAge(x.claim, y.claim))) {
      const older = winners.find((w) => cidrsOverlap(w.cidr, c.cidr));
      if (older)
        refuse(
          c.claim,
          'OverlappingBlock',
          `it overlaps the older IPAMBlock ${older.claim.name} (${older.claim.cidr}, node ${older.claim.node})`,
        );
      else winners.push(c);
    }
    kept.push(...winners);
    run = [];
  };
  for (const c of sorted) {
    const first = run[0];
    if (first && (c.cidr.family !== first.cidr.family || c.cidr.base > runEnd)) settle();
    run.push(c);
    const end = lastOf(c.cidr);
    if (run.length === 1 || end > runEnd) runEnd = end;
  }
  settle();

  const blocks: PathBlock[] = [];
  for (const { claim } of kept) {
    if (claim.node !== input.self) {
      const range = mustParseCidr(claim.cidr);
      const local = input.localAddresses.find((a) => cidrContains(range, a));
      if (local !== undefined) {
        refuse(
          claim,
          'LocalAddressConflict',
          `it holds ${local}, an address of a pod on ${input.self}`,
        );
        continue;
      }
    }
    blocks.push({ cidr: claim.cidr, node: claim.node, pool: claim.pool });
  }
  return {
    blocks: blocks.sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0)),
    refused: refused.sort((a, b) => (a.block < b.block ? -1 : a.block > b.block ? 1 : 0)),
  };
}

function lastOf(c: Cidr): bigint {
  return c.base + (1n << BigInt(c.bits - c.prefix)) - 1n;
}

function containsCidr(outer: Cidr, inner: Cidr): boolean {
  return inner.prefix >= outer.prefix && cidrsOverlap(outer, inner);
}

/**
 * What the agent keeps of an IPAMBlock in its cache: what admission reads (name,
 * CIDR, node, pool, creation time). Its allocations (one entry per pod of the
 * cluster, changing with every pod) stay with the node that owns the block: this
 * node's own come from its IPAM journal.
 */
export function trimBlockClaim<T extends object>(raw: T): T {
  const o = raw as {
    metadata?: Record<string, unknown>;
    spec?: Record<string, unknown>;
  };
  const meta = o.metadata ?? {};
  const spec = o.spec ?? {};
  return {
    metadata: {
      name: meta.name,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      creationTimestamp: meta.creationTimestamp,
    },
    spec: { cidr: spec.cidr, node: spec.node, pool: spec.pool },
  } as unknown as T;
}

/** trimBlockClaim keeps single values only: a list never parses a block's allocations. */
export const BLOCK_FIELDS_FOR_MESH = { metadata: {}, spec: {} } as const;

/** True when two trimmed blocks are the same claim (an allocation changed, nothing else). */
export const sameBlockClaim = sameButVersion;
