// Address ranges for the policy compiler: ipBlock CIDRs minus their excepts, pod
// addresses, and their union, as sorted disjoint inclusive [lo, hi] ranges on
// BigInt (IPv6 needs 128 bits). nftables interval sets refuse overlapping
// elements, so every set the compiler emits goes through mergeRanges first and is
// rendered as the shortest element text: an address, a CIDR, or `lo-hi`.
import ipaddr from 'ipaddr.js';
import { memoised } from '../ipam/index.ts';

export type Family = 4 | 6;

export interface Range {
  lo: bigint;
  hi: bigint;
}

export interface ParsedCidr {
  family: Family;
  range: Range;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

function toBigInt(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

export function formatAddress(value: bigint, family: Family): string {
  const bytes: number[] = [];
  for (let i = 0; i < (family === 4 ? 4 : 16); i++) {
    bytes.unshift(Number(value & 0xffn));
    value >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

/**
 * An IP address of either family, with its canonical text (RFC 5952 for IPv6);
 * IPv4 only in dotted-quad decimal (no octal or hex).
 */
export function parseAddress(text: string): { family: Family; value: bigint; text: string } | null {
  if (typeof text !== 'string' || text.length > 45 || text.includes('%')) return null;
  if (!ipaddr.isValid(text)) return null;
  const addr = ipaddr.parse(text);
  if (addr.kind() === 'ipv4') {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) return null;
    return { family: 4, value: toBigInt(addr), text: addr.toString() };
  }
  return { family: 6, value: toBigInt(addr), text: addr.toString() };
}

/**
 * parseAddress, memoised (results frozen and shared): every pod's addresses are
 * parsed by the watch's translation and again by each compile, and ipaddr.js was most
 * of a compile's time.
 */
export const cachedAddress = memoised(parseAddress, 200_000);

/**
 * A CIDR as the apiserver accepts it in an ipBlock: host bits may be set (they are
 * masked off, as upstream's ParseCIDR does), IPv4 must be dotted-quad decimal.
 */
export function parseCidr(text: string): ParsedCidr | { error: string } {
  if (typeof text !== 'string' || text.length > 64) return { error: 'is not a CIDR' };
  const slash = text.indexOf('/');
  const addr = parseAddress(slash < 0 ? '' : text.slice(0, slash));
  const prefixText = text.slice(slash + 1);
  if (!addr || !/^[0-9]{1,3}$/.test(prefixText)) return { error: `'${text}' is not a CIDR` };
  const bits = BITS[addr.family];
  const prefix = Number(prefixText);
  if (prefix > bits) return { error: `'${text}' has a prefix longer than ${bits} bits` };
  const host = BigInt(bits - prefix);
  const lo = (addr.value >> host) << host;
  return { family: addr.family, range: { lo, hi: lo + (1n << host) - 1n } };
}

/** Sorted, disjoint, and with adjacent ranges joined. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.lo <= last.hi + 1n) {
      if (r.hi > last.hi) last.hi = r.hi;
    } else {
      out.push({ lo: r.lo, hi: r.hi });
    }
  }
  return out;
}

/** `from` minus every range of `minus`; both sorted and disjoint (mergeRanges). */
export function subtractRanges(from: readonly Range[], minus: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const r of from) {
    let lo = r.lo;
    for (const m of minus) {
      if (m.hi < lo || m.lo > r.hi) continue;
      if (m.lo > lo) out.push({ lo, hi: m.lo - 1n });
      lo = m.hi + 1n;
      if (lo > r.hi) break;
    }
    if (lo <= r.hi) out.push({ lo, hi: r.hi });
  }
  return out;
}

/** Whether `value` lies in the sorted disjoint `ranges` (binary search). */
export function rangesContain(ranges: readonly Range[], value: bigint): boolean {
  let a = 0;
  let b = ranges.length - 1;
  while (a <= b) {
    const mid = (a + b) >> 1;
    const r = ranges[mid] as Range;
    if (value < r.lo) b = mid - 1;
    else if (value > r.hi) a = mid + 1;
    else return true;
  }
  return false;
}

/** One interval-set element: `10.0.0.1`, `10.0.0.0/24` or `10.0.0.1-10.0.0.5`. */
export function renderRange(r: Range, family: Family): string {
  if (r.lo === r.hi) return formatAddress(r.lo, family);
  const size = r.hi - r.lo + 1n;
  const aligned = (size & (size - 1n)) === 0n && r.lo % size === 0n;
  if (aligned) {
    const prefix = BITS[family] - (size.toString(2).length - 1);
    return `${formatAddress(r.lo, family)}/${prefix}`;
  }
  return `${formatAddress(r.lo, family)}-${formatAddress(r.hi, family)}`;
}
