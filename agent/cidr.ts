// Family-agnostic CIDR arithmetic on BigInt, over ipaddr.js parsing.
import ipaddr from 'ipaddr.js';
import { toBigInt, type Cidr } from '../ipam/cidr.ts';

// The BigInt helpers are IPAM's; this file adds the lenient parsing the planner uses.
export { toBigInt, fromBigInt, cidrSize, formatCidr, type Cidr } from '../ipam/cidr.ts';

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

export function hostCidr(address: string): string {
  return `${address}/${ipaddr.parse(address).kind() === 'ipv4' ? 32 : 128}`;
}

export function cidrContains(c: Cidr, address: string): boolean {
  const a = ipaddr.parse(address);
  if ((a.kind() === 'ipv4' ? 4 : 6) !== c.family) return false;
  const hostBits = BigInt(c.bits - c.prefix);
  return toBigInt(a) >> hostBits === c.base >> hostBits;
}
