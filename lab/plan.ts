// The lab's address and naming plan, as pure functions so it is unit-tested and
// two labs side by side never collide: lab `index` k owns the underlay
// 198.18.k.0/24 (RFC 2544 test range); the bridge and the kube-apiserver sit on
// .1 and node i on .(10+i). Reference-plugin pods (before the wiremesh plugin
// is used) take 100.64.(k*16+i).0/24 inside the RFC 6598 range.
//
// IPv6 (`--ip-family dual|ipv6`): lab k's underlay is also 2001:db8:k::/64 (the
// documentation range, hex k), the bridge on ::1 and node i on ::(10+i) (hex, as
// the IPv4 host part reads in decimal); the IPv6 pod pool is LAB_POOL_V6, also in
// the documentation range and outside every lab's underlay, so it cannot collide
// with a real network or with another lab.
import ipaddr from 'ipaddr.js';

export const LAB_ROOT_RUN = '/run/wiremesh-lab';
export const LAB_ROOT_DATA = '/var/lib/wiremesh-lab';
export const MAX_LABS = 16;
export const MAX_NODES = 15;

/** Address families of a lab: the underlay's and the pod pools'. */
export type IpFamily = 'ipv4' | 'dual' | 'ipv6';
export const IP_FAMILIES: readonly IpFamily[] = ['ipv4', 'dual', 'ipv6'];

/** The IPv6 pod pool of a lab with IPv6 (documentation range, no lab's underlay). */
export const LAB_POOL_V6 = '2001:db8:64::/48';

export function validateIpFamily(v: string): IpFamily {
  const f = IP_FAMILIES.find((x) => x === v);
  if (!f) throw new Error(`invalid IP family '${v}': use one of ${IP_FAMILIES.join(', ')}`);
  return f;
}

const LAB_NAME = /^[a-z][a-z0-9]{0,7}$/;

export function validateLabName(name: string): string {
  if (!LAB_NAME.test(name)) {
    throw new Error(
      `invalid lab name '${name}': use 1-8 lower-case letters or digits, starting with a letter`,
    );
  }
  return name;
}

export function validateNodeCount(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_NODES) {
    throw new Error(`invalid node count ${n}: the lab runs 1 to ${MAX_NODES} nodes`);
  }
  return n;
}

export function validatePodsPerNode(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 50) {
    throw new Error(`invalid pods per node ${n}: use 0 to 50`);
  }
  return n;
}

/** The lowest lab index not in use. */
export function chooseLabIndex(used: Iterable<number>): number {
  const taken = new Set(used);
  for (let i = 0; i < MAX_LABS; i++) if (!taken.has(i)) return i;
  throw new Error(`all ${MAX_LABS} lab slots are in use; tear a lab down first`);
}

export interface NodePlan {
  /** Kubernetes Node name, e.g. `lab-node1`. */
  name: string;
  index: number;
  netns: string;
  /** Host side of the underlay veth (<= 15 characters). */
  hostVeth: string;
  underlayIP: string;
  /** Prefix length of underlayIP: 24, or 25 in a lab of two subnets. */
  prefixLength: number;
  /**
   * In a lab of two subnets: the other subnet, and the router's address on this
   * node's subnet that leads there.
   */
  crossSubnet?: { subnet: string; via: string };
  /** IPv6 underlay address (used when the lab has IPv6). */
  underlayIP6: string;
  /** Pod subnet for the reference bridge/host-local plugins. */
  bridgePodCIDR: string;
}

export interface LabPlan {
  name: string;
  index: number;
  bridge: string;
  gatewayIP: string;
  prefixLength: number;
  /** The bridge's IPv6 address (prefix length 64), when the lab has IPv6. */
  gatewayIP6: string;
  apiserverURL: string;
  nodes: NodePlan[];
  /**
   * A lab of two IPv4 subnets (198.18.K.0/25 and 198.18.K.128/25 on the one bridge,
   * as two VLANs would be) joined by a router namespace: a top-of-rack router with
   * its own BGP speaker. Absent in a lab of one subnet.
   */
  router?: RouterPlan;
  runDir: string;
  dataDir: string;
}

export interface RouterPlan {
  netns: string;
  hostVeth: string;
  /** Its address on each subnet, with prefix. */
  addresses: [string, string];
  /** The AS number of its BGP speaker. */
  asNumber: number;
}

/** The router's AS number in a lab of two subnets. */
export const LAB_ROUTER_AS = 65000;
/** The nodes' AS number (the agents' setting bgp-as) in a lab of two subnets. */
export const LAB_NODE_AS = 64512;

export function planLab(name: string, index: number, nodeCount: number, subnets = 1): LabPlan {
  validateLabName(name);
  validateNodeCount(nodeCount);
  if (subnets !== 1 && subnets !== 2) throw new Error(`a lab has 1 or 2 subnets, not ${subnets}`);
  if (!Number.isInteger(index) || index < 0 || index >= MAX_LABS) {
    throw new Error(`lab index ${index} out of range`);
  }
  const gatewayIP = `198.18.${index}.1`;
  const v6 = (host: number) => ipaddr.parse(`2001:db8:${index.toString(16)}::${host}`).toString();
  const nodes: NodePlan[] = [];
  // Two subnets: the first half of the nodes on the lower /25, the rest on the upper.
  const lower = subnets === 2 ? Math.ceil(nodeCount / 2) : nodeCount;
  const routerIPs = [`198.18.${index}.126`, `198.18.${index}.254`] as const;
  for (let i = 1; i <= nodeCount; i++) {
    const upper = i > lower;
    nodes.push({
      name: `${name}-node${i}`,
      index: i,
      netns: `wml-${name}-node${i}`,
      hostVeth: `wml-${name}-${i}`,
      underlayIP: `198.18.${index}.${(upper ? 128 : 0) + 10 + i}`,
      prefixLength: subnets === 2 ? 25 : 24,
      ...(subnets === 2
        ? {
            crossSubnet: {
              subnet: `198.18.${index}.${upper ? 0 : 128}/25`,
              via: routerIPs[upper ? 1 : 0],
            },
          }
        : {}),
      underlayIP6: v6(10 + i),
      bridgePodCIDR: `100.64.${index * 16 + i}.0/24`,
    });
  }
  return {
    name,
    index,
    bridge: `wml-${name}-br`,
    gatewayIP,
    prefixLength: 24,
    gatewayIP6: v6(1),
    apiserverURL: `https://${gatewayIP}:6443`,
    nodes,
    ...(subnets === 2
      ? {
          router: {
            netns: `wml-${name}-rtr`,
            hostVeth: `wml-${name}-r`,
            addresses: [`${routerIPs[0]}/25`, `${routerIPs[1]}/25`],
            asNumber: LAB_ROUTER_AS,
          },
        }
      : {}),
    runDir: `${LAB_ROOT_RUN}/${name}`,
    dataDir: `${LAB_ROOT_DATA}/${name}`,
  };
}

/** Whether a network namespace belongs to a lab (its nodes' `wml-` or its pods' `wmp-`). */
export function labOwnsNetns(lab: string, netns: string): boolean {
  return netns.startsWith(`wml-${lab}-`) || netns.startsWith(`wmp-${lab}-`);
}

/** Whether a link in the host namespace belongs to a lab (bridge and node veths). */
export function labOwnsLink(lab: string, link: string): boolean {
  return link.startsWith(`wml-${lab}-`);
}

/** Network namespace of a pod: unique per lab, pod namespace and pod name. */
export function podNetnsName(lab: string, namespace: string, pod: string): string {
  return `wmp-${lab}-${namespace}-${pod}`;
}

export function podName(node: NodePlan, j: number): string {
  return `${node.name}-pod${j}`;
}

/** Directories that are private to each node (bind-mounted in its mount namespace). */
export const NODE_PRIVATE_DIRS = [
  '/var/lib/wiremesh',
  '/run/wiremesh',
  '/run/wireguard',
  '/etc/cni/net.d',
  '/opt/cni/bin',
  '/var/lib/cni',
] as const;

/** A node's private directory for `dir`, e.g. /var/lib/wiremesh-lab/lab/nodes/lab-node1/etc_cni_net.d */
export function nodePrivateDir(plan: LabPlan, node: NodePlan, dir: string): string {
  return `${plan.dataDir}/nodes/${node.name}/${dir.replace(/^\//, '').replaceAll('/', '_')}`;
}
