// The thin driver of the agent's one nftables table. `apply(desired)` makes the kernel
// hold `desired`: the first time, after a failure and after drift, by replacing the
// whole table in one transaction (never a moment without enforcement); otherwise by
// the incremental transaction from the last applied table (diff.ts), or by nothing at
// all when nothing changed. nft transactions are atomic, so when one fails the kernel
// still holds the previous ruleset: the driver keeps its last applied table, throws an
// NftApplyError carrying nft's message, and replaces the whole table next time.
//
// `verify()` is the drift check for the resync timer: it reads the table back and
// compares its shape with the last applied one (see compareShape); on a mismatch the
// next apply is a full replace, and `verify({ repair: true })` does that at once.
// Calls are serialised, so a verify never interleaves with an apply.
//
// Most of a table is the same from one apply to the next: checkTable is given the
// last table checked and revalidates only the sets, maps and chains that changed,
// reusing the others' canonical objects, which planIncremental then skips at once.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { CommandError } from '../sys/index.ts';
import type { NftClient, NftObservedTable } from './client.ts';
import { planIncremental } from './diff.ts';
import { NFT_FAMILY, NFT_TABLE, type NftTable } from './model.ts';
import { fullReplaceOps, type NftOp } from './ops.ts';
import { checkTable, rememberChecked, type CheckedTable } from './table.ts';

export interface NftApplyReport {
  mode: 'full' | 'incremental' | 'unchanged';
  /** Operations in the transaction (one per rule, chain, set, element list ...). */
  operations: number;
  /** Why a full replace was chosen: 'first apply', 'previous apply failed', 'drift', ... */
  reason?: string;
}

export interface NftVerifyReport {
  /** True when the kernel's table has the shape of the last applied one (or none was applied). */
  inSync: boolean;
  /** What differs, e.g. `chain 'pol-a': 3 rules, expected 4`. */
  differences: string[];
  /** Set when verify was asked to repair and replaced the table. */
  repaired?: NftApplyReport;
}

/** A transaction the kernel refused; the previous ruleset is still in force. */
export class NftApplyError extends Error {
  readonly mode: 'full' | 'incremental';
  readonly operations: number;
  /** nft's own message (its stderr), or the cause's message. */
  readonly nftMessage: string;
  constructor(mode: 'full' | 'incremental', operations: number, cause: unknown) {
    const nftMessage =
      cause instanceof CommandError
        ? (cause.stderr.trim() || cause.message).slice(0, 4000)
        : cause instanceof Error
          ? cause.message
          : String(cause);
    super(
      `nftables: ${mode} apply of table ${NFT_FAMILY} ${NFT_TABLE} (${operations} operations) failed, previous ruleset kept: ${nftMessage}`,
      { cause },
    );
    this.name = 'NftApplyError';
    this.mode = mode;
    this.operations = operations;
    this.nftMessage = nftMessage;
  }
}

export class TableDriver {
  private readonly client: NftClient;
  private last: NftTable | null = null;
  /** The last table checked, so the next check validates only what changed. */
  private checked: CheckedTable | null = null;
  /** Why the next apply must replace the whole table; null when an increment will do. */
  private fullReason: string | null = 'first apply';
  private queue: Promise<unknown> = Promise.resolve();

  constructor(client: NftClient) {
    this.client = client;
  }

  /** The last table the kernel accepted (canonical form), or null. */
  get applied(): NftTable | null {
    return this.last ? structuredClone(this.last) : null;
  }

  apply(desired: NftTable): Promise<NftApplyReport> {
    return this.serial(() => this.applyNow(desired));
  }

  verify(options: { repair?: boolean } = {}): Promise<NftVerifyReport> {
    return this.serial(async () => {
      if (!this.last) return { inSync: true, differences: [] };
      const differences = compareShape(this.last, await this.client.listTable());
      if (differences.length === 0) return { inSync: true, differences };
      this.fullReason = `drift: ${differences.slice(0, 3).join('; ')}`;
      if (!options.repair) return { inSync: false, differences };
      return { inSync: false, differences, repaired: await this.applyNow(this.last) };
    });
  }

  /** Removes the table from the kernel; the next apply creates it whole. */
  delete(): Promise<void> {
    return this.serial(async () => {
      this.fullReason = 'table deleted';
      this.last = null;
      await this.client.deleteTable();
    });
  }

  private async applyNow(desired: NftTable): Promise<NftApplyReport> {
    const next = checkTable(desired, this.checked ?? undefined);
    // A validation memo only: kept whether or not the kernel takes the table.
    this.checked = rememberChecked(desired, next);
    let mode: 'full' | 'incremental' = 'incremental';
    let reason = this.fullReason;
    let ops: NftOp[] | null = null;
    if (this.last && reason === null) {
      await nextTurn(); // between the two in-process phases, others get a turn
      ops = planIncremental(this.last, next);
      if (ops === null) reason = 'a set, map or base chain changed its definition';
      else if (ops.length === 0) return { mode: 'unchanged', operations: 0 };
    }
    if (ops === null) {
      mode = 'full';
      ops = fullReplaceOps(next);
    }
    try {
      await this.client.apply(ops);
    } catch (error) {
      this.fullReason = `previous ${mode} apply failed`;
      throw new NftApplyError(mode, ops.length, error);
    }
    this.last = next;
    this.fullReason = null;
    return mode === 'full'
      ? { mode, operations: ops.length, reason: reason ?? '' }
      : { mode, operations: ops.length };
  }

  private serial<X>(task: () => Promise<X>): Promise<X> {
    const run = this.queue.then(task, task);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/**
 * Differences between the table the driver applied and what the kernel reports:
 * table missing, chains missing or extra, base hook/priority/policy, rule counts, sets
 * and maps missing or extra, their type, flags and element counts, and the verdicts of
 * verdict maps (as a multiset). Empty when they match.
 */
export function compareShape(expected: NftTable, observed: NftObservedTable | null): string[] {
  if (!observed) return [`table ${NFT_FAMILY} ${NFT_TABLE} is missing`];
  const out: string[] = [];
  const chains = new Map(observed.chains.map((c) => [c.name, c]));
  for (const c of expected.chains) {
    const o = chains.get(c.name);
    chains.delete(c.name);
    if (!o) {
      out.push(`chain '${c.name}' is missing`);
      continue;
    }
    const want = c.base
      ? `${c.base.type} ${c.base.hook} ${c.base.priority} ${c.base.policy}`
      : 'regular';
    const got = o.base
      ? `${o.base.type} ${o.base.hook} ${o.base.priority} ${o.base.policy}`
      : 'regular';
    if (want !== got) out.push(`chain '${c.name}' is ${got}, expected ${want}`);
    if (o.rules !== c.rules.length)
      out.push(`chain '${c.name}': ${o.rules} rules, expected ${c.rules.length}`);
  }
  for (const name of chains.keys()) out.push(`chain '${name}' is not ours`);

  const sets = new Map(observed.sets.map((s) => [s.name, s]));
  const maps = new Map(observed.maps.map((m) => [m.name, m]));
  for (const s of expected.sets) {
    const o = sets.get(s.name);
    sets.delete(s.name);
    if (!o) out.push(`set '${s.name}' is missing`);
    else out.push(...compareSpec('set', s, o, s.elements.length));
  }
  for (const m of expected.maps) {
    const o = maps.get(m.name);
    maps.delete(m.name);
    if (!o) {
      out.push(`map '${m.name}' is missing`);
      continue;
    }
    out.push(...compareSpec('map', m, o, Object.keys(m.elements).length));
    const want = Object.values(m.elements).sort().join(',');
    if (o.verdicts.slice().sort().join(',') !== want) out.push(`map '${m.name}': verdicts differ`);
  }
  for (const name of sets.keys()) out.push(`set '${name}' is not ours`);
  for (const name of maps.keys()) out.push(`map '${name}' is not ours`);
  return out;
}

function compareSpec(
  kind: string,
  want: { name: string; type: string; flags?: string[] },
  got: { type: string; flags: string[]; elements: string[] },
  count: number,
): string[] {
  const out: string[] = [];
  if (want.type !== got.type)
    out.push(`${kind} '${want.name}' has type ${got.type}, expected ${want.type}`);
  if ((want.flags ?? []).join(',') !== got.flags.join(',')) {
    out.push(
      `${kind} '${want.name}' has flags [${got.flags.join(',')}], expected [${(want.flags ?? []).join(',')}]`,
    );
  }
  if (got.elements.length !== count) {
    out.push(`${kind} '${want.name}': ${got.elements.length} elements, expected ${count}`);
  }
  return out;
}
