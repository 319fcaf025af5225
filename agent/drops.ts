// Drop accounting: how many packets this node's table dropped, per policy and per
// Required pool. The drop rules carry the counters (policy/compile.ts tags every
// policy rule with `comment "wm-<tag>"` and its drops with `counter`; the encryption
// guard's drops are `counter drop comment "wm-encrypt <range>"`, agent/pathnft.ts), so
// only dropped packets pay for counting. A read is one `nft -j -t list table` (terse:
// without set elements), on a metrics scrape.
//
// The kernel's counters restart whenever a chain is rewritten (a changed chain is
// flushed and filled again), so totals are kept here, per tag, from the increments
// between reads: a counter found lower than last time restarted, and all of it is new.
// A drop that closes a NetworkPolicy chain counts for every policy selecting the pod
// (none of them allowed the packet), so the per-policy totals may add up to more than
// the packets dropped.
import type { RuleOrigin } from '../policy/index.ts';
import type { Runner } from '../sys/index.ts';
import { NFT_FAMILY, NFT_TABLE } from '../nftables/index.ts';
import { ENCRYPT_DROP_TAG } from './pathnft.ts';

/** A drop rule's counter as the kernel reports it: the rule's comment and its packets. */
export interface RuleCounter {
  comment: string;
  packets: number;
}

export interface PolicyDrops {
  tier: RuleOrigin['tier'];
  namespace: string;
  policy: string;
  direction: RuleOrigin['direction'];
  packets: number;
}

export interface DropTotals {
  policy: PolicyDrops[];
  /** Per Required range (`*`: every Required range, when they are matched through a set). */
  encryption: { range: string; packets: number }[];
}

/** The counters of `nft -j list table` output: rules with a counter and a comment. */
export function parseRuleCounters(json: string): RuleCounter[] {
  const doc = JSON.parse(json) as { nftables?: unknown[] };
  if (!Array.isArray(doc.nftables)) throw new Error('nft -j: no "nftables" array in the output');
  const out: RuleCounter[] = [];
  for (const item of doc.nftables) {
    const rule = (item as { rule?: { comment?: unknown; expr?: unknown[] } }).rule;
    if (!rule || typeof rule.comment !== 'string' || !Array.isArray(rule.expr)) continue;
    for (const e of rule.expr) {
      const counter = (e as { counter?: { packets?: unknown } }).counter;
      if (counter && typeof counter.packets === 'number') {
        out.push({ comment: rule.comment, packets: counter.packets });
      }
    }
  }
  return out;
}

/** Totals kept across reads; `observe` takes one read and the current rule origins. */
export class DropAccounting {
  /** The last raw value per comment (summed over the rules carrying it). */
  private last = new Map<string, number>();
  private readonly policyTotals = new Map<string, PolicyDrops>();
  private readonly encryptionTotals = new Map<string, number>();

  observe(counters: readonly RuleCounter[], origins: Readonly<Record<string, RuleOrigin>>): void {
    const raw = new Map<string, number>();
    for (const c of counters) raw.set(c.comment, (raw.get(c.comment) ?? 0) + c.packets);
    for (const [comment, value] of raw) {
      const before = this.last.get(comment) ?? 0;
      const delta = value >= before ? value - before : value;
      if (comment.startsWith(ENCRYPT_DROP_TAG)) {
        const range = comment.slice(ENCRYPT_DROP_TAG.length);
        this.encryptionTotals.set(range, (this.encryptionTotals.get(range) ?? 0) + delta);
        continue;
      }
      const origin = origins[comment];
      if (!origin || origin.action !== 'Deny') continue;
      for (const p of origin.policies) {
        const key = JSON.stringify([origin.tier, p.namespace, p.name, origin.direction]);
        const total = this.policyTotals.get(key) ?? {
          tier: origin.tier,
          namespace: p.namespace,
          policy: p.name,
          direction: origin.direction,
          packets: 0,
        };
        total.packets += delta;
        this.policyTotals.set(key, total);
      }
    }
    // Rules gone from the table are forgotten: should the tag come back, it starts at 0.
    this.last = raw;
  }

  totals(): DropTotals {
    return {
      policy: [...this.policyTotals.values()].map((p) => ({ ...p })),
      encryption: [...this.encryptionTotals].map(([range, packets]) => ({ range, packets })),
    };
  }
}

/** Reads the table's counters with `nft -j -t list table inet wiremesh`. */
export async function readRuleCounters(runner: Runner, nft = 'nft'): Promise<RuleCounter[]> {
  const argv = [nft, '-j', '-t', 'list', 'table', NFT_FAMILY, NFT_TABLE];
  const res = await runner.run(argv, { allowFailure: true, timeoutMs: 30_000 });
  // No table yet (before the first apply): nothing dropped.
  if (res.code !== 0) {
    if (/No such file or directory/.test(res.stderr)) return [];
    throw new Error(`${argv.join(' ')}: exit code ${res.code}: ${res.stderr.trim()}`);
  }
  return parseRuleCounters(res.stdout);
}
