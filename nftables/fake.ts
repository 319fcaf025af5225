// An in-memory NftClient for unit tests of the driver (and of anything that drives the
// table): it applies operations to a model of the table the way the kernel does where
// a driver could notice. A transaction is all or nothing; a missing table, chain, set,
// map or element is "No such file or directory", deleting a chain that still has rules
// or is named by a rule or verdict, or a set a rule references, is "Device or resource
// busy", redefining a set or map differently is "File exists". Interval overlaps are not
// modelled. Every transaction is recorded (ops and rendered script) and failures can be
// injected (`failNext`), as Calico's FailNext... fakes do.
import { CommandError } from '../sys/index.ts';
import type { NftBaseChain, NftTable } from './model.ts';
import type { NftClient, NftObservedTable } from './client.ts';
import { ruleReferences, parseVerdict } from './names.ts';
import { renderScript, type NftOp } from './ops.ts';

interface FakeSet {
  type: string;
  flags: string[];
  elements: Map<string, string | null>;
}

interface FakeTable {
  chains: Map<string, { base?: NftBaseChain; rules: string[] }>;
  sets: Map<string, FakeSet>;
  maps: Map<string, FakeSet>;
}

export interface FakeNftTransaction {
  ops: NftOp[];
  script: string;
  ok: boolean;
}

export class FakeNft implements NftClient {
  /** Every transaction offered to apply, in order, including failed ones. */
  readonly transactions: FakeNftTransaction[] = [];
  /** Counts of listTable and deleteTable calls. */
  readonly reads = { list: 0, delete: 0 };
  private state: FakeTable | null = null;
  private readonly failures: Error[] = [];

  /** The next apply records its transaction, changes nothing and throws `error`. */
  failNext(error?: Error): void {
    this.failures.push(
      error ??
        new CommandError(
          ['nft', '-f', '-'],
          1,
          '',
          'Error: Could not process rule: Operation not permitted (injected by FakeNft)',
          'exit code 1',
        ),
    );
  }

  /** Transactions that took effect. */
  get applied(): NftOp[][] {
    return this.transactions.filter((t) => t.ok).map((t) => t.ops);
  }

  async apply(ops: readonly NftOp[]): Promise<void> {
    const script = renderScript(ops);
    if (!script) return;
    const record: FakeNftTransaction = { ops: structuredClone([...ops]), script, ok: false };
    this.transactions.push(record);
    const failure = this.failures.shift();
    if (failure) throw failure;
    this.state = transact(this.state, ops);
    record.ok = true;
  }

  async listTable(): Promise<NftObservedTable | null> {
    this.reads.list++;
    return this.state ? observe(this.state) : null;
  }

  async deleteTable(): Promise<void> {
    this.reads.delete++;
    this.state = null;
  }

  /** Changes the table as an operator running nft by hand would: not recorded, no injected failure. */
  byHand(ops: readonly NftOp[]): void {
    renderScript(ops);
    this.state = transact(this.state, ops);
  }

  /** The table's contents in the model's terms (rules as written), or null. */
  table(): NftTable | null {
    const s = this.state;
    if (!s) return null;
    return {
      sets: [...s.sets].map(([name, set]) => ({
        name,
        type: set.type,
        ...(set.flags.length ? { flags: ['interval' as const] } : {}),
        elements: [...set.elements.keys()],
      })),
      maps: [...s.maps].map(([name, map]) => ({
        name,
        type: map.type,
        value: 'verdict' as const,
        ...(map.flags.length ? { flags: ['interval' as const] } : {}),
        elements: Object.fromEntries([...map.elements].map(([k, v]) => [k, v ?? ''])),
      })),
      chains: [...s.chains].map(([name, c]) => ({
        name,
        ...(c.base ? { base: { ...c.base } } : {}),
        rules: [...c.rules],
      })),
    };
  }
}

function fail(op: NftOp, why: string): never {
  const line = renderScript([op]).split('\n')[0] ?? '';
  throw new CommandError(
    ['nft', '-f', '-'],
    1,
    '',
    `Error: Could not process rule: ${why}\n${line}`,
    'exit code 1',
  );
}

const ENOENT = 'No such file or directory';
const EBUSY = 'Device or resource busy';
const EEXIST = 'File exists';

/** Applies `ops` to a copy of `state`; the copy is returned only if every op succeeds. */
function transact(state: FakeTable | null, ops: readonly NftOp[]): FakeTable | null {
  let t = state ? cloneTable(state) : null;
  for (const op of ops) {
    if (op.kind === 'add-table') {
      t ??= { chains: new Map(), sets: new Map(), maps: new Map() };
      continue;
    }
    if (!t) fail(op, ENOENT);
    if (op.kind === 'delete-table') {
      t = null;
      continue;
    }
    applyOp(t, op);
  }
  return t;
}

function applyOp(t: FakeTable, op: Exclude<NftOp, { kind: 'add-table' | 'delete-table' }>): void {
  switch (op.kind) {
    case 'add-chain': {
      const c = t.chains.get(op.chain);
      if (!c) t.chains.set(op.chain, { ...(op.base ? { base: { ...op.base } } : {}), rules: [] });
      else if (op.base && JSON.stringify(c.base) !== JSON.stringify(op.base)) fail(op, EEXIST);
      return;
    }
    case 'flush-chain':
      chain(t, op, op.chain).rules = [];
      return;
    case 'delete-chain': {
      if (chain(t, op, op.chain).rules.length) fail(op, EBUSY);
      const named = [...t.chains.values()].some((c) =>
        c.rules.some((r) => ruleReferences(r).chains.includes(op.chain)),
      );
      const verdict = [...t.maps.values()].some((m) =>
        [...m.elements.values()].some((v) => v !== null && parseVerdict('', v).jump === op.chain),
      );
      if (named || verdict) fail(op, EBUSY);
      t.chains.delete(op.chain);
      return;
    }
    case 'add-rule': {
      const c = chain(t, op, op.chain);
      const refs = ruleReferences(op.rule);
      if (refs.chains.some((n) => !t.chains.has(n))) fail(op, ENOENT);
      if (refs.sets.some((n) => !t.sets.has(n) && !t.maps.has(n))) fail(op, ENOENT);
      c.rules.push(op.rule.trim());
      return;
    }
    case 'add-set':
    case 'add-map': {
      const spec = op.kind === 'add-set' ? op.set : op.map;
      const [mine, other] = op.kind === 'add-set' ? [t.sets, t.maps] : [t.maps, t.sets];
      const flags = spec.flags ?? [];
      const old = mine.get(spec.name);
      if (other.has(spec.name)) fail(op, EEXIST);
      if (old && (old.type !== spec.type || old.flags.join() !== flags.join())) fail(op, EEXIST);
      if (!old) mine.set(spec.name, { type: spec.type, flags: [...flags], elements: new Map() });
      return;
    }
    case 'delete-set':
    case 'delete-map': {
      const name = op.kind === 'delete-set' ? op.set : op.map;
      const mine = op.kind === 'delete-set' ? t.sets : t.maps;
      if (!mine.has(name)) fail(op, ENOENT);
      const used = [...t.chains.values()].some((c) =>
        c.rules.some((r) => ruleReferences(r).sets.includes(name)),
      );
      if (used) fail(op, EBUSY);
      mine.delete(name);
      return;
    }
    case 'add-elements': {
      const s = t.sets.get(op.set) ?? fail(op, ENOENT);
      for (const e of op.elements) s.elements.set(e, null);
      return;
    }
    case 'delete-elements': {
      const s = t.sets.get(op.set) ?? fail(op, ENOENT);
      for (const e of op.elements) if (!s.elements.delete(e)) fail(op, ENOENT);
      return;
    }
    case 'add-map-elements': {
      const m = t.maps.get(op.map) ?? fail(op, ENOENT);
      for (const [key, verdict] of op.elements) {
        const jump = parseVerdict('', verdict).jump;
        if (jump !== undefined && !t.chains.has(jump)) fail(op, ENOENT);
        const old = m.elements.get(key);
        if (old !== undefined && old !== verdict) fail(op, EEXIST);
        m.elements.set(key, verdict);
      }
      return;
    }
    case 'delete-map-elements': {
      const m = t.maps.get(op.map) ?? fail(op, ENOENT);
      for (const k of op.keys) if (!m.elements.delete(k)) fail(op, ENOENT);
      return;
    }
  }
}

function chain(t: FakeTable, op: NftOp, name: string): { base?: NftBaseChain; rules: string[] } {
  return t.chains.get(name) ?? fail(op, ENOENT);
}

function cloneTable(t: FakeTable): FakeTable {
  const cloneSet = (s: FakeSet): FakeSet => ({
    ...s,
    flags: [...s.flags],
    elements: new Map(s.elements),
  });
  return {
    chains: new Map([...t.chains].map(([n, c]) => [n, { ...c, rules: [...c.rules] }])),
    sets: new Map([...t.sets].map(([n, s]) => [n, cloneSet(s)])),
    maps: new Map([...t.maps].map(([n, s]) => [n, cloneSet(s)])),
  };
}

/** What `nft -j list table` would report, with quotes dropped from string keys as nft does. */
function observe(t: FakeTable): NftObservedTable {
  const unquote = (e: string) => e.replace(/"/g, '');
  return {
    chains: [...t.chains].map(([name, c]) => ({
      name,
      ...(c.base ? { base: { ...c.base } } : {}),
      rules: c.rules.length,
    })),
    sets: [...t.sets].map(([name, s]) => ({
      name,
      type: s.type,
      flags: [...s.flags],
      elements: [...s.elements.keys()].map(unquote),
    })),
    maps: [...t.maps].map(([name, m]) => ({
      name,
      type: m.type,
      flags: [...m.flags],
      value: 'verdict',
      elements: [...m.elements.keys()].map(unquote),
      verdicts: [...m.elements.values()].map((v) => v ?? ''),
    })),
  };
}
