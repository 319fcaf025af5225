// Family-agnostic CIDR arithmetic on BigInt, over ipaddr.js parsing.
import ipaddr from 'ipaddr.js';
import { cidrContainsValue, cidrLast, memoised, toBigInt, type Cidr } from '../ipam/cidr.ts';
import { mergeRanges, rangesContain, type Range } from '../policy/ranges.ts';

// The BigInt helpers are IPAM's; this file adds the lenient parsing the planner uses.
export { toBigInt, fromBigInt, cidrSize, formatCidr, type Cidr } from '../ipam/cidr.ts';

export const parseCidr: (text: string) => Cidr = memoised((text) => {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text);
  } catch (e) {
    throw new Error(`invalid CIDR '${text}'`, { cause: e });
  }
  const [addr, prefix] = parsed;
  const bits = addr.kind() === 'ipv4' ? 32 : 128;
  const value = toBigInt(addr);
  const hostBits = BigInt(bits - prefix);
  const base = (value >> hostBits) << hostBits;
  return { family: bits === 32 ? 4 : 6, base, prefix, bits };
});

export const hostCidr: (address: string) => string = memoised(
  (address) => `${address}/${ipaddr.parse(address).kind() === 'ipv4' ? 32 : 128}`,
);

/** An address's family and value, parsed as cidrContains parses it. */
export const addressValue: (address: string) => { family: 4 | 6; value: bigint } = memoised(
  (address) => {
    const a = ipaddr.parse(address);
    return { family: a.kind() === 'ipv4' ? 4 : 6, value: toBigInt(a) };
  },
);

/**
 * Which of `cidrs` contains an address, for many addresses against many ranges:
 * the ranges are merged per family once, so an address in none of them (the usual
 * answer) costs one binary search instead of a parse and a test per range.
 */
export class CidrMatcher {
  private readonly cidrs: readonly { text: string; cidr: Cidr }[];
  private readonly merged: Record<4 | 6, Range[]>;

  constructor(cidrs: readonly string[]) {
    this.cidrs = cidrs.map((text) => ({ text, cidr: parseCidr(text) }));
    const spans = (family: 4 | 6) =>
      mergeRanges(
        this.cidrs
          .filter((c) => c.cidr.family === family)
          .map(({ cidr }) => ({ lo: cidr.base, hi: cidrLast(cidr) })),
      );
    this.merged = { 4: spans(4), 6: spans(6) };
  }

  /** The first of the CIDRs (in the order given) that contains `address`, if any. */
  find(address: string): string | undefined {
    if (this.cidrs.length === 0) return undefined;
    const { family, value } = addressValue(address);
    if (!rangesContain(this.merged[family], value)) return undefined;
    return this.cidrs.find(({ cidr }) => cidrContainsValue(cidr, family, value))?.text;
  }
}

export function cidrContains(c: Cidr, address: string): boolean {
  const { family, value } = addressValue(address);
  if (family !== c.family) return false;
  const hostBits = BigInt(c.bits - c.prefix);
  return value >> hostBits === c.base >> hostBits;
}
