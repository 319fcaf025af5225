// Checking a desired table as a whole before any of it reaches the kernel, and the
// canonical form the driver remembers and compares: elements quoted as nft needs them
// and without duplicates, copies that later changes by the planner cannot reach.
//
// A table is refused, naming the offending object, when a name is invalid or used
// twice (sets and maps share one namespace in nft), a rule or a verdict jumps to a
// chain that is not in the table, or a rule references (`@x`) a set or map that is not.
// Catching these here gives the planner a precise error instead of nft's "No such file
// or directory" at line N of a generated script.
import type { NftChain, NftMap, NftSet, NftTable } from './model.ts';
import {
  assertElementText,
  assertKeyType,
  assertObjectName,
  assertRuleText,
  canonicalElement,
  parseVerdict,
  ruleReferences,
} from './names.ts';

/**
 * A table checked before, for checkTable to skip what has not changed: a copy of the
 * table as it was given (`raw`: later changes by the caller cannot reach it) and its
 * canonical form (`checked`). A set, map or chain whose given contents equal the
 * remembered ones is not validated again, and its canonical object is reused as is
 * (so planIncremental sees the very same object and skips it at once).
 */
export interface CheckedTable {
  readonly raw: NftTable;
  readonly checked: NftTable;
}

/** Remember `raw` (copied) and its canonical form `checked` for the next checkTable. */
export function rememberChecked(raw: NftTable, checked: NftTable): CheckedTable {
  return {
    raw: {
      sets: raw.sets.map((s) => ({
        ...s,
        flags: s.flags && [...s.flags],
        elements: [...s.elements],
      })),
      maps: raw.maps.map((m) => ({
        ...m,
        flags: m.flags && [...m.flags],
        elements: { ...m.elements },
      })),
      chains: raw.chains.map((c) => ({ ...c, base: c.base && { ...c.base }, rules: [...c.rules] })),
    },
    checked,
  };
}

/**
 * The canonical, validated copy of `table`; throws on the first problem found. With
 * `previous`, objects given exactly as before keep their canonical form from then;
 * references (jumps, verdicts, `@set`) are checked against this table all the same.
 */
export function checkTable(table: NftTable, previous?: CheckedTable): NftTable {
  const before = previous ? indexPrevious(previous) : null;
  const setNames = new Set<string>();
  const sets: NftSet[] = table.sets.map((s) => {
    assertObjectName('set', s.name);
    if (setNames.has(s.name)) throw new Error(`nftables: set '${s.name}' is defined twice`);
    setNames.add(s.name);
    const old = before?.sets.get(s.name);
    if (old && sameSpecText(old.raw, s) && sameList(old.raw.elements, s.elements))
      return old.checked;
    return { ...checkSpec('set', s), elements: checkElements(s) };
  });
  const chainNames = new Set<string>();
  for (const c of table.chains) {
    assertObjectName('chain', c.name);
    if (chainNames.has(c.name)) throw new Error(`nftables: chain '${c.name}' is defined twice`);
    chainNames.add(c.name);
  }
  const maps: NftMap[] = table.maps.map((m) => {
    assertObjectName('map', m.name);
    if (setNames.has(m.name)) {
      throw new Error(`nftables: map '${m.name}' has the name of another set or map`);
    }
    setNames.add(m.name);
    if (m.value !== 'verdict') throw new Error(`nftables: map '${m.name}' is not a verdict map`);
    const old = before?.maps.get(m.name);
    if (old && sameSpecText(old.raw, m) && sameEntries(old.raw.elements, m.elements)) {
      // The elements were valid; only the chains their verdicts name may be gone.
      checkVerdictTargets(`map '${m.name}'`, old.checked.elements, chainNames);
      return old.checked;
    }
    return { ...checkSpec('map', m), value: 'verdict', elements: checkMapElements(m, chainNames) };
  });
  const chains: NftChain[] = table.chains.map((c) => {
    const old = before?.chains.get(c.name);
    const same = old !== undefined && sameBase(old.raw, c) && sameList(old.raw.rules, c.rules);
    const rules = c.rules.map((rule) => {
      if (!same) assertRuleText(c.name, rule);
      const refs = references(rule);
      for (const target of refs.chains) {
        if (!chainNames.has(target)) {
          throw new Error(
            `nftables: rule in chain '${c.name}' jumps to missing chain '${target}': ${rule}`,
          );
        }
      }
      for (const name of refs.sets) {
        if (!setNames.has(name)) {
          throw new Error(
            `nftables: rule in chain '${c.name}' references missing set or map '${name}': ${rule}`,
          );
        }
      }
      return rule.trim();
    });
    if (same) return old.checked;
    return c.base ? { name: c.name, base: { ...c.base }, rules } : { name: c.name, rules };
  });
  return { sets, maps, chains };
}

interface Remembered<R, C> {
  raw: R;
  checked: C;
}

/** The previous table's objects by name, each given and canonical form side by side. */
function indexPrevious(previous: CheckedTable): {
  sets: Map<string, Remembered<NftSet, NftSet>>;
  maps: Map<string, Remembered<NftMap, NftMap>>;
  chains: Map<string, Remembered<NftChain, NftChain>>;
} {
  const pair = <X extends { name: string }>(raw: readonly X[], checked: readonly X[]) => {
    const canonical = new Map(checked.map((x) => [x.name, x]));
    const out = new Map<string, Remembered<X, X>>();
    for (const r of raw) {
      const c = canonical.get(r.name);
      if (c) out.set(r.name, { raw: r, checked: c });
    }
    return out;
  };
  return {
    sets: pair(previous.raw.sets, previous.checked.sets),
    maps: pair(previous.raw.maps, previous.checked.maps),
    chains: pair(previous.raw.chains, previous.checked.chains),
  };
}

function sameSpecText(a: NftSet | NftMap, b: NftSet | NftMap): boolean {
  return a.type === b.type && sameList(a.flags ?? [], b.flags ?? []);
}

function sameBase(a: NftChain, b: NftChain): boolean {
  if (!a.base || !b.base) return a.base === b.base;
  return (
    a.base.type === b.base.type &&
    a.base.hook === b.base.hook &&
    a.base.priority === b.base.priority &&
    a.base.policy === b.base.policy
  );
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameEntries(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i] as string;
    if (k !== kb[i] || a[k] !== b[k]) return false;
  }
  return true;
}

function checkVerdictTargets(owner: string, elements: Record<string, string>, chains: Set<string>) {
  const seen = new Set<string>();
  for (const [key, verdict] of Object.entries(elements)) {
    if (seen.has(verdict)) continue;
    seen.add(verdict);
    const { jump } = parseVerdict(`${owner} element ${JSON.stringify(key)}`, verdict);
    if (jump !== undefined && !chains.has(jump)) {
      throw new Error(
        `nftables: ${owner} element ${JSON.stringify(key)} jumps to missing chain '${jump}'`,
      );
    }
  }
}

const referenceCache = new Map<string, { chains: string[]; sets: string[] }>();

/** ruleReferences, memoised: a table's rules are mostly those of the last one. */
function references(rule: string): { chains: string[]; sets: string[] } {
  let refs = referenceCache.get(rule);
  if (!refs) {
    refs = ruleReferences(rule);
    if (referenceCache.size > 100_000) referenceCache.clear();
    referenceCache.set(rule, refs);
  }
  return refs;
}

function checkSpec(
  kind: string,
  s: NftSet | NftMap,
): { name: string; type: string; flags?: 'interval'[] } {
  assertKeyType(`${kind} '${s.name}'`, s.type);
  const flags = s.flags ?? [];
  if (flags.some((f) => f !== 'interval')) {
    throw new Error(`nftables: ${kind} '${s.name}' has unknown flags ${flags.join(',')}`);
  }
  return flags.length
    ? { name: s.name, type: s.type, flags: ['interval'] }
    : { name: s.name, type: s.type };
}

function checkElements(s: NftSet): string[] {
  const owner = `set '${s.name}'`;
  const canonical = canonicalizer(owner, s.type);
  const out = new Set<string>();
  for (const e of s.elements) {
    const key = canonical(e);
    assertElementText(owner, key);
    out.add(key);
  }
  return [...out];
}

/**
 * canonicalElement for one key type: a type without `ifname` or `string` parts only
 * trims (what canonicalElement does then), decided once rather than per element.
 */
function canonicalizer(owner: string, type: string): (e: string) => string {
  const quoted = type.split(' . ').some((t) => t === 'ifname' || t === 'string');
  return quoted ? (e) => canonicalElement(owner, type, e) : (e) => e.trim();
}

function checkMapElements(m: NftMap, chains: Set<string>): Record<string, string> {
  const owner = `map '${m.name}'`;
  const canonical = canonicalizer(owner, m.type);
  // Verdicts repeat (one per chain): each distinct one is parsed and checked once.
  const valid = new Set<string>();
  const out: Record<string, string> = {};
  for (const [e, verdict] of Object.entries(m.elements)) {
    const key = canonical(e);
    assertElementText(owner, key);
    if (!valid.has(verdict)) {
      const { jump } = parseVerdict(`${owner} element ${JSON.stringify(key)}`, verdict);
      if (jump !== undefined && !chains.has(jump)) {
        throw new Error(
          `nftables: ${owner} element ${JSON.stringify(key)} jumps to missing chain '${jump}'`,
        );
      }
      valid.add(verdict);
    }
    if (key in out && out[key] !== verdict) {
      throw new Error(`nftables: ${owner} has two verdicts for ${JSON.stringify(key)}`);
    }
    out[key] = verdict;
  }
  return out;
}
