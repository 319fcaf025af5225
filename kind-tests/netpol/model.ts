// The cluster the network-policy suite works on, as upstream's netpol e2e tests
// have it (test/e2e/network/netpol in kubernetes/kubernetes): namespaces x, y and z
// labelled `ns: <name>`, pods a, b and c in each labelled `pod: <name>`, every pod
// serving ports 80 and 81 over TCP, UDP and SCTP under the named ports
// serve-80-tcp ... serve-81-sctp. Pods are addressed as "x/a" throughout (the
// logical names; the namespaces may carry a suffix on a shared cluster).
import type { ContainerPort } from '../driver.ts';
import { PROTOCOLS, type Protocol } from './prober.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;
export const PORTS = [80, 81] as const;

export interface PortProtocol {
  port: number;
  protocol: Protocol;
}

/** Every port and protocol the pods serve. */
export const ALL_PORT_PROTOCOLS: readonly PortProtocol[] = PROTOCOLS.flatMap((protocol) =>
  PORTS.map((port) => ({ port, protocol })),
);

export function portProtocolKey(p: PortProtocol): string {
  return `${p.protocol}/${p.port}`;
}

/** Upstream's named container ports: serve-80-tcp, serve-81-udp, serve-80-sctp, ... */
export function namedPort(port: number, protocol: Protocol): string {
  return `serve-${port}-${protocol.toLowerCase()}`;
}

export function containerPorts(): ContainerPort[] {
  return ALL_PORT_PROTOCOLS.map(({ port, protocol }) => ({
    name: namedPort(port, protocol),
    containerPort: port,
    protocol,
  }));
}

export interface ModelPod {
  /** Logical namespace: x, y or z. */
  namespace: string;
  name: string;
  /** "x/a": the row and column name in the truth tables, and the server's answer. */
  key: string;
  labels: Record<string, string>;
}

export function podKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function modelPods(): ModelPod[] {
  return NAMESPACES.flatMap((namespace) =>
    POD_NAMES.map((name) => ({
      namespace,
      name,
      key: podKey(namespace, name),
      labels: { pod: name },
    })),
  );
}

export function namespaceLabels(namespace: string): Record<string, string> {
  return { ns: namespace };
}

/**
 * Spread the pods over the nodes round-robin (x/a on the first node, x/b on the
 * second, ...), so every kind of pair (same namespace or not, same node or not) occurs.
 */
export function placePods(
  pods: readonly ModelPod[],
  nodes: readonly string[],
): Map<string, string> {
  if (nodes.length === 0) throw new Error('no nodes to place the pods on');
  return new Map(pods.map((p, i) => [p.key, nodes[i % nodes.length] as string]));
}

/** An address family of the pods' addresses: the suite probes every one the cluster gives. */
export type Family = 4 | 6;

export function familyOf(ip: string): Family {
  return ip.includes(':') ? 6 : 4;
}

/** The key of one table: "IPv4 TCP/80", "IPv6 SCTP/81". */
export function familyPortKey(family: Family, p: PortProtocol): string {
  return `IPv${family} ${portProtocolKey(p)}`;
}

/** A host route's prefix of an address: "100.64.0.1/32", "2001:db8::1/128". */
export function hostCidr(ip: string): string {
  return `${ip}/${familyOf(ip) === 4 ? 32 : 128}`;
}

/**
 * The smallest CIDR (IPv4 or IPv6) that holds every address: an ipBlock that covers
 * all the pods whatever pool the cluster gives them. The addresses must be of one family.
 */
export function coveringCidr(ips: readonly string[]): string {
  const first = ips[0];
  if (first === undefined) throw new Error('coveringCidr of no addresses');
  const family = familyOf(first);
  if (ips.some((ip) => familyOf(ip) !== family))
    throw new Error(`coveringCidr of mixed families: ${ips.join(', ')}`);
  const bits = family === 4 ? 32 : 128;
  const nums = ips.map((ip) => (family === 4 ? ipv4ToBigInt(ip) : ipv6ToBigInt(ip)));
  const base = nums[0] as bigint;
  const masked = (n: bigint, prefix: number) =>
    (n >> BigInt(bits - prefix)) << BigInt(bits - prefix);
  let prefix = bits;
  while (prefix > 0 && nums.some((n) => masked(n, prefix) !== masked(base, prefix))) prefix--;
  const net = masked(base, prefix);
  return `${family === 4 ? bigIntToIpv4(net) : bigIntToIpv6(net)}/${prefix}`;
}

function ipv4ToBigInt(ip: string): bigint {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new Error(`not an IPv4 address: ${ip}`);
  return parts.reduce((acc, p) => acc * 256n + BigInt(p), 0n);
}

function bigIntToIpv4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => ((n >> s) & 255n).toString()).join('.');
}

function ipv6ToBigInt(ip: string): bigint {
  const halves = ip.split('::');
  const groups = (s: string | undefined) => (s ? s.split(':') : []);
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${ip}`);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(Math.max(fill, 0)).fill('0'), ...tail];
  if (all.length !== 8 || fill < 0 || all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g)))
    throw new Error(`not an IPv6 address: ${ip}`);
  return all.reduce((acc, g) => (acc << 16n) + BigInt(parseInt(g, 16)), 0n);
}

/** An IPv6 address in its canonical (RFC 5952) text. */
function bigIntToIpv6(n: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((n >> BigInt(112 - 16 * i)) & 0xffffn));
  // The longest run of two or more zero groups becomes "::".
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}
