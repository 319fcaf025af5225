// Family-agnostic address arithmetic for IPAM on BigInt (an IPv6 pool can hold 2^58
// blocks, more than a number can count), over ipaddr.js parsing. The ideas follow
// agent/cidr.ts; ipam keeps its own copy so that it depends on nothing in agent/
// (the agent depends on ipam, not the other way round). Parsing is strict:
// addresses and CIDRs from the API must be in canonical form (ipaddr.js would also
// read '100.064.0.1' as octal or '0x64.1' as hex; the apiserver's CEL checks and this
// module agree on RFC 5952 / dotted-quad canonical text), so one address has one
// spelling and string comparison is address comparison.
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** The network address. */
  base: bigint;
  prefix: number;
  bits: 32 | 128;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * `fn` memoised on its argument, for a bounded number of distinct ones: every
 * dataplane pass parses each node's addresses and blocks again (thousands at a
 * large cluster's size, IPv6 the slowest to parse), and they rarely change. A result
 * is frozen (and an object it holds, one level down): every caller shares it.
 */
export function memoised<R>(fn: (text: string) => R, max = 100_000): (text: string) => R {
  const results = new Map<string, R>();
  return (text) => {
    let r = results.get(text);
    if (r === undefined) {
      r = fn(text);
      if (r !== null && typeof r === 'object') {
        for (const v of Object.values(r)) if (v !== null && typeof v === 'object') Object.freeze(v);
        Object.freeze(r);
      }
      if (results.size >= max) results.clear();
      results.set(text, r);
    }
    return r;
  };
}

const canonicalCidrs = memoised(parseCanonicalCidrOnce);

/** A CIDR in canonical form with no host bits set, e.g. 100.64.0.0/16 or fd00:64::/48. */
export function parseCanonicalCidr(text: string): Parsed<Cidr> {
  if (typeof text !== 'string' || text.length > 64) return { ok: false, reason: 'is not a CIDR' };
  return canonicalCidrs(text);
}

function parseCanonicalCidrOnce(text: string): Parsed<Cidr> {
  let parsed: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    parsed = ipaddr.parseCIDR(text);
  } catch {
    return { ok: false, reason: `'${text}' is not a CIDR` };
  }
  const [addr, prefix] = parsed;
  const bits = addr.kind() === 'ipv4' ? 32 : 128;
  if (bits === 32 && !ipaddr.IPv4.isValidFourPartDecimal(text.split('/')[0] ?? '')) {
    return { ok: false, reason: `'${text}' is not a CIDR in dotted-decimal form` };
  }
  const value = toBigInt(addr);
  const hostBits = BigInt(bits - prefix);
  const base = (value >> hostBits) << hostBits;
  const c: Cidr = { family: bits === 32 ? 4 : 6, base, prefix, bits };
  if (base !== value) {
    return { ok: false, reason: `'${text}' has host bits set; the network is ${formatCidr(c)}` };
  }
  if (formatCidr(c) !== text) {
    return { ok: false, reason: `'${text}' is not in canonical form; write ${formatCidr(c)}` };
  }
  return { ok: true, value: c };
}

/** Like parseCanonicalCidr, for values this program wrote itself: a bad one is a bug. */
export function mustParseCidr(text: string): Cidr {
  const p = parseCanonicalCidr(text);
  if (!p.ok) throw new Error(`invalid CIDR: ${p.reason}`);
  return p.value;
}

/** An address in canonical form; returns its family and value. */
export function parseCanonicalAddress(text: string): Parsed<{ family: Family; value: bigint }> {
  if (typeof text !== 'string' || text.length > 45 || !ipaddr.isValid(text)) {
    return { ok: false, reason: `'${String(text)}' is not an IP address` };
  }
  const addr = ipaddr.parse(text);
  const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
  if (addr.toString() !== text || (family === 4 && !ipaddr.IPv4.isValidFourPartDecimal(text))) {
    return { ok: false, reason: `'${text}' is not in canonical form; write ${addr.toString()}` };
  }
  return { ok: true, value: { family, value: toBigInt(addr) } };
}

export function toBigInt(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

export function fromBigInt(value: bigint, family: Family): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = 0; i < len; i++) {
    bytes.unshift(Number(value & 0xffn));
    value >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function formatCidr(c: Cidr): string {
  return `${fromBigInt(c.base, c.family)}/${c.prefix}`;
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(c.bits - c.prefix);
}

/** The last address of the CIDR, inclusive. */
export function cidrLast(c: Cidr): bigint {
  return c.base + cidrSize(c) - 1n;
}

export function cidrContainsValue(c: Cidr, family: Family, value: bigint): boolean {
  return family === c.family && value >= c.base && value <= cidrLast(c);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.base <= cidrLast(b) && b.base <= cidrLast(a);
}

/** Host prefix of a pod address: 32 or 128. */
export function hostPrefix(family: Family): 32 | 128 {
  return family === 4 ? 32 : 128;
}

/**
 * The IPAMBlock object name for a block CIDR: dots, colons and the slash become
 * dashes (100.64.0.0/26 -> 100-64-0-0-26, fd00:64::/122 -> fd00-64---122), with a
 * '0' in front when an IPv6 CIDR starts with '::' (a name must start alphanumeric).
 * Canonical text makes the map one-to-one, so one block has exactly one name and
 * creating it is the claim. deploy/crds.yaml checks the same rule.
 */
export function blockName(cidr: string): string {
  return (cidr.startsWith(':') ? '0' : '') + cidr.replace(/[.:/]/g, '-');
}
