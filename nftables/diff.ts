// The incremental transaction from one applied table to the next, as a pure function of
// the two (both canonical, from checkTable). Element changes become element additions
// and removals, a chain whose rules changed is flushed and rewritten, new objects are
// added and removed ones deleted. What cannot be changed in place (a set's type or
// flags, a base chain's hook, priority or policy, a set becoming a map) returns null:
// the driver then replaces the whole table, which is just as atomic.
//
// Order, so the kernel accepts every step of one transaction:
//  1. new sets, maps and chains (chains declared empty, so anything may name them);
//  2. set elements removed, then added (an interval may be replaced by an overlapping one);
//  3. map elements removed or changed, then added or changed (verdicts naming chains
//     about to be deleted go here, before those chains do);
//  4. changed chains flushed and rewritten, new chains filled;
//  5. removed chains flushed (their rules may reference removed sets and chains);
//  6. removed maps and sets deleted, then removed chains.
import type { NftChain, NftMap, NftSet, NftTable } from './model.ts';
import { specOf, type NftOp } from './ops.ts';

export function planIncremental(prev: NftTable, next: NftTable): NftOp[] | null {
  const prevSets = byName(prev.sets);
  const prevMaps = byName(prev.maps);
  const prevChains = byName(prev.chains);
  const nextSets = byName(next.sets);
  const nextMaps = byName(next.maps);
  const nextChains = byName(next.chains);

  for (const s of next.sets) {
    const old = prevSets.get(s.name);
    if (prevMaps.has(s.name) || (old && !sameSpec(old, s))) return null;
  }
  for (const m of next.maps) {
    const old = prevMaps.get(m.name);
    if (prevSets.has(m.name) || (old && !sameSpec(old, m))) return null;
  }
  for (const c of next.chains) {
    const old = prevChains.get(c.name);
    if (old && JSON.stringify(old.base ?? null) !== JSON.stringify(c.base ?? null)) return null;
  }

  const ops: NftOp[] = [];
  // 1. new objects
  for (const s of next.sets)
    if (!prevSets.has(s.name)) ops.push({ kind: 'add-set', set: specOf(s) });
  for (const m of next.maps)
    if (!prevMaps.has(m.name)) ops.push({ kind: 'add-map', map: specOf(m) });
  for (const c of next.chains) {
    if (prevChains.has(c.name)) continue;
    ops.push(
      c.base
        ? { kind: 'add-chain', chain: c.name, base: c.base }
        : { kind: 'add-chain', chain: c.name },
    );
  }
  // 2. set elements
  for (const s of next.sets) {
    const before = prevSets.get(s.name);
    if (before && (before === s || sameList(before.elements, s.elements))) continue;
    const old = new Set(before?.elements ?? []);
    const now = new Set(s.elements);
    const removed = [...old].filter((e) => !now.has(e));
    const added = s.elements.filter((e) => !old.has(e));
    if (removed.length) ops.push({ kind: 'delete-elements', set: s.name, elements: removed });
    if (added.length) ops.push({ kind: 'add-elements', set: s.name, elements: added });
  }
  // 3. map elements
  for (const m of next.maps) {
    const before = prevMaps.get(m.name);
    if (before && (before === m || sameEntries(before.elements, m.elements))) continue;
    const old = before?.elements ?? {};
    const removed = Object.keys(old).filter((k) => m.elements[k] !== old[k]);
    const added = Object.entries(m.elements).filter(([k, v]) => old[k] !== v);
    if (removed.length) ops.push({ kind: 'delete-map-elements', map: m.name, keys: removed });
    if (added.length) ops.push({ kind: 'add-map-elements', map: m.name, elements: added });
  }
  // 4. chains with new or changed rules
  for (const c of next.chains) {
    const old = prevChains.get(c.name);
    if (old && sameRules(old, c)) continue;
    if (old) ops.push({ kind: 'flush-chain', chain: c.name });
    for (const rule of c.rules) ops.push({ kind: 'add-rule', chain: c.name, rule });
  }
  // 5. and 6. removed objects
  const gone = prev.chains.filter((c) => !nextChains.has(c.name));
  for (const c of gone) if (c.rules.length) ops.push({ kind: 'flush-chain', chain: c.name });
  for (const m of prev.maps)
    if (!nextMaps.has(m.name)) ops.push({ kind: 'delete-map', map: m.name });
  for (const s of prev.sets)
    if (!nextSets.has(s.name)) ops.push({ kind: 'delete-set', set: s.name });
  for (const c of gone) ops.push({ kind: 'delete-chain', chain: c.name });
  return ops;
}

function byName<X extends { name: string }>(items: readonly X[]): Map<string, X> {
  return new Map(items.map((x) => [x.name, x]));
}

function sameSpec(a: NftSet | NftMap, b: NftSet | NftMap): boolean {
  return a.type === b.type && (a.flags ?? []).join(',') === (b.flags ?? []).join(',');
}

function sameRules(a: NftChain, b: NftChain): boolean {
  return a === b || sameList(a.rules, b.rules);
}

/** Equal lists: most sets are unchanged, and this is much cheaper than two Sets. */
function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Same keys with the same verdicts (in any order). */
function sameEntries(a: Record<string, string>, b: Record<string, string>): boolean {
  let n = 0;
  for (const k in b) {
    if (a[k] !== b[k]) return false;
    n++;
  }
  return n === Object.keys(a).length;
}
