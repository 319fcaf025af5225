// A transaction on the agent's table as plain data: a list of operations, rendered by a
// pure function into the text of one `nft -f -` run. nft applies a file as one atomic
// transaction, so a list of operations either takes effect whole or not at all.
//
// Every operation is checked as it is rendered (names, rule text, elements, verdicts;
// see names.ts), so a transaction built by hand is as safe as one built by the driver.
// Element lists are split into commands of ELEMENT_CHUNK elements to keep lines short.
import { NFT_FAMILY, NFT_TABLE, type NftBaseChain, type NftTable } from './model.ts';
import {
  assertElementText,
  assertKeyType,
  assertObjectName,
  assertRuleText,
  parseVerdict,
} from './names.ts';

export interface NftSetSpec {
  name: string;
  type: string;
  flags?: 'interval'[];
}

export type NftOp =
  | { kind: 'add-table' }
  | { kind: 'delete-table' }
  | { kind: 'add-chain'; chain: string; base?: NftBaseChain }
  | { kind: 'flush-chain'; chain: string }
  | { kind: 'delete-chain'; chain: string }
  | { kind: 'add-rule'; chain: string; rule: string }
  | { kind: 'add-set'; set: NftSetSpec }
  | { kind: 'delete-set'; set: string }
  /** A verdict map (`type KEY : verdict`). */
  | { kind: 'add-map'; map: NftSetSpec }
  | { kind: 'delete-map'; map: string }
  | { kind: 'add-elements'; set: string; elements: string[] }
  | { kind: 'delete-elements'; set: string; elements: string[] }
  /** [key, verdict] pairs. */
  | { kind: 'add-map-elements'; map: string; elements: [string, string][] }
  | { kind: 'delete-map-elements'; map: string; keys: string[] };

export const ELEMENT_CHUNK = 500;
const T = `${NFT_FAMILY} ${NFT_TABLE}`;
const HOOKS = ['prerouting', 'input', 'forward', 'output', 'postrouting'];

/** The `nft -f` text of a transaction; throws naming the offending object. */
export function renderScript(ops: readonly NftOp[]): string {
  const lines: string[] = [];
  for (const op of ops) lines.push(...renderOp(op));
  return lines.length ? `${lines.join('\n')}\n` : '';
}

function renderOp(op: NftOp): string[] {
  switch (op.kind) {
    case 'add-table':
      return [`add table ${T}`];
    case 'delete-table':
      return [`delete table ${T}`];
    case 'add-chain':
      assertObjectName('chain', op.chain);
      if (!op.base) return [`add chain ${T} ${op.chain}`];
      return [`add chain ${T} ${op.chain} { ${renderBase(op.chain, op.base)} }`];
    case 'flush-chain':
      assertObjectName('chain', op.chain);
      return [`flush chain ${T} ${op.chain}`];
    case 'delete-chain':
      assertObjectName('chain', op.chain);
      return [`delete chain ${T} ${op.chain}`];
    case 'add-rule':
      assertObjectName('chain', op.chain);
      assertRuleText(op.chain, op.rule);
      return [`add rule ${T} ${op.chain} ${op.rule.trim()}`];
    case 'add-set':
      return [`add set ${T} ${op.set.name} { ${renderSpec('set', op.set, '')} }`];
    case 'add-map':
      return [`add map ${T} ${op.map.name} { ${renderSpec('map', op.map, ' : verdict')} }`];
    case 'delete-set':
      assertObjectName('set', op.set);
      return [`delete set ${T} ${op.set}`];
    case 'delete-map':
      assertObjectName('map', op.map);
      return [`delete map ${T} ${op.map}`];
    case 'add-elements':
    case 'delete-elements': {
      assertObjectName('set', op.set);
      const owner = `set '${op.set}'`;
      for (const e of op.elements) assertElementText(owner, e);
      const verb = op.kind === 'add-elements' ? 'add' : 'delete';
      return chunks(op.elements).map((c) => `${verb} element ${T} ${op.set} { ${c.join(', ')} }`);
    }
    case 'add-map-elements': {
      assertObjectName('map', op.map);
      const owner = `map '${op.map}'`;
      const items = op.elements.map(([key, verdict]) => {
        assertElementText(owner, key);
        parseVerdict(`${owner} element ${JSON.stringify(key)}`, verdict);
        return `${key} : ${verdict}`;
      });
      return chunks(items).map((c) => `add element ${T} ${op.map} { ${c.join(', ')} }`);
    }
    case 'delete-map-elements': {
      assertObjectName('map', op.map);
      for (const k of op.keys) assertElementText(`map '${op.map}'`, k);
      return chunks(op.keys).map((c) => `delete element ${T} ${op.map} { ${c.join(', ')} }`);
    }
  }
}

function renderBase(chain: string, base: NftBaseChain): string {
  if (!['filter', 'nat', 'route'].includes(base.type) || !HOOKS.includes(base.hook)) {
    throw new Error(`nftables: base chain '${chain}' has an invalid type or hook`);
  }
  if (!Number.isSafeInteger(base.priority)) {
    throw new Error(`nftables: base chain '${chain}' has a non-integer priority`);
  }
  if (base.policy !== 'accept' && base.policy !== 'drop') {
    throw new Error(`nftables: base chain '${chain}' has an invalid policy`);
  }
  return `type ${base.type} hook ${base.hook} priority ${base.priority}; policy ${base.policy};`;
}

function renderSpec(kind: 'set' | 'map', spec: NftSetSpec, value: string): string {
  assertObjectName(kind, spec.name);
  assertKeyType(`${kind} '${spec.name}'`, spec.type);
  const flags = spec.flags ?? [];
  if (flags.some((f) => f !== 'interval')) {
    throw new Error(`nftables: ${kind} '${spec.name}' has unknown flags ${flags.join(',')}`);
  }
  return `type ${spec.type}${value};${flags.length ? ` flags ${flags.join(', ')};` : ''}`;
}

function chunks<X>(items: readonly X[]): X[][] {
  const out: X[][] = [];
  for (let i = 0; i < items.length; i += ELEMENT_CHUNK) out.push(items.slice(i, i + ELEMENT_CHUNK));
  return out;
}

/**
 * The whole table in one transaction that replaces whatever is there: `add table`
 * (so the `delete` cannot fail on a missing table), `delete table`, then every object.
 * Order: sets and maps, chains (declared, so jumps and verdicts can name them), set
 * elements, map elements, rules. The kernel swaps the old table for the new at commit:
 * there is no moment without a ruleset.
 */
export function fullReplaceOps(table: NftTable): NftOp[] {
  const ops: NftOp[] = [{ kind: 'add-table' }, { kind: 'delete-table' }, { kind: 'add-table' }];
  ops.push(...createOps(table));
  return ops;
}

/** Every object of `table`, in an order the kernel accepts, assuming an empty table. */
export function createOps(table: NftTable): NftOp[] {
  const ops: NftOp[] = [];
  for (const s of table.sets) ops.push({ kind: 'add-set', set: specOf(s) });
  for (const m of table.maps) ops.push({ kind: 'add-map', map: specOf(m) });
  for (const c of table.chains)
    ops.push(
      c.base
        ? { kind: 'add-chain', chain: c.name, base: c.base }
        : { kind: 'add-chain', chain: c.name },
    );
  for (const s of table.sets) {
    if (s.elements.length)
      ops.push({ kind: 'add-elements', set: s.name, elements: [...s.elements] });
  }
  for (const m of table.maps) {
    const elements = Object.entries(m.elements);
    if (elements.length) ops.push({ kind: 'add-map-elements', map: m.name, elements });
  }
  for (const c of table.chains) {
    for (const rule of c.rules) ops.push({ kind: 'add-rule', chain: c.name, rule });
  }
  return ops;
}

export function specOf(s: { name: string; type: string; flags?: 'interval'[] }): NftSetSpec {
  return s.flags?.length
    ? { name: s.name, type: s.type, flags: [...s.flags] }
    : { name: s.name, type: s.type };
}
