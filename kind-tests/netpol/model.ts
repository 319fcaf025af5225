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

/**
 * The smallest IPv4 CIDR that holds every address: an ipBlock that covers all the
 * pods whatever pool the cluster gives them.
 */
export function coveringCidr(ips: readonly string[]): string {
  if (ips.length === 0) throw new Error('coveringCidr of no addresses');
  const nums = ips.map(ipv4ToNumber);
  let prefix = 32;
  const first = nums[0] as number;
  while (prefix > 0 && nums.some((n) => !samePrefix(n, first, prefix))) prefix--;
  return `${numberToIpv4(prefix === 0 ? 0 : maskTo(first, prefix))}/${prefix}`;
}

function ipv4ToNumber(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new Error(`not an IPv4 address: ${ip}`);
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

function maskTo(n: number, prefix: number): number {
  const size = 2 ** (32 - prefix);
  return Math.floor(n / size) * size;
}

function samePrefix(a: number, b: number, prefix: number): boolean {
  return maskTo(a, prefix) === maskTo(b, prefix);
}
