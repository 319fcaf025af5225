// NodeIpam: one node's IPAM, the object the agent's CNI handler calls. It hands out
// addresses from the blocks the node holds, durably, and mirrors them into the
// node's IPAMBlock objects.
//
// Durability, the one rule: no crash at any point may produce a duplicate address.
// - Across nodes, blocks keep addresses apart: a node allocates only from blocks it
//   holds, and it holds a block only once the apiserver has accepted the CREATE of
//   the block's object (named after its CIDR, so the create is an atomic claim).
//   Only then is the claim written to the journal, and only after that is any
//   address of the block given out. A crash between the create and the journal
//   record leaves an object with spec.node = this node that the journal does not
//   know: the next list adopts it, with any allocations it carries.
// - Within a node, the journal (journal.ts) keeps addresses apart: every alloc and
//   release is fsynced before the call returns, and the runtime is told an address
//   only after that. A restart replays the journal. The journal is authoritative
//   for the blocks it knows (the API copy only lags behind it: only the owner
//   writes a block's allocations); the API is authoritative for the blocks it
//   does not (the journal was lost), whose allocations are adopted as in use.
// - Giving a block back is the reverse: an `unclaim` is journaled first (so no
//   address comes from the block again), then the object is deleted with uid and
//   resourceVersion preconditions. A crash in between is finished by the next sync.
// - Allocation from the node's own blocks needs no apiserver: with the API down,
//   allocate and release keep working and sync catches up later. Only claiming a
//   new block needs the API.
//
// Operations that change state are serialised; each decides under the lock, appends
// its record and applies it in memory, then waits for the journal's group commit
// outside the lock, so concurrent ADDs share one fsync.
import { createHash } from 'node:crypto';
import type { BlockApi } from './api.ts';
import {
  EMPTY_GC_STATE,
  NoPoolError,
  PoolExhaustedError,
  allocateFromBlocks,
  assertSameAttachment,
  blockCount,
  blockOccupies,
  blockWithFreeAddress,
  earlierSandbox,
  handleNetwork,
  checkPoolOverlaps,
  compareCidrs,
  findAllocation,
  planGarbageCollection,
  type LivePods,
  poolsForNode,
  defaultPools,
  type AllocationDecision,
  type GcState,
} from './allocator.ts';
import { blockName, cidrSize, hostPrefix, mustParseCidr, type Family } from './cidr.ts';
import { Journal, type FaultHook, type JournalRecord } from './journal.ts';
import { BlockSyncer } from './syncer.ts';
import {
  silentIpamLogger,
  type Allocation,
  type AllocationAttributes,
  type IpamBlock,
  type IpamLogger,
  type IpamProblem,
  type IpPool,
} from './types.ts';

export const DEFAULT_STATE_DIR = '/var/lib/wiremesh/ipam';

export interface NodeIpamOptions {
  node: string;
  /** Default /var/lib/wiremesh/ipam. */
  stateDir?: string;
  api: BlockApi;
  log?: IpamLogger;
  /** The clock, in ms since the epoch. */
  now?: () => number;
  /** Push to the API this long after a change (debounced); undefined: only on sync(). */
  autoSyncMs?: number;
  /** Compact the journal once it has this many lines beyond 4x the live records. */
  compactAfterLines?: number;
  /** Tests: called at named points; a throw there simulates a crash. */
  fault?: FaultHook;
}

export interface AllocateRequest {
  /** `<network name>.<container id>.<ifname>`. */
  handle: string;
  namespace: string;
  pod: string;
  containerID: string;
  ifName: string;
  /** The Kubernetes pod's UID, when the runtime passed one (K8S_POD_UID). */
  podUID?: string;
  /** Only from this pool. */
  pool?: string;
  /**
   * Only of this family. Without it: the family of the first pool serving the node
   * (IPv4 when one does); dual-stack asks once per family.
   */
  family?: Family;
}

export interface AllocateResult {
  address: string;
  /** The block's CIDR. */
  block: string;
  pool: string;
  family: Family;
  /** Host prefix for the pod's address: 32 or 128. */
  prefix: 32 | 128;
}

export interface SyncReport {
  created: number;
  updated: number;
  unchanged: number;
  deleted: number;
  conflicts: number;
  /** CIDRs of blocks that another node now holds. */
  lost: string[];
}

export interface GcReport {
  releasedHandles: string[];
  releasedBlocks: string[];
}

export interface BlockUsage {
  cidr: string;
  pool: string;
  family: Family;
  capacity: number;
  allocated: number;
  state: 'held' | 'lost' | 'releasing';
}

export interface IpamUsage {
  node: string;
  capacity: number;
  allocated: number;
  blocks: BlockUsage[];
  journal: { path: string; lines: number };
  /** Pools known from the API (null until the first successful list). */
  pools: string[] | null;
  problems: IpamProblem[];
}

class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn, fn);
    this.tail = result.catch(() => {});
    return result;
  }
}

export class NodeIpam {
  readonly node: string;
  readonly stateDir: string;
  private readonly api: BlockApi;
  private readonly log: IpamLogger;
  private readonly now: () => number;
  private readonly fault: FaultHook;
  private readonly autoSyncMs: number | undefined;
  private readonly compactAfterLines: number;
  private readonly syncer: BlockSyncer;
  private readonly lock = new Mutex();
  private readonly syncLock = new Mutex();
  private journal: Journal | null = null;
  /** Blocks held, by CIDR. */
  private readonly held = new Map<string, IpamBlock>();
  /** Blocks given back whose object may still exist: CIDR -> uid. */
  private readonly releasing = new Map<string, string>();
  /** Held blocks that another node's object now occupies. */
  private readonly lost = new Set<string>();
  private pools: IpPool[] | null = null;
  private nodeLabels: Record<string, string> | null = null;
  private problems: IpamProblem[] = [];
  private gcState: GcState = EMPTY_GC_STATE;
  /**
   * Addresses pods released lately, by pod UID, network, interface and family, for a
   * new sandbox of the same pod (a rebooted node's kubelet DELs the dead sandbox,
   * then ADDs the next). In memory only: it spans seconds.
   */
  private readonly released = new Map<string, { address: string; at: number }>();
  private syncTimer: NodeJS.Timeout | undefined;
  private compactionQueued = false;
  private closed = false;

  constructor(opts: NodeIpamOptions) {
    if (!opts.node) throw new Error('NodeIpam needs the node name');
    this.node = opts.node;
    this.stateDir = opts.stateDir ?? DEFAULT_STATE_DIR;
    this.api = opts.api;
    this.log = opts.log ?? silentIpamLogger;
    this.now = opts.now ?? Date.now;
    this.fault = opts.fault ?? (() => {});
    this.autoSyncMs = opts.autoSyncMs;
    this.compactAfterLines = opts.compactAfterLines ?? 4096;
    this.syncer = new BlockSyncer({ api: this.api, node: this.node, log: this.log });
  }

  /**
   * Replay the journal, then (if the apiserver answers) learn the pools and adopt any
   * block object of this node that the journal does not know, and push what changed.
   * With the apiserver down, start still succeeds and the held blocks serve.
   */
  async start(): Promise<void> {
    if (this.journal) throw new Error('NodeIpam already started');
    const { journal, records, dropped } = await Journal.open(this.stateDir, this.fault);
    this.journal = journal;
    for (const r of records) this.apply(r);
    if (dropped) {
      this.log.warn('IPAM journal had a torn last write (a crash while writing); dropped it', {
        lines: dropped,
        journal: journal.path,
      });
    }
    this.log.info('IPAM journal replayed', {
      records: records.length,
      blocks: this.held.size,
      allocations: this.allocationCount(),
    });
    await this.lock.run(async () => {
      try {
        await this.refreshLocked();
      } catch (e) {
        this.log.warn(
          'cannot read pools and blocks from the apiserver at start; serving from the held blocks',
          {
            error: e,
          },
        );
      }
      await this.compactLocked();
    });
    try {
      await this.sync();
    } catch (e) {
      this.log.warn('first IPAM sync failed; will retry', { error: e });
    }
  }

  /** An address for the attachment, durable before this resolves. Same handle, same address. */
  async allocate(req: AllocateRequest): Promise<AllocateResult> {
    validateRequest(req);
    const journal = this.requireJournal();
    const result = await this.lock.run(async () => {
      const attrs = {
        namespace: req.namespace,
        pod: req.pod,
        containerID: req.containerID,
        ifName: req.ifName,
        ...(req.podUID ? { podUID: req.podUID } : {}),
      };
      // A pool named without a family that this node's view does not know yet (created
      // since the last list): list again, or its family would be guessed as IPv4.
      if (
        req.family === undefined &&
        req.pool !== undefined &&
        !this.pools?.some((p) => p.name === req.pool)
      )
        await this.refreshLocked().catch(() => undefined);
      // A handle holds at most one address per family (dual-stack asks once for each).
      const want = { ...req, family: req.family ?? this.defaultFamily(req) };
      const existing = findAllocation(
        [...this.held.values()].filter((b) => b.family === want.family),
        req.handle,
      );
      if (existing) {
        assertSameAttachment(existing.allocation, attrs);
        return resultOf(existing.block, existing.allocation);
      }
      const eligible = this.eligibleBlocks(want);
      let decision = this.sameAddressAgain(eligible, req.handle, attrs, want.family);
      if (decision.kind === 'full')
        decision = allocateFromBlocks(eligible, req.handle, attrs, this.now());
      if (decision.kind === 'full') {
        const block = await this.claimLocked(want, req.family);
        decision = allocateFromBlocks([block], req.handle, attrs, this.now());
      }
      if (decision.kind === 'full') throw new Error(`a new block had no free address`);
      const a = decision.allocation;
      this.record({
        op: 'alloc',
        handle: a.handle,
        address: a.address,
        block: decision.block.cidr,
        namespace: a.namespace,
        pod: a.pod,
        containerID: a.containerID,
        ifName: a.ifName,
        ...(a.podUID ? { podUID: a.podUID } : {}),
        at: a.allocatedAt,
      });
      return resultOf(decision.block, a);
    });
    await journal.flushed();
    this.afterChange();
    return result;
  }

  /**
   * Free the handle's addresses (of every family), durably. False when it held none
   * (release is idempotent).
   */
  async release(handle: string): Promise<boolean> {
    const journal = this.requireJournal();
    const released = await this.lock.run(async () => {
      const now = this.now();
      let found = false;
      for (const b of this.held.values()) {
        const a = b.allocations.get(handle);
        if (!a) continue;
        found = true;
        const key = releaseKey(a, b.family);
        if (key) this.released.set(key, { address: a.address, at: now });
      }
      if (!found) return false;
      // Forgotten here, on DEL, rather than on the ADD path.
      for (const [k, r] of this.released)
        if (now - r.at > RELEASED_KEEP_MS) this.released.delete(k);
      this.record({ op: 'release', handle });
      return true;
    });
    await journal.flushed();
    if (released) this.afterChange();
    return released;
  }

  /**
   * CNI GC: release every allocation of `network` whose attachment (container id and
   * interface) is not in `valid`. Returns the released handles.
   */
  async releaseExcept(
    network: string,
    valid: readonly { containerID: string; ifName: string }[],
  ): Promise<string[]> {
    const journal = this.requireJournal();
    const keep = new Set(valid.map((v) => `${network}.${v.containerID}.${v.ifName}`));
    const released = await this.lock.run(async () => {
      const handles: string[] = [];
      for (const b of this.held.values()) {
        for (const a of b.allocations.values()) {
          if (a.handle === `${network}.${a.containerID}.${a.ifName}` && !keep.has(a.handle)) {
            handles.push(a.handle);
          }
        }
      }
      for (const handle of handles) this.record({ op: 'release', handle });
      return handles.sort();
    });
    await journal.flushed();
    if (released.length) this.afterChange();
    return released;
  }

  /**
   * A pod's new sandbox takes the address of its predecessor: the one a dead earlier
   * sandbox still holds (its DEL never came), else the one the pod released in the
   * last RELEASED_KEEP_MS if it is free. 'full' when neither applies.
   */
  private sameAddressAgain(
    eligible: readonly IpamBlock[],
    handle: string,
    attrs: AllocationAttributes,
    family: Family,
  ): AllocationDecision {
    const now = this.now();
    const fresh = (address: string, block: IpamBlock): AllocationDecision => ({
      kind: 'new',
      block,
      allocation: { handle, address, allocatedAt: now, ...attrs },
    });
    const earlier = earlierSandbox(eligible, handle, attrs);
    if (earlier) {
      this.log.info("a new sandbox of the pod takes over its dead predecessor's address", {
        namespace: attrs.namespace,
        pod: attrs.pod,
        address: earlier.allocation.address,
        previousContainer: earlier.allocation.containerID,
      });
      this.record({ op: 'release', handle: earlier.allocation.handle });
      return fresh(earlier.allocation.address, earlier.block);
    }
    const key = releaseKey({ handle, ...attrs }, family);
    const before = key ? this.released.get(key) : undefined;
    if (!key || !before) return { kind: 'full' };
    this.released.delete(key);
    if (now - before.at > RELEASED_KEEP_MS) return { kind: 'full' };
    const block = blockWithFreeAddress(eligible, before.address);
    return block ? fresh(before.address, block) : { kind: 'full' };
  }

  /** The allocation a handle holds (of the family, or the first, IPv4 before IPv6), if any (CNI CHECK). */
  find(handle: string, family?: Family): (Allocation & { block: string; pool: string }) | null {
    const blocks = [...this.held.values()]
      .filter((b) => family === undefined || b.family === family)
      .sort((x, y) => compareCidrs(x.cidr, y.cidr));
    const found = findAllocation(blocks, handle);
    return found ? { ...found.allocation, block: found.block.cidr, pool: found.block.pool } : null;
  }

  /**
   * Release allocations whose pod is gone for longer than graceMs, and give back
   * blocks that are empty for that long (see planGarbageCollection). `livePods` are
   * the pods bound to this node that may still run, from a complete list (livePodsOf).
   * The API learns of it on the next sync.
   */
  async collectGarbage(livePods: LivePods, graceMs: number): Promise<GcReport> {
    const journal = this.requireJournal();
    const report = await this.lock.run(async () => {
      const plan = planGarbageCollection({
        blocks: [...this.held.values()],
        livePods,
        activePools: this.activePoolNames(),
        now: this.now(),
        graceMs,
        state: this.gcState,
      });
      for (const handle of plan.releaseHandles) this.record({ op: 'release', handle });
      for (const block of plan.releaseBlocks) this.record({ op: 'unclaim', block });
      this.gcState = plan.state;
      return { releasedHandles: plan.releaseHandles, releasedBlocks: plan.releaseBlocks };
    });
    await journal.flushed();
    if (report.releasedHandles.length || report.releasedBlocks.length) {
      this.log.info('IPAM garbage collected', { ...report });
      this.afterChange();
    }
    return report;
  }

  /**
   * Push the durable state to the API: each held block's object gets exactly the
   * journal's allocations; given-back blocks are deleted. Tries every block, then
   * throws the first error, if any, with the others logged.
   */
  async sync(): Promise<SyncReport> {
    this.requireJournal();
    return this.syncLock.run(async () => {
      const snapshot = await this.lock.run(async () => {
        await this.requireJournal().flushed();
        return {
          held: [...this.held.values()]
            .filter((b) => !this.lost.has(b.cidr))
            .map((b) => ({ ...b, allocations: new Map(b.allocations) })),
          releasing: [...this.releasing.entries()],
        };
      });
      const report: SyncReport = {
        created: 0,
        updated: 0,
        unchanged: 0,
        deleted: 0,
        conflicts: 0,
        lost: [],
      };
      const errors: unknown[] = [];
      for (const [cidr, uid] of snapshot.releasing) {
        try {
          const outcome = await this.syncer.release(cidr, uid);
          await this.fault('sync.deleted');
          if (outcome === 'deleted') report.deleted++;
          await this.lock.run(async () => {
            if (this.releasing.get(cidr) === uid) this.releasing.delete(cidr);
          });
        } catch (e) {
          errors.push(e);
        }
      }
      for (const b of snapshot.held) {
        try {
          const outcome = await this.syncer.push(b);
          await this.fault('sync.pushed');
          report.conflicts += outcome.conflicts;
          if (outcome.kind === 'lost') {
            report.lost.push(b.cidr);
            await this.lock.run(async () => this.markLost(b.cidr, outcome.holder));
            continue;
          }
          report[outcome.kind]++;
          if (outcome.block.uid !== b.uid) {
            // Re-created (or created by an earlier run of this node): remember the new uid.
            await this.lock.run(async () => {
              if (!this.held.has(b.cidr)) return;
              this.record({ op: 'claim', block: b.cidr, pool: b.pool, uid: outcome.block.uid });
              await this.requireJournal().flushed();
            });
          }
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length) {
        for (const e of errors.slice(1)) this.log.warn('IPAM sync error', { error: e });
        const first = errors[0];
        throw new Error(
          `IPAM sync of node ${this.node} failed for ${errors.length} block(s): ${
            first instanceof Error ? first.message : String(first)
          }`,
          { cause: first },
        );
      }
      return report;
    });
  }

  /**
   * Re-read pools, node labels and blocks from the API; adopt block objects of this
   * node that the journal does not know. start() and block claims do this themselves.
   */
  async refresh(): Promise<void> {
    this.requireJournal();
    await this.lock.run(() => this.refreshLocked());
  }

  /** Pools and node labels from the agent's own watch, instead of a refresh. */
  setPools(pools: readonly IpPool[], nodeLabels: Readonly<Record<string, string>>): void {
    const checked = checkPoolOverlaps(pools);
    this.pools = [...pools];
    this.problems = checked.problems;
    this.nodeLabels = { ...nodeLabels };
  }

  /**
   * The families a pod on this node gets an address of, IPv4 first: one per family
   * of the enabled pools that serve the node (a dual-stack node has pools of both),
   * or, until the pools are known (API down since start), of the usable held blocks.
   * Empty when neither says anything: the caller asks without a family.
   */
  servedFamilies(): Family[] {
    const active = this.pools && this.nodeLabels ? poolsForNode(this.pools, this.nodeLabels) : null;
    const families = active
      ? active.map((p) => p.family)
      : [...this.held.values()].filter((b) => !this.lost.has(b.cidr)).map((b) => b.family);
    return [...new Set(families)].sort((a, b) => a - b);
  }

  /** A pool's family, when the pool is known (from the pools, else a held block of it). */
  poolFamily(pool: string): Family | undefined {
    return (
      this.pools?.find((p) => p.name === pool)?.family ??
      [...this.held.values()].find((b) => b.pool === pool)?.family
    );
  }

  /** Copies of the blocks this node holds (lost ones included), by CIDR. */
  blocks(): IpamBlock[] {
    return [...this.held.values()]
      .sort((a, b) => compareCidrs(a.cidr, b.cidr))
      .map((b) => ({ ...b, allocations: new Map(b.allocations), problems: [...b.problems] }));
  }

  usage(): IpamUsage {
    const blocks: BlockUsage[] = [];
    for (const b of this.held.values()) {
      blocks.push({
        cidr: b.cidr,
        pool: b.pool,
        family: b.family,
        capacity: Number(cidrSize(mustParseCidr(b.cidr))),
        allocated: b.allocations.size,
        state: this.lost.has(b.cidr) ? 'lost' : 'held',
      });
    }
    for (const cidr of this.releasing.keys()) {
      const c = mustParseCidr(cidr);
      blocks.push({
        cidr,
        pool: '',
        family: c.family,
        capacity: Number(cidrSize(c)),
        allocated: 0,
        state: 'releasing',
      });
    }
    blocks.sort((a, b) => compareCidrs(a.cidr, b.cidr));
    const live = blocks.filter((b) => b.state === 'held');
    return {
      node: this.node,
      capacity: live.reduce((n, b) => n + b.capacity, 0),
      allocated: blocks.reduce((n, b) => n + b.allocated, 0),
      blocks,
      journal: { path: this.journal?.path ?? '', lines: this.journal?.lines ?? 0 },
      pools: this.pools ? this.pools.map((p) => p.name).sort() : null,
      problems: [...this.problems],
    };
  }

  /** Flush, stop the sync timer and close the journal. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.syncTimer);
    await this.lock.run(async () => {
      await this.journal?.close();
    });
  }

  // --- internals -------------------------------------------------------------------

  private requireJournal(): Journal {
    if (!this.journal) throw new Error('NodeIpam is not started');
    if (this.closed) throw new Error('NodeIpam is closed');
    if (this.journal.failed) throw this.journal.failed;
    return this.journal;
  }

  /** Append a record and apply it in memory; durable once the journal is flushed. */
  private record(r: JournalRecord): void {
    this.requireJournal().append(r);
    this.apply(r);
  }

  /** The state transition of one record, shared by replay and live operations. */
  private apply(r: JournalRecord): void {
    switch (r.op) {
      case 'claim': {
        const existing = this.held.get(r.block);
        const c = mustParseCidr(r.block);
        this.held.set(r.block, {
          name: blockName(r.block),
          cidr: r.block,
          family: c.family,
          pool: r.pool,
          node: this.node,
          allocations: existing?.allocations ?? new Map<string, Allocation>(),
          resourceVersion: '',
          uid: r.uid,
          problems: [],
        });
        this.releasing.delete(r.block);
        this.lost.delete(r.block);
        break;
      }
      case 'unclaim': {
        const b = this.held.get(r.block);
        this.held.delete(r.block);
        this.lost.delete(r.block);
        this.releasing.set(r.block, b?.uid ?? '');
        break;
      }
      case 'alloc': {
        const block = this.held.get(r.block);
        if (!block) {
          this.log.warn('IPAM journal allocates from a block it does not hold; ignored', {
            handle: r.handle,
            block: r.block,
          });
          break;
        }
        for (const b of this.held.values()) {
          if (b.family === block.family) b.allocations.delete(r.handle);
        }
        block.allocations.set(r.handle, {
          handle: r.handle,
          address: r.address,
          namespace: r.namespace,
          pod: r.pod,
          containerID: r.containerID,
          ifName: r.ifName,
          ...(r.podUID ? { podUID: r.podUID } : {}),
          allocatedAt: r.at,
        });
        break;
      }
      case 'release':
        for (const b of this.held.values()) b.allocations.delete(r.handle);
        break;
    }
  }

  private allocationCount(): number {
    let n = 0;
    for (const b of this.held.values()) n += b.allocations.size;
    return n;
  }

  private activePoolNames(): Set<string> | null {
    if (!this.pools || !this.nodeLabels) return null;
    return new Set(poolsForNode(this.pools, this.nodeLabels).map((p) => p.name));
  }

  /**
   * A request without a family means the family of the first pool that serves the
   * node (IPv4 when there is one): requests never drift between families because one
   * happens to have room in a held block. Until the pools are known, the held blocks'.
   */
  private defaultFamily(req: AllocateRequest): Family {
    const active = this.pools && this.nodeLabels ? poolsForNode(this.pools, this.nodeLabels) : null;
    const candidates = active
      ? active.map((p) => ({ pool: p.name, family: p.family }))
      : [...this.held.values()].filter((b) => !this.lost.has(b.cidr));
    const first = candidates
      .filter((c) => req.pool === undefined || c.pool === req.pool)
      .sort((a, b) => a.family - b.family)[0];
    return first?.family ?? 4;
  }

  /**
   * The node's pools a request may take (by family then name), null until the pools
   * are known; a request naming no pool takes only the most strongly encrypted.
   */
  private activePools(req: AllocateRequest): IpPool[] | null {
    if (!this.pools || !this.nodeLabels) return null;
    const active = poolsForNode(this.pools, this.nodeLabels);
    return req.pool === undefined ? defaultPools(active) : active;
  }

  /** Held blocks a new address may come from, in preference order. */
  private eligibleBlocks(req: AllocateRequest): IpamBlock[] {
    const active = this.activePools(req);
    const rank = new Map(active?.map((p, i) => [p.name, i]));
    return [...this.held.values()]
      .filter(
        (b) =>
          !this.lost.has(b.cidr) &&
          (req.family === undefined || b.family === req.family) &&
          (req.pool === undefined || b.pool === req.pool) &&
          // Until the pools are known (API down since start), held blocks serve as they are.
          (active === null || rank.has(b.pool)),
      )
      .sort(
        (a, b) =>
          a.family - b.family ||
          (rank.get(a.pool) ?? 0) - (rank.get(b.pool) ?? 0) ||
          (a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : 0) ||
          compareCidrs(a.cidr, b.cidr),
      );
  }

  private async refreshLocked(): Promise<{ blocks: IpamBlock[] }> {
    const [poolList, labels, blockList] = await Promise.all([
      this.api.listPools(),
      this.api.nodeLabels(this.node),
      this.api.listBlocks(),
    ]);
    this.setPools(poolList.pools, labels);
    this.problems = [...poolList.problems, ...this.problems, ...blockList.problems];
    for (const p of this.problems) this.log.debug('IPAM object refused', { ...p });
    let adopted = 0;
    for (const b of blockList.blocks) {
      if (b.node !== this.node) {
        if (this.held.has(b.cidr) && !this.lost.has(b.cidr)) this.markLost(b.cidr, b.node);
        continue;
      }
      if (this.held.has(b.cidr) || this.releasing.has(b.cidr)) continue;
      // An object of this node that the journal does not know: a claim whose journal
      // record was lost to a crash, or a lost journal. Its allocations are in use.
      this.log.warn('adopting an IPAM block of this node that its journal did not know', {
        block: b.cidr,
        allocations: b.allocations.size,
      });
      this.record({ op: 'claim', block: b.cidr, pool: b.pool, uid: b.uid });
      for (const a of b.allocations.values()) {
        const sameFamily = [...this.held.values()].filter((x) => x.family === b.family);
        if (findAllocation(sameFamily, a.handle)) {
          this.log.warn('adopted block repeats a handle this node holds elsewhere; skipped', {
            block: b.cidr,
            handle: a.handle,
          });
          continue;
        }
        this.record(allocRecord(a, b.cidr, this.now()));
      }
      adopted++;
    }
    if (adopted) await this.requireJournal().flushed();
    return { blocks: blockList.blocks };
  }

  private markLost(cidr: string, holder: string): void {
    if (this.lost.has(cidr)) return;
    this.lost.add(cidr);
    const n = this.held.get(cidr)?.allocations.size ?? 0;
    this.log.error(
      'an IPAM block this node holds is now held by another node; no address comes from it again',
      { block: cidr, holder, allocations: n },
    );
  }

  /** Claim a new block for the request (needs the API). */
  private async claimLocked(req: AllocateRequest, askedFamily?: Family): Promise<IpamBlock> {
    let listed: IpamBlock[];
    try {
      listed = (await this.refreshLocked()).blocks;
    } catch (e) {
      throw new Error(
        `node ${this.node} has no free address in its IPAM blocks and cannot claim a new ` +
          `block: ${e instanceof Error ? e.message : String(e)}`,
        { cause: e },
      );
    }
    // An adopted block may have room.
    for (const block of this.eligibleBlocks(req)) {
      if (block.allocations.size < Number(cidrSize(mustParseCidr(block.cidr)))) return block;
    }
    const candidates = (this.activePools(req) ?? []).filter(
      (p) =>
        (req.family === undefined || p.family === req.family) &&
        (req.pool === undefined || p.name === req.pool),
    );
    if (!candidates.length) throw new NoPoolError(this.node, { ...req, family: askedFamily });
    const pools = this.pools;
    const taken: Pick<IpamBlock, 'cidr'>[] = [
      ...listed.filter((b) => !pools || blockOccupies(b, pools)),
      ...this.held.values(),
      ...[...this.releasing.keys()].map((cidr) => ({ cidr })),
    ];
    for (const pool of candidates) {
      let created: IpamBlock | null;
      try {
        created = await this.syncer.claim(pool, taken, nodeOffset(this.node, pool));
      } catch (e) {
        throw new Error(
          `node ${this.node} has no free address in its IPAM blocks and cannot claim a new ` +
            `block of pool '${pool.name}': ${e instanceof Error ? e.message : String(e)}`,
          { cause: e },
        );
      }
      if (!created) continue;
      await this.fault('claim.created');
      this.record({ op: 'claim', block: created.cidr, pool: pool.name, uid: created.uid });
      await this.requireJournal().flushed();
      await this.fault('claim.journaled');
      const block = this.held.get(created.cidr);
      if (!block) throw new Error(`claimed block ${created.cidr} is not held`);
      return block;
    }
    throw new PoolExhaustedError(candidates, this.node);
  }

  /** Rewrite the journal as the current state. Caller holds the lock. */
  private async compactLocked(): Promise<void> {
    const journal = this.requireJournal();
    await journal.flushed();
    const records: JournalRecord[] = [];
    for (const b of [...this.held.values()].sort((x, y) => compareCidrs(x.cidr, y.cidr))) {
      records.push({ op: 'claim', block: b.cidr, pool: b.pool, uid: b.uid });
      for (const a of [...b.allocations.values()].sort((x, y) => (x.handle < y.handle ? -1 : 1))) {
        records.push(allocRecord(a, b.cidr, a.allocatedAt));
      }
    }
    // A block being given back stays recorded until its object is gone, so a restart
    // finishes the delete instead of adopting the block again. The claim keeps its uid.
    for (const [cidr, uid] of this.releasing) {
      records.push({ op: 'claim', block: cidr, pool: '', uid }, { op: 'unclaim', block: cidr });
    }
    await journal.compact(records);
  }

  private afterChange(): void {
    const journal = this.journal;
    if (journal && !journal.failed) {
      const live = this.held.size + this.allocationCount() + 2 * this.releasing.size;
      if (!this.compactionQueued && journal.lines > this.compactAfterLines + 4 * live) {
        this.compactionQueued = true;
        this.lock
          .run(() => this.compactLocked())
          .catch((e: unknown) => this.log.warn('IPAM journal compaction failed', { error: e }))
          .finally(() => (this.compactionQueued = false));
      }
    }
    if (this.autoSyncMs !== undefined && !this.syncTimer && !this.closed) {
      this.syncTimer = setTimeout(() => {
        this.syncTimer = undefined;
        this.sync().catch((e: unknown) => {
          this.log.warn('IPAM sync failed; will retry', { error: e });
          this.afterChange();
        });
      }, this.autoSyncMs);
      this.syncTimer.unref();
    }
  }
}

function resultOf(block: IpamBlock, a: Allocation): AllocateResult {
  return {
    address: a.address,
    block: block.cidr,
    pool: block.pool,
    family: block.family,
    prefix: hostPrefix(block.family),
  };
}

/** Where this node starts looking for a free block in a pool, so nodes rarely race. */
function nodeOffset(node: string, pool: IpPool): bigint {
  const h = createHash('sha256').update(node).digest().readBigUInt64BE(0);
  return h % blockCount(pool);
}

function validateRequest(req: AllocateRequest): void {
  const bad = (what: string) => new Error(`invalid IPAM request: ${what}`);
  if (typeof req.handle !== 'string' || !req.handle || req.handle.length > 1024) {
    throw bad('handle must be a non-empty string');
  }
  if (typeof req.containerID !== 'string' || !req.containerID) throw bad('containerID is empty');
  if (typeof req.ifName !== 'string' || !req.ifName) throw bad('ifName is empty');
  if (typeof req.namespace !== 'string' || typeof req.pod !== 'string') {
    throw bad('namespace and pod must be strings');
  }
  if (req.podUID !== undefined && typeof req.podUID !== 'string')
    throw bad('podUID must be a string');
  if (req.family !== undefined && req.family !== 4 && req.family !== 6) {
    throw bad('family must be 4 or 6');
  }
}

/** The journal record of an allocation held in a block. */
function allocRecord(a: Allocation, block: string, at: number): JournalRecord {
  return {
    op: 'alloc',
    handle: a.handle,
    address: a.address,
    block,
    namespace: a.namespace,
    pod: a.pod,
    containerID: a.containerID,
    ifName: a.ifName,
    ...(a.podUID ? { podUID: a.podUID } : {}),
    at,
  };
}

/** How long a pod's released address is kept for its next sandbox. */
const RELEASED_KEEP_MS = 10 * 60_000;

function releaseKey(a: Omit<Allocation, 'address' | 'allocatedAt'>, family: Family): string | null {
  const network = handleNetwork(a.handle, a);
  return a.podUID && network !== null ? `${a.podUID}|${network}|${a.ifName}|${family}` : null;
}
