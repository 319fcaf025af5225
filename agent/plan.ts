// The mesh planner: a pure function from a snapshot of the cluster's nodes to the
// desired WireGuard device, peers and routes of one node, plus the nodes it refused
// and why. No I/O, no clock: the agent, `wiremesh plan` and the benchmarks share it.
//
// Addresses routed to a peer never come from its annotations. Until IPAM lands,
// each node's tunnel address is derived here: a hash of its name picks a slot in
// the tunnel CIDR, and collisions are resolved by linear probing in order of
// creation time (then name), so every agent computes the same assignment and an
// existing node keeps its address when another joins.
//
// Node addresses: a peer's AllowedIPs also hold its node addresses (the InternalIPs of
// its Node status, which host encryption already routes by; never annotations).
// Without them the mesh drops a node's reply to a remote pod whose block it reaches
// through WireGuard: a hostNetwork server or an apiserver answers from its node
// address. They are accepted from the peer and routed to it only where something asks
// (host encryption here; an encrypted pool's own traffic in agent/paths.ts), never by
// a main-table route, which would carry WireGuard's own packets into the tunnel. An
// address claimed by two nodes, or inside a pod range or the tunnel range, is given
// to no peer and reported (trustedNodeAddresses), so a node cannot pull another
// node's or a pod's traffic by reporting its address.
//
// IPv6 inside the tunnel: once any IPv6 pod block exists, each node also gets an IPv6
// tunnel address, its IPv4 one embedded in the last 32 bits of TUNNEL_PREFIX_V6 (so
// it is as unique as the IPv4 one and needs no setting). It is the source of the
// node's routes to IPv6 blocks (a route's src must be of its family) and part of its
// peers' AllowedIPs. A cluster without IPv6 blocks plans exactly as before.
import { createHash } from 'node:crypto';
import type { MeshNode, ProblemReason } from './meshnode.ts';
import { parseCidr, cidrSize, fromBigInt, hostCidr, CidrMatcher } from './cidr.ts';
import { pathMtu } from './mtu.ts';
import {
  WIREGUARD_DEVICE,
  WIREGUARD_FWMARK,
  HOST_ROUTE_TABLE,
  HOST_RULE_PRIORITY,
} from './annotations.ts';
import { formatEndpoint } from './endpoint.ts';

export interface MeshSettings {
  listenPort: number;
  tunnelCIDR: string;
  hostMtu: number;
  /** Address family of the underlay (the nodes' InternalIPs), for the MTU overhead. */
  underlayFamily: 4 | 6;
  /**
   * Route host-to-host traffic through the mesh too. Applies to a pair only when both
   * nodes say so, so it can be switched on node by node without breaking anything.
   */
  hostEncryption?: boolean;
}

export interface MeshInput {
  self: string;
  selfPublicKey: string;
  nodes: readonly MeshNode[];
  settings: MeshSettings;
  /**
   * Pod address blocks by owning node, from the IPAMBlock objects in the API: what a
   * peer is routed, besides its tunnel address. Never taken from a node's annotations.
   */
  blocks?: ReadonlyMap<string, readonly string[]>;
  /**
   * Pod ranges (the IP pools' CIDRs) where no block exists yet: never taken as a node
   * address. The blocks and the tunnel ranges always count.
   */
  podRanges?: readonly string[];
  /**
   * When this agent first saw each node publish its current key (ms since the epoch;
   * agent/meshnode.ts KeyObservations). Of several nodes claiming one key, the first
   * to publish it keeps it (duplicateKeyLosers).
   */
  keySeen?: ReadonlyMap<string, number>;
}

/**
 * The mesh's IPv6 tunnel prefix: a unique local /96 (RFC 4193, with a randomly chosen
 * global ID, so it does not collide with another site's ULAs).
 */
export const TUNNEL_PREFIX_V6 = 'fd5e:7a11:3c8b:ffff::/96';

/** A node's IPv6 tunnel address, from its (IPv4) tunnel address; an IPv6 one is kept. */
export function tunnelAddress6(address: string): string {
  if (address.includes(':')) return address;
  const v4 = parseCidr(`${address}/32`).base;
  return fromBigInt(parseCidr(TUNNEL_PREFIX_V6).base + v4, 6);
}

export interface PeerPlan {
  node: string;
  publicKey: string;
  endpoint: string | null;
  allowedIPs: string[];
  persistentKeepalive: number;
}

export interface RoutePlan {
  dst: string;
  dev: string;
  src: string;
  table?: number;
}

export interface RulePlan {
  family: 4 | 6;
  priority: number;
  notFwmark: number;
  table: number;
}

/** Why a node address is given to no peer (see trustedNodeAddresses). */
export type NodeAddressReason = 'DuplicateNodeAddress' | 'ReservedNodeAddress';

export interface RefusedNode {
  node: string;
  reason: ProblemReason | NodeAddressReason;
  message: string;
}

export interface MeshPlan {
  device: {
    name: string;
    listenPort: number;
    mtu: number;
    address: string;
    /** The IPv6 tunnel address (/128), when the cluster has IPv6 blocks. */
    address6?: string;
    fwmark: number;
  };
  tunnelAddress: string;
  tunnelAddress6?: string;
  peers: PeerPlan[];
  routes: RoutePlan[];
  /** Host-to-host encryption: peers' node addresses in HOST_ROUTE_TABLE, and the rules to reach it. */
  hostRoutes: RoutePlan[];
  hostRules: RulePlan[];
  refused: RefusedNode[];
}

/** Deterministic tunnel address per node name (see the module comment). */
export function assignTunnelAddresses(
  nodes: readonly Pick<MeshNode, 'name' | 'createdAt'>[],
  tunnelCIDR: string,
): Map<string, string> {
  const cidr = parseCidr(tunnelCIDR);
  const size = cidrSize(cidr);
  const reserved = cidr.family === 4 ? 2n : 1n; // network and broadcast / subnet-router anycast
  const usable = size - reserved;
  if (usable < BigInt(nodes.length)) {
    throw new Error(
      `tunnel CIDR ${tunnelCIDR} has room for ${usable} nodes, the cluster has ${nodes.length}`,
    );
  }
  const ordered = [...nodes].sort(
    (a, b) => a.createdAt - b.createdAt || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const taken = new Set<bigint>();
  const result = new Map<string, string>();
  for (const node of ordered) {
    let slot = hashSlot(node.name, usable);
    while (taken.has(slot)) slot = (slot + 1n) % usable;
    taken.add(slot);
    result.set(node.name, fromBigInt(cidr.base + 1n + slot, cidr.family));
  }
  return result;
}

function hashSlot(name: string, usable: bigint): bigint {
  const digest = createHash('sha256').update(name).digest();
  return digest.readBigUInt64BE(0) % usable;
}

/** What trustedNodeAddresses takes of a node: its name and its InternalIPs. */
export interface NodeAddressClaim {
  name: string;
  addresses: readonly string[];
}

/**
 * The node addresses each node's peer may be routed and accepted: its InternalIPs,
 * less any address another node (this one included) also reports, or that lies in
 * `reserved` (pod blocks and pools, tunnel addresses). Those are given to no peer,
 * and each claimant but `self` is reported. Shared by the mesh planner (AllowedIPs,
 * host encryption) and the path planner (an encrypted pool's routes to node addresses),
 * so both trust the same addresses.
 */
export function trustedNodeAddresses(
  nodes: readonly NodeAddressClaim[],
  reserved: readonly string[],
  self: string,
): { byNode: Map<string, string[]>; refused: RefusedNode[] } {
  const reservedRanges = new CidrMatcher(reserved);
  const claims = new Map<string, string[]>();
  for (const n of nodes)
    for (const a of new Set(n.addresses)) claims.set(a, [...(claims.get(a) ?? []), n.name]);
  const byNode = new Map<string, string[]>();
  const refused: RefusedNode[] = [];
  for (const n of nodes) {
    const trusted: string[] = [];
    for (const a of new Set(n.addresses)) {
      const others = (claims.get(a) ?? []).filter((x) => x !== n.name).sort();
      const range = reservedRanges.find(a);
      if (others.length === 0 && range === undefined) {
        trusted.push(a);
        continue;
      }
      if (n.name === self) continue;
      refused.push(
        others.length
          ? {
              node: n.name,
              reason: 'DuplicateNodeAddress',
              message: `its InternalIP ${a} is also reported by ${others.join(', ')}: the address is routed to neither`,
            }
          : {
              node: n.name,
              reason: 'ReservedNodeAddress',
              message: `its InternalIP ${a} lies in the pod or tunnel range ${range}: the address is not routed to it`,
            },
      );
    }
    byNode.set(n.name, trusted);
  }
  return { byNode, refused };
}

/**
 * Nodes refused for publishing a key another node holds, with the reason. A key is
 * the node's WireGuard identity: packets from it are accepted as that node's, and
 * its AllowedIPs are routed to it. Copying another node's key gains nothing but the
 * victim's exclusion, and refusing both claimants (as before) handed every
 * compromised node that exclusion. So one claimant keeps the key:
 * - this node's own key is always this node's (it holds the private key);
 * - else the node this agent saw publish it first. A key is made on its node and
 *   is secret until that node publishes it, so the honest node publishes first and
 *   a copy comes later: every agent that was running then keeps the honest node;
 * - seen at once (an agent starting, or both in one list), the older Node
 *   (creationTimestamp, set by the apiserver, then the name), as tunnel addresses
 *   are decided. Only then can a copy by an older node win, on that agent alone,
 *   until the honest node publishes a new key (rotate-key).
 */
export function duplicateKeyLosers(
  input: Pick<MeshInput, 'self' | 'selfPublicKey' | 'nodes' | 'keySeen'>,
): Map<string, string> {
  const claims = new Map<string, MeshNode[]>();
  for (const n of input.nodes) {
    if (n.name === input.self || !n.publicKey) continue;
    claims.set(n.publicKey, [...(claims.get(n.publicKey) ?? []), n]);
  }
  const seen = (n: MeshNode) => input.keySeen?.get(n.name) ?? 0;
  const losers = new Map<string, string>();
  for (const [key, nodes] of claims) {
    if (key === input.selfPublicKey) {
      for (const n of nodes)
        losers.set(n.name, `its WireGuard public key is ${input.self}'s own; it is not programmed`);
      continue;
    }
    if (nodes.length < 2) continue;
    const [first, ...rest] = [...nodes].sort(
      (a, b) =>
        seen(a) - seen(b) ||
        a.createdAt - b.createdAt ||
        (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    );
    for (const n of rest)
      losers.set(
        n.name,
        `its WireGuard public key was published first by ${first?.name ?? '?'}, which keeps it; ${n.name} is not programmed`,
      );
  }
  return losers;
}

export function planMesh(input: MeshInput): MeshPlan {
  const { self, settings } = input;
  parseCidr(settings.tunnelCIDR); // fail early on a bad setting
  const refused: RefusedNode[] = [];
  for (const n of input.nodes) for (const p of n.problems) refused.push({ node: n.name, ...p });

  const losers = duplicateKeyLosers(input);
  for (const [name, message] of losers)
    refused.push({ node: name, reason: 'DuplicatePublicKey', message });

  const addresses = assignTunnelAddresses(
    input.nodes.some((n) => n.name === self)
      ? input.nodes
      : [...input.nodes, { name: self, createdAt: Number.MAX_SAFE_INTEGER }],
    settings.tunnelCIDR,
  );
  const selfAddress = addresses.get(self);
  if (!selfAddress) throw new Error(`no tunnel address for ${self}`);

  const ipv6 = [...(input.blocks?.values() ?? [])].some((bs) => bs.some((b) => b.includes(':')));
  const selfAddress6 = ipv6 ? tunnelAddress6(selfAddress) : undefined;
  const srcFor = (dst: string) => (dst.includes(':') && selfAddress6) || selfAddress;

  const selfNode = input.nodes.find((n) => n.name === self);
  const selfInternal = selfNode?.internalIPs ?? [];
  const allBlocks = [...(input.blocks?.values() ?? [])].flat();
  const nodeAddresses = trustedNodeAddresses(
    input.nodes.map((n) => ({ name: n.name, addresses: n.internalIPs })),
    [settings.tunnelCIDR, TUNNEL_PREFIX_V6, ...allBlocks, ...(input.podRanges ?? [])],
    self,
  );
  refused.push(...nodeAddresses.refused);
  const peers: PeerPlan[] = [];
  const routedTo = new Map<string, string[]>();
  const hostRoutes: RoutePlan[] = [];
  for (const n of input.nodes) {
    if (n.name === self || !n.publicKey || losers.has(n.name)) continue;
    const endpoint =
      n.endpointOverride ??
      n.endpoint ??
      (n.internalIPs[0] ? formatEndpoint(n.internalIPs[0], settings.listenPort) : null);
    if (!endpoint && n.persistentKeepalive === 0) {
      refused.push({
        node: n.name,
        reason: 'NoEndpoint',
        message:
          'it has no endpoint, no InternalIP and no keepalive; it is programmed without an endpoint',
      });
    }
    const address = addresses.get(n.name);
    if (!address) continue;
    const podBlocks = [...(input.blocks?.get(n.name) ?? [])].sort();
    // What the main table routes to the peer: its tunnel addresses and pod blocks.
    const routed = [
      hostCidr(address),
      ...(ipv6 && !address.includes(':') ? [hostCidr(tunnelAddress6(address))] : []),
      ...podBlocks,
    ];
    routedTo.set(n.name, routed);
    const hostAddresses = nodeAddresses.byNode.get(n.name) ?? [];
    const hostEncrypted = settings.hostEncryption && n.hostEncryption;
    for (const ip of hostEncrypted ? hostAddresses : []) {
      const family = ip.includes(':') ? 6 : 4;
      const src = selfInternal.find((s) => (s.includes(':') ? 6 : 4) === family);
      if (src)
        hostRoutes.push({ dst: hostCidr(ip), dev: WIREGUARD_DEVICE, src, table: HOST_ROUTE_TABLE });
    }
    peers.push({
      node: n.name,
      publicKey: n.publicKey,
      endpoint,
      allowedIPs: [...routed, ...hostAddresses.map(hostCidr)],
      persistentKeepalive: n.persistentKeepalive,
    });
  }
  peers.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const routes: RoutePlan[] = peers.flatMap((p) =>
    (routedTo.get(p.node) ?? []).map((dst) => ({ dst, dev: WIREGUARD_DEVICE, src: srcFor(dst) })),
  );
  const families = new Set(selfInternal.map((ip) => (ip.includes(':') ? 6 : 4)));
  const hostRules: RulePlan[] = settings.hostEncryption
    ? [...families].sort().map((family) => ({
        family,
        priority: HOST_RULE_PRIORITY,
        notFwmark: WIREGUARD_FWMARK,
        table: HOST_ROUTE_TABLE,
      }))
    : [];
  return {
    device: {
      name: WIREGUARD_DEVICE,
      listenPort: settings.listenPort,
      mtu: pathMtu(settings.hostMtu, 'wireguard', settings.underlayFamily),
      address: hostCidr(selfAddress),
      ...(selfAddress6 && selfAddress6 !== selfAddress ? { address6: hostCidr(selfAddress6) } : {}),
      fwmark: WIREGUARD_FWMARK,
    },
    tunnelAddress: selfAddress,
    ...(selfAddress6 ? { tunnelAddress6: selfAddress6 } : {}),
    peers,
    routes,
    hostRoutes: hostRoutes.sort((a, b) => (a.dst < b.dst ? -1 : 1)),
    hostRules,
    refused: refused.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0)),
  };
}
