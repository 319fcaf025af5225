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

/** The canonical, validated copy of `table`; throws on the first problem found. */
export function checkTable(table: NftTable): NftTable {
  const setNames = new Set<string>();
  const sets: NftSet[] = table.sets.map((s) => {
    assertObjectName('set', s.name);
    if (setNames.has(s.name)) throw new Error(`nftables: set '${s.name}' is defined twice`);
    setNames.add(s.name);
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
    return { ...checkSpec('map', m), value: 'verdict', elements: checkMapElements(m, chainNames) };
  });
  const chains: NftChain[] = table.chains.map((c) => {
    const rules = c.rules.map((rule) => {
      assertRuleText(c.name, rule);
      const refs = ruleReferences(rule);
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
    return c.base ? { name: c.name, base: { ...c.base }, rules } : { name: c.name, rules };
  });
  return { sets, maps, chains };
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
  const out = new Set<string>();
  for (const e of s.elements) {
    const key = canonicalElement(owner, s.type, e);
    assertElementText(owner, key);
    out.add(key);
  }
  return [...out];
}

function checkMapElements(m: NftMap, chains: Set<string>): Record<string, string> {
  const owner = `map '${m.name}'`;
  const out: Record<string, string> = {};
  for (const [e, verdict] of Object.entries(m.elements)) {
    const key = canonicalElement(owner, m.type, e);
    assertElementText(owner, key);
    const { jump } = parseVerdict(`${owner} element ${JSON.stringify(key)}`, verdict);
    if (jump !== undefined && !chains.has(jump)) {
      throw new Error(
        `nftables: ${owner} element ${JSON.stringify(key)} jumps to missing chain '${jump}'`,
      );
    }
    if (key in out && out[key] !== verdict) {
      throw new Error(`nftables: ${owner} has two verdicts for ${JSON.stringify(key)}`);
    }
    out[key] = verdict;
  }
  return out;
}
