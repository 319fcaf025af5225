// Composes the one nftables table the agent owns (`inet wiremesh`) from the
// fragments its planners return: fail-closed encryption (`encrypt-*`), network
// policy (`policy-*`, `pol-*`) and NAT for traffic leaving the pools (`nat-*`).
// Only this file creates base chains, so the order in which the concerns see a
// packet is decided in one place: a pool that requires encryption drops before
// policy could accept, and policy sees every forwarded packet of a pod.
import type { NftChain, NftTable } from '../nftables/model.ts';

export interface TableParts {
  encrypt?: NftTable;
  policy?: NftTable;
  nat?: NftTable;
}

/** Entry chains a fragment may define; each is jumped to from one base chain. */
const ENTRIES: { base: string; entries: [keyof TableParts, string][] }[] = [
  {
    base: 'forward',
    entries: [
      ['encrypt', 'encrypt-forward'],
      ['policy', 'policy-forward'],
    ],
  },
  { base: 'input', entries: [['policy', 'policy-input']] },
  { base: 'output', entries: [['encrypt', 'encrypt-output']] },
  { base: 'postrouting', entries: [['nat', 'nat-postrouting']] },
];

const BASES: Record<string, NftChain['base']> = {
  forward: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' },
  input: { type: 'filter', hook: 'input', priority: 0, policy: 'accept' },
  output: { type: 'filter', hook: 'output', priority: 0, policy: 'accept' },
  postrouting: { type: 'nat', hook: 'postrouting', priority: 100, policy: 'accept' },
};

export function composeTable(parts: TableParts): NftTable {
  const table: NftTable = { sets: [], maps: [], chains: [] };
  const names = new Map<string, string>();
  const claim = (name: string, owner: string) => {
    const prev = names.get(name);
    if (prev) throw new Error(`nftables object '${name}' is defined by both ${prev} and ${owner}`);
    names.set(name, owner);
  };
  for (const { base } of ENTRIES) claim(base, 'the agent');
  for (const [owner, part] of Object.entries(parts) as [string, NftTable | undefined][]) {
    if (!part) continue;
    for (const s of part.sets) {
      claim(s.name, owner);
      table.sets.push(s);
    }
    for (const m of part.maps) {
      claim(m.name, owner);
      table.maps.push(m);
    }
    for (const c of part.chains) {
      if (c.base) throw new Error(`${owner} defines base chain '${c.name}'; only the agent does`);
      claim(c.name, owner);
      table.chains.push(c);
    }
  }
  for (const { base, entries } of ENTRIES) {
    const rules = entries
      // No jump to an empty chain: every forwarded packet would pay for it.
      .filter(([owner, chain]) =>
        parts[owner]?.chains.some((c) => c.name === chain && c.rules.length > 0),
      )
      .map(([, chain]) => `jump ${chain}`);
    if (rules.length) table.chains.push({ name: base, base: BASES[base], rules });
  }
  return table;
}
