// A small evaluator of a compiled policy fragment, for tests: given a packet, walk
// policy-forward or policy-input as the kernel would and say what happens (`jump`
// returns to the caller, `goto` hands the caller's return over to the callee). It
// knows exactly the rule shapes compile.ts emits and throws on anything else, so a
// new shape has to be taught here on purpose. It also renders a fragment as
// `nft -f` text, for golden snapshots and for checking by hand with `nft -c -f`.
import type { NftChain, NftTable } from '../nftables/model.ts';
import { mergeRanges, parseAddress, parseCidr, type Family, type Range } from './ranges.ts';

export interface Packet {
  src: string;
  dst: string;
  /** Layer 4 protocol as nft names it. */
  proto: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'ipv6-icmp';
  dport?: number;
  /** ICMPv6 type name as nft writes it, e.g. nd-neighbor-solicit. */
  icmpv6Type?: string;
  ct?: 'new' | 'established' | 'related' | 'invalid';
  /** `dst` is one of this node's own addresses (so in the input hook, always). */
  local?: boolean;
}

export type Verdict = 'accept' | 'drop' | 'return';

/** What the hook does with `pkt` when its base chain (policy accept) jumps to `entry`. */
export function hookVerdict(table: NftTable, entry: string, pkt: Packet): 'accept' | 'drop' {
  return traceVerdict(table, entry, pkt).verdict;
}

/**
 * hookVerdict, and the comment tags (`comment "wm-..."`) of the rules that matched on
 * the way, in order: the last one is the rule that decided (none: no policy rule
 * matched, the packet passed by default).
 */
export function traceVerdict(
  table: NftTable,
  entry: string,
  pkt: Packet,
): { verdict: 'accept' | 'drop'; tags: string[] } {
  const tags: string[] = [];
  const v = evalChain(table, entry, pkt, 0, tags);
  return { verdict: v === 'drop' ? 'drop' : 'accept', tags };
}

function evalChain(
  table: NftTable,
  name: string,
  pkt: Packet,
  depth: number,
  tags: string[],
): Verdict {
  if (depth > 16) throw new Error(`jump depth exceeded at ${name}`);
  const chain = table.chains.find((c) => c.name === name);
  if (!chain) throw new Error(`no chain ${name}`);
  for (const rule of chain.rules) {
    const v = evalRule(table, rule, pkt, depth, tags);
    if (v === 'return') return 'return';
    if (v !== null) return v;
  }
  return 'return';
}

function familyOf(addr: string): Family {
  const a = parseAddress(addr);
  if (!a) throw new Error(`bad packet address ${addr}`);
  return a.family;
}

function valueOf(addr: string): bigint {
  const a = parseAddress(addr);
  if (!a) throw new Error(`bad address ${addr}`);
  return a.value;
}

/** null: the rule did not match (or matched without a verdict); go on. */
function evalRule(
  table: NftTable,
  full: string,
  pkt: Packet,
  depth: number,
  tags: string[],
): Verdict | null {
  // A trailing comment is no match; its tag is recorded when the rule's verdict is reached.
  const commented = / comment "([^"]*)"$/.exec(full);
  const rule = commented ? full.slice(0, commented.index) : full;
  const matched = () => {
    if (commented?.[1]) tags.push(commented[1]);
  };
  const t = rule.split(' ');
  let i = 0;
  const next = () => {
    const tok = t[i++];
    if (tok === undefined) throw new Error(`rule ended early: ${rule}`);
    return tok;
  };
  const braced = () => {
    if (next() !== '{') throw new Error(`expected {: ${rule}`);
    const items: string[] = [];
    for (let tok = next(); tok !== '}'; tok = next()) items.push(tok.replace(/,$/, ''));
    return items;
  };
  const pktFamily = familyOf(pkt.src);
  while (i < t.length) {
    const tok = next();
    switch (tok) {
      case 'ct': {
        if (next() !== 'state') throw new Error(`unknown ct match: ${rule}`);
        if (
          !next()
            .split(',')
            .includes(pkt.ct ?? 'new')
        )
          return null;
        break;
      }
      case 'ip':
      case 'ip6': {
        if ((tok === 'ip' ? 4 : 6) !== pktFamily) return null;
        const side = next();
        if (side !== 'saddr' && side !== 'daddr') throw new Error(`unknown ${tok} match: ${rule}`);
        const addr = side === 'saddr' ? pkt.src : pkt.dst;
        const what = next();
        if (what === 'vmap') {
          const map = table.maps.find((m) => `@${m.name}` === t[i]);
          if (!map) throw new Error(`no map ${t[i]}`);
          i++;
          const verdict = Object.entries(map.elements).find(
            ([k]) => valueOf(k) === valueOf(addr),
          )?.[1];
          if (verdict === undefined) return null;
          matched();
          return applyVerdict(table, verdict, pkt, depth, tags);
        }
        if (what === '.') {
          // ip daddr . meta l4proto . th dport @set
          const shape = [next(), next(), next(), next(), next()].join(' ');
          if (shape !== 'meta l4proto . th dport') throw new Error(`unknown concat: ${rule}`);
          const set = lookupSet(table, next());
          if (pkt.dport === undefined) return null;
          const hit = set.elements.some((e) => {
            const [a, p, port] = e.split(' . ');
            return (
              valueOf(a ?? '') === valueOf(addr) && p === pkt.proto && Number(port) === pkt.dport
            );
          });
          if (!hit) return null;
          break;
        }
        if (!what.startsWith('@')) throw new Error(`unknown address match: ${rule}`);
        if (!inIntervalSet(lookupSet(table, what).elements, addr)) return null;
        break;
      }
      case 'meta': {
        if (next() !== 'l4proto') throw new Error(`unknown meta match: ${rule}`);
        if (next() !== pkt.proto) return null;
        break;
      }
      case 'tcp':
      case 'udp':
      case 'sctp': {
        if (next() !== 'dport') throw new Error(`unknown ${tok} match: ${rule}`);
        const ports = braced();
        if (pkt.proto !== tok || pkt.dport === undefined) return null;
        const d = pkt.dport;
        const hit = ports.some((p) => {
          const [lo, hi] = p.split('-').map(Number) as [number, number | undefined];
          return d >= lo && d <= (hi ?? lo);
        });
        if (!hit) return null;
        break;
      }
      case 'fib': {
        const shape = [next(), next(), next()].join(' ');
        if (shape !== 'daddr type local') throw new Error(`unknown fib match: ${rule}`);
        if (!pkt.local) return null;
        break;
      }
      case 'icmpv6': {
        if (next() !== 'type') throw new Error(`unknown icmpv6 match: ${rule}`);
        const types = braced();
        if (pkt.proto !== 'ipv6-icmp' || !types.includes(pkt.icmpv6Type ?? '')) return null;
        break;
      }
      case 'counter':
        // Counts, never decides.
        break;
      case 'limit': {
        // `limit rate N/second burst M packets`: taken as under the limit.
        const shape = [next(), next(), next(), next(), next()];
        if (shape[0] !== 'rate' || shape[2] !== 'burst' || shape[4] !== 'packets')
          throw new Error(`unknown limit: ${rule}`);
        break;
      }
      case 'log':
        // `log group N`: logs, never decides.
        if (next() !== 'group') throw new Error(`unknown log: ${rule}`);
        next();
        break;
      case 'return':
      case 'drop':
      case 'accept':
        if (i !== t.length) throw new Error(`verdict not last: ${rule}`);
        matched();
        return tok;
      case 'jump':
      case 'goto':
        matched();
        return applyVerdict(table, `${tok} ${next()}`, pkt, depth, tags);
      default:
        throw new Error(`unknown rule shape at '${tok}': ${rule}`);
    }
  }
  return null;
}

/**
 * A verdict's effect on the calling chain: null goes on with its next rule. `jump`
 * comes back when the chain returns; `goto` does not: the called chain's return
 * (explicit or by running off its end) is the calling chain's return.
 */
function applyVerdict(
  table: NftTable,
  verdict: string,
  pkt: Packet,
  depth: number,
  tags: string[],
): Verdict | null {
  if (verdict === 'accept' || verdict === 'drop' || verdict === 'return') return verdict;
  const [op, chain] = verdict.split(' ');
  if ((op !== 'jump' && op !== 'goto') || !chain) throw new Error(`unknown verdict ${verdict}`);
  const v = evalChain(table, chain, pkt, depth + 1, tags);
  if (op === 'goto') return v;
  return v === 'return' ? null : v;
}

function lookupSet(table: NftTable, ref: string) {
  const set = table.sets.find((s) => `@${s.name}` === ref);
  if (!set) throw new Error(`no set ${ref}`);
  return set;
}

function inIntervalSet(elements: string[], addr: string): boolean {
  const v = valueOf(addr);
  return elements.some((e) => {
    const r = elementRange(e);
    return v >= r.lo && v <= r.hi;
  });
}

function elementRange(e: string): Range {
  if (e.includes('/')) {
    const c = parseCidr(e);
    if ('error' in c) throw new Error(`bad element ${e}`);
    return c.range;
  }
  const [lo, hi] = e.split('-');
  return { lo: valueOf(lo ?? ''), hi: valueOf(hi ?? lo ?? '') };
}

/** Whether an interval set's elements are disjoint (nft refuses overlaps). */
export function disjoint(elements: string[]): boolean {
  const ranges = elements.map(elementRange);
  const merged = mergeRanges(ranges);
  const total = (rs: Range[]) => rs.reduce((n, r) => n + (r.hi - r.lo + 1n), 0n);
  return total(merged) === total(ranges);
}

/** The fragment as `nft -f` text inside `table inet wiremesh`. */
export function renderFragment(table: NftTable, name = 'wiremesh'): string {
  const lines = [`table inet ${name} {`];
  for (const s of table.sets) {
    lines.push(`  set ${s.name} {`, `    type ${s.type}`);
    if (s.flags?.length) lines.push(`    flags ${s.flags.join(', ')}`);
    if (s.elements.length) lines.push(`    elements = { ${s.elements.join(', ')} }`);
    lines.push('  }');
  }
  for (const m of table.maps) {
    lines.push(`  map ${m.name} {`, `    type ${m.type} : verdict`);
    if (m.flags?.length) lines.push(`    flags ${m.flags.join(', ')}`);
    const els = Object.entries(m.elements).map(([k, v]) => `${k} : ${v}`);
    if (els.length) lines.push(`    elements = { ${els.join(', ')} }`);
    lines.push('  }');
  }
  for (const c of table.chains) lines.push(...renderChain(c));
  lines.push('}');
  return lines.join('\n') + '\n';
}

function renderChain(c: NftChain): string[] {
  return [`  chain ${c.name} {`, ...c.rules.map((r) => `    ${r}`), '  }'];
}
