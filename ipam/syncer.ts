// BlockSyncer: the node's IPAM state meets the apiserver. It claims blocks by
// CREATING their IPAMBlock object (the name is derived from the CIDR, so of two
// nodes racing for one block exactly one create succeeds; the loser gets
// AlreadyExists and moves on to the next free block), pushes the node's durable
// allocations into its blocks with optimistic concurrency (each write carries the
// resourceVersion it was computed from; on Conflict it re-reads and retries), and
// deletes blocks the node has given back, with uid and resourceVersion
// preconditions so it never deletes a block someone else now holds.
// Every push reads the object first (one GET per held block and sync, plus a write
// when something changed): a block deleted or taken over behind the node's back
// must be noticed even when nothing changed here, because other nodes route to
// this node what its block objects say. The journal stays the source of truth for
// the node's own blocks; the API is a mirror that other nodes read.
import { apiErrorReason, IpamApiError, type BlockApi } from './api.ts';
import { chooseFreeBlock } from './allocator.ts';
import { blockName } from './cidr.ts';
import type { Allocation, IpamBlock, IpamLogger, IpPool } from './types.ts';

export type PushOutcome =
  | { kind: 'unchanged' | 'updated' | 'created'; block: IpamBlock; conflicts: number }
  /** The object now belongs to another node: this node must stop using the block. */
  | { kind: 'lost'; holder: string; conflicts: number };

export type DeleteOutcome = 'deleted' | 'gone' | 'not-ours';

export interface OwnBlockState {
  cidr: string;
  pool: string;
  uid: string;
  allocations: ReadonlyMap<string, Allocation>;
}

export class BlockSyncer {
  private readonly api: BlockApi;
  private readonly node: string;
  private readonly log: IpamLogger;
  private readonly maxAttempts: number;

  constructor(opts: { api: BlockApi; node: string; log: IpamLogger; maxAttempts?: number }) {
    this.api = opts.api;
    this.node = opts.node;
    this.log = opts.log;
    this.maxAttempts = opts.maxAttempts ?? 8;
  }

  /**
   * Claim the next free block of `pool`, searching from `offset`. `taken` holds the
   * blocks known to exist; blocks lost to a race are added to it. Null when the pool
   * has no free block left.
   */
  async claim(
    pool: IpPool,
    taken: Pick<IpamBlock, 'cidr'>[],
    offset: bigint,
  ): Promise<IpamBlock | null> {
    for (;;) {
      const cidr = chooseFreeBlock(pool, taken, offset);
      if (cidr === null) return null;
      try {
        const block = await this.api.createBlock({
          cidr,
          pool: pool.name,
          node: this.node,
          allocations: new Map(),
        });
        this.log.info('claimed IPAM block', { block: cidr, pool: pool.name });
        return block;
      } catch (e) {
        if (apiErrorReason(e) !== 'AlreadyExists') throw e;
        this.log.debug('IPAM block claimed by another node first', { block: cidr });
        taken.push({ cidr });
      }
    }
  }

  /** Make the block's object carry exactly `want`'s allocations. */
  async push(want: OwnBlockState): Promise<PushOutcome> {
    const name = blockName(want.cidr);
    let conflicts = 0;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      let current = await this.api.getBlock(name);
      if (current === null) {
        // The object is gone (deleted behind our back): put it back, with our allocations.
        try {
          current = await this.api.createBlock({
            cidr: want.cidr,
            pool: want.pool,
            node: this.node,
            allocations: want.allocations,
          });
          this.log.warn('re-created a missing IPAM block this node holds', { block: want.cidr });
          return { kind: 'created', block: current, conflicts };
        } catch (e) {
          if (apiErrorReason(e) !== 'AlreadyExists') throw e;
          conflicts++;
          continue;
        }
      }
      if (current.node !== this.node) {
        return { kind: 'lost', holder: current.node, conflicts };
      }
      if (sameAllocations(current.allocations, want.allocations)) {
        return { kind: 'unchanged', block: current, conflicts };
      }
      try {
        const updated = await this.api.updateAllocations(
          name,
          want.allocations,
          current.resourceVersion,
        );
        return { kind: 'updated', block: updated, conflicts };
      } catch (e) {
        const reason = apiErrorReason(e);
        if (reason !== 'Conflict' && reason !== 'NotFound') throw e;
        conflicts++; // stale: read it again
      }
    }
    throw new IpamApiError(
      'Conflict',
      `IPAMBlock ${name} kept changing under this node; gave up after ${this.maxAttempts} attempts`,
    );
  }

  /** Delete a block this node gave back, if it is still the object this node created. */
  async release(cidr: string, uid: string): Promise<DeleteOutcome> {
    const name = blockName(cidr);
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const current = await this.api.getBlock(name);
      if (current === null) return 'gone';
      if (current.node !== this.node || (uid && current.uid !== uid)) return 'not-ours';
      try {
        await this.api.deleteBlock(name, {
          uid: current.uid,
          resourceVersion: current.resourceVersion,
        });
        this.log.info('released IPAM block', { block: cidr });
        return 'deleted';
      } catch (e) {
        const reason = apiErrorReason(e);
        if (reason === 'NotFound') return 'gone';
        if (reason !== 'Conflict') throw e;
      }
    }
    throw new IpamApiError('Conflict', `IPAMBlock ${name} kept changing; not deleted yet`);
  }
}

export function sameAllocations(
  a: ReadonlyMap<string, Allocation>,
  b: ReadonlyMap<string, Allocation>,
): boolean {
  if (a.size !== b.size) return false;
  for (const [handle, x] of a) {
    const y = b.get(handle);
    if (
      !y ||
      x.address !== y.address ||
      x.namespace !== y.namespace ||
      x.pod !== y.pod ||
      x.containerID !== y.containerID ||
      x.ifName !== y.ifName ||
      (x.podUID ?? '') !== (y.podUID ?? '')
    ) {
      return false;
    }
  }
  return true;
}
