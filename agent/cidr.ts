// Family-agnostic CIDR arithmetic on BigInt, over ipaddr.js parsing.
import ipaddr from 'ipaddr.js';

export interface Cidr {
  family: 4 | 6;
  base: bigint;
  prefix: number;
  bits: 32 | 128;
}

export function parseCidr(text: string): Cidr {
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
}

export function toBigInt(addr: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return addr.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

export function fromBigInt(value: bigint, family: 4 | 6): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = 0; i < len; i++) {
    bytes.unshift(Number(value & 0xffn));
    value >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(c.bits - c.prefix);
}

export function formatCidr(c: Cidr): string {
  return `${fromBigInt(c.base, c.family)}/${c.prefix}`;
}

export function hostCidr(address: string): string {
  return `${address}/${ipaddr.parse(address).kind() === 'ipv4' ? 32 : 128}`;
}

export function cidrContains(c: Cidr, address: string): boolean {
  const a = ipaddr.parse(address);
  if ((a.kind() === 'ipv4' ? 4 : 6) !== c.family) return false;
  const hostBits = BigInt(c.bits - c.prefix);
  return toBigInt(a) >> hostBits === c.base >> hostBits;
}
