// The path planner: a pure function from a snapshot (this node, the other nodes, the
// IP pools, the IPAM blocks, which encapsulations this kernel has) to the path every
// remote pod block takes from this node, and why; the desired state of the VXLAN,
// IP-in-IP and native drivers (tunnels/); the policy routing that sends an encrypted
// pool's own traffic into WireGuard; the nftables fragment (built in pathnft.ts) that
// keeps a Required pool's traffic from ever leaving in plaintext, and the masquerade
// for natOutgoing; and the pod MTU. No I/O, no clock: the agent, `wiremesh plan` and tests share it.
//
// Rules it follows (issue #5, DESIGN.md):
// - Encryption is a property of the pool, and traffic is encrypted when either end's
//   pool asks for it. Destination: the main-table route of a remote block follows its
//   pool. Source: every pool with encryption WireGuard has a rule
//   `from POOL lookup ENCRYPT_ROUTE_TABLE` (priority ENCRYPT_RULE_PRIORITY); that
//   table routes every remote block whose node has a usable WireGuard peer via the
//   WireGuard device, so such a pool's pods are encrypted whatever the far pool says,
//   and fall through to the main table for a peer without one.
// - A peer without a usable key (none, refused, duplicated) or no WireGuard on this
//   node: a Preferred pool falls back to its encapsulation (an event says so); a
//   Required pool is blocked. Blocking is enforced in nftables, not by the absence of
//   a route: `encrypt-forward` / `encrypt-output` drop every packet from or to a
//   Required pool, bound for a remote block, that would leave other than through the
//   WireGuard device. That holds through any routing race or misconfiguration.
// - An encapsulation this kernel lacks (IP-in-IP here), or one that cannot carry the
//   block (IP-in-IP and IPv6; VXLAN without a VTEP address of the block's family at
//   both ends): WireGuard if the peer has it, else native routing; an event says so.
//   VTEP addresses are the tunnel addresses: an IPv4 one, and where IPv6 blocks exist
//   its IPv6 twin (agent/plan.ts tunnelAddress6), so IPv6 blocks take VXLAN too.
// - CrossSubnet variants encapsulate only towards nodes outside this node's subnets.
//   Native routing installs `via REMOTE_UNDERLAY dev UNDERLAY` only on a shared
//   subnet; across subnets the underlay must route pod addresses itself (no route).
// - Other nodes' own addresses (a hostNetwork server, an apiserver behind the
//   `kubernetes` Service): an encrypted pool's pods reach them through WireGuard too,
//   as the source pool asks: the encrypt table routes every WireGuard peer's node
//   addresses (the ones agent/plan.ts trusts into its AllowedIPs), so the rule exists
//   whenever an encrypted pool has a remote peer. The far node's reply comes back
//   through WireGuard by its route to this node's block. Without a usable peer a
//   Preferred pool reaches the address over the underlay in plaintext (an event says
//   so); a Required pool's traffic to any other node's address is dropped by the same
//   nftables guard as its traffic to remote blocks. Pools without encryption reach
//   node addresses over the underlay, unchanged (natOutgoing masquerades as before).
//   Not SNAT to this node's address as Calico's natOutgoing does: that would send an
//   encrypted pool's traffic in plaintext, hide the pod from the far node, and put a
//   NAT hook on every node (about 14% of a pod stream here).
// - Without encryption the path is chosen by the destination on each side, so A->B
//   may take B's pool's encapsulation and B->A A's: the agent sets rp_filter loose
//   (2) on the tunnel devices so such replies are not dropped.
import { cidrContains, hostCidr, parseCidr } from './cidr.ts';
import { tunnelAddress6, trustedNodeAddresses } from './plan.ts';
import type { IpPool, IpamBlock } from '../ipam/types.ts';
import type { NftTable } from '../nftables/model.ts';
import { planPathNft } from './pathnft.ts';
import {
  ENCRYPT_ROUTE_TABLE,
  ENCRYPT_RULE_PRIORITY,
  WIREGUARD_DEVICE_NAME,
  encapsulation,
  encapsulationMtu,
  type EncapState,
  type EncapsulationKind,
} from '../tunnels/index.ts';

export type PathPool = Pick<
  IpPool,
  'name' | 'cidr' | 'encryption' | 'encryptionMode' | 'encapsulation' | 'natOutgoing'
>;
export type PathBlock = Pick<IpamBlock, 'cidr' | 'node' | 'pool'>;

export interface PathNode {
  name: string;
  /** Underlay addresses (the Node's InternalIPs). */
  underlayIPs: readonly string[];
  /**
   * The node is a programmed WireGuard peer (valid, unduplicated key): planMesh
   * put it in MeshPlan.peers. Ignored for this node itself.
   */
  wireguardPeer: boolean;
}

export interface PathInput {
  self: string;
  /** Subnets of this node's underlay interfaces, e.g. ['198.18.0.0/16'], for CrossSubnet. */
  selfSubnets: readonly string[];
  /** Every node, this one included. */
  nodes: readonly PathNode[];
  pools: readonly PathPool[];
  blocks: readonly PathBlock[];
  /** What this node can use (tunnels/ probeEncapsulations); absent kinds are unavailable. */
  available: Partial<Record<EncapsulationKind, { available: boolean; detail: string }>>;
  /** Mesh tunnel address by node (agent/plan.ts assignTunnelAddresses): the VTEP addresses. */
  tunnelAddresses: ReadonlyMap<string, string>;
  hostMtu: number;
  underlayFamily: 4 | 6;
  /**
   * Ranges reached only through wiremesh.wg (multicluster/: other clusters' imported
   * blocks, Peer objects' allowed IPs). They are never plaintext destinations: no
   * natOutgoing masquerade towards them, and a Required pool's traffic to them is
   * dropped unless it leaves through WireGuard.
   */
  meshRanges?: readonly string[];
}

export type Path = 'wireguard' | 'vxlan' | 'ipip' | 'native' | 'blocked';

export type PathEventReason =
  'EncryptionFallback' | 'EncryptionRequiredBlocked' | 'EncapsulationUnavailable' | 'UnknownNode';

/** Something an operator should hear about: one log line and one Event each. */
export interface PathEvent {
  reason: PathEventReason;
  /** The remote node concerned. */
  node: string;
  pool: string;
  message: string;
}

export interface PathDecision {
  path: Path;
  reason: string;
  /** For native: the next hop on the underlay, or null when the underlay must route it. */
  gateway?: string | null;
}

export interface BlockPath extends PathDecision {
  cidr: string;
  node: string;
  pool: string;
  /** Local source pools whose traffic to this block takes another path (policy routing or a drop). */
  fromPools: Record<string, PathDecision>;
}

/** The path of an encrypted pool's traffic to another node's own address. */
export interface NodeAddressPath {
  node: string;
  address: string;
  /**
   * By encrypted source pool of the address's family: wireguard; blocked (Required,
   * no usable peer); native (Preferred, no usable peer: plaintext over the underlay).
   */
  fromPools: Record<string, PathDecision>;
}

export interface SourceRoute {
  dst: string;
  dev: string;
  src: string;
  table: number;
}

export interface SourceRule {
  family: 4 | 6;
  priority: number;
  from: string;
  table: number;
}

export interface PathPlan {
  /** Every remote block, by CIDR. */
  blocks: BlockPath[];
  /** Other nodes' own addresses, for the encrypted pools (see the module comment). */
  nodeAddresses: NodeAddressPath[];
  /** Remote blocks whose main-table route goes through WireGuard: MeshPlan.routes should carry only these. */
  wireguardBlocks: string[];
  /** Desired state for tunnels/ VxlanDriver and IpipDriver; null removes the device. */
  vxlan: EncapState | null;
  ipip: EncapState | null;
  /** Desired state for tunnels/ NativeDriver (always present; no peers removes its routes). */
  native: EncapState;
  /**
   * Policy routing of encrypted source pools: routes in ENCRYPT_ROUTE_TABLE (remote
   * blocks and node addresses of WireGuard peers) and the rules.
   */
  encryptRoutes: SourceRoute[];
  encryptRules: SourceRule[];
  /** Chains encrypt-forward, encrypt-output, nat-postrouting and their sets. */
  nft: NftTable;
  mtu: {
    /** Device MTUs of the paths. */
    devices: Record<EncapsulationKind, number>;
    /** Pod MTU by pool: the smallest over every path its pods can take. */
    byPool: Record<string, number>;
    /** The smallest of those (the hostMtu when there is no pool). */
    pod: number;
  };
  events: PathEvent[];
}

/** The CRD's defaults, for a block whose pool is gone. */
const DEFAULT_POOL: Omit<PathPool, 'name' | 'cidr'> = {
  encryption: 'WireGuard',
  encryptionMode: 'Preferred',
  encapsulation: 'None',
  natOutgoing: false,
};

/** What the decision for one (source pool, destination pool) pair depends on. */
interface PairContext {
  node: string;
  /** The remote node is a WireGuard peer and this node has WireGuard. */
  wireguard: boolean;
  /** Why not, when not. */
  wireguardWhyNot: string;
  sameSubnet: boolean;
  blockFamily: 4 | 6;
  remoteUnderlay: string | null;
  /** Families in which both ends have a VTEP address. */
  vtepFamilies: readonly (4 | 6)[];
  /** Why not, for the block's family, when not. */
  vtepWhyNot: string;
  available: PathInput['available'];
  underlayFamily: 4 | 6;
}

const familyOf = (address: string): 4 | 6 => (address.includes(':') ? 6 : 4);

function availableKind(ctx: PairContext, kind: EncapsulationKind): string | null {
  if (!ctx.remoteUnderlay) return `${ctx.node} has no IPv${ctx.underlayFamily} underlay address`;
  const a = ctx.available[kind];
  if (!a?.available) return a ? a.detail : `${kind} was not probed on this node`;
  if (!encapsulation(kind).carries(ctx.blockFamily, ctx.underlayFamily))
    return `${kind} cannot carry IPv${ctx.blockFamily} over an IPv${ctx.underlayFamily} underlay`;
  if (kind === 'vxlan' && !ctx.vtepFamilies.includes(ctx.blockFamily)) return ctx.vtepWhyNot;
  return null;
}

function native(ctx: PairContext, why: string): PathDecision {
  if (ctx.sameSubnet && ctx.remoteUnderlay && familyOf(ctx.remoteUnderlay) === ctx.blockFamily)
    return { path: 'native', reason: why, gateway: ctx.remoteUnderlay };
  return {
    path: 'native',
    reason: `${why}; ${ctx.node} is not on this node's subnet, so the underlay must route it`,
    gateway: null,
  };
}

/** The pool's encapsulation towards ctx.node, or the best available instead. */
function encapsulated(pool: PathPool, ctx: PairContext, events: PathEvent[]): PathDecision {
  const enc = pool.encapsulation;
  if (enc === 'None') return native(ctx, `pool ${pool.name} asks for no encapsulation`);
  const kind: EncapsulationKind = enc.startsWith('VXLAN') ? 'vxlan' : 'ipip';
  const label = kind === 'vxlan' ? 'VXLAN' : 'IP-in-IP';
  if (enc.endsWith('CrossSubnet') && ctx.sameSubnet)
    return native(ctx, `pool ${pool.name} encapsulates only across subnets (${enc})`);
  const missing = availableKind(ctx, kind);
  if (missing === null) return { path: kind, reason: `pool ${pool.name} asks for ${label}` };
  const instead = ctx.wireguard ? 'WireGuard' : 'native routing';
  events.push({
    reason: 'EncapsulationUnavailable',
    node: ctx.node,
    pool: pool.name,
    message: `pool ${pool.name} asks for ${label} towards ${ctx.node}, unavailable: ${missing}; using ${instead}`,
  });
  const why = `pool ${pool.name} asks for ${label}, unavailable (${missing})`;
  return ctx.wireguard ? { path: 'wireguard', reason: why } : native(ctx, why);
}

/** The main-table path of a block of `pool`: decided by the destination. */
function destinationPath(pool: PathPool, ctx: PairContext, events: PathEvent[]): PathDecision {
  if (pool.encryption === 'None') return encapsulated(pool, ctx, events);
  if (ctx.wireguard) return { path: 'wireguard', reason: `pool ${pool.name} asks for encryption` };
  if (pool.encryptionMode === 'Required') {
    const message = `pool ${pool.name} requires encryption and ${ctx.wireguardWhyNot}: its traffic with ${ctx.node} is dropped`;
    events.push({ reason: 'EncryptionRequiredBlocked', node: ctx.node, pool: pool.name, message });
    return { path: 'blocked', reason: message };
  }
  const fallback = encapsulated(pool, ctx, events);
  const message = `pool ${pool.name} prefers encryption but ${ctx.wireguardWhyNot}: falls back to ${fallback.path}`;
  events.push({ reason: 'EncryptionFallback', node: ctx.node, pool: pool.name, message });
  return { ...fallback, reason: `${message} (${fallback.reason})` };
}

/** The path of traffic from a pod of `source` (on this node) to a block of `dest`. */
function pairPath(
  source: PathPool,
  dest: PathPool,
  ctx: PairContext,
  events: PathEvent[],
): PathDecision {
  const d = destinationPath(dest, ctx, events);
  if (d.path === 'wireguard' || source.encryption === 'None') return d;
  if (ctx.wireguard)
    return { path: 'wireguard', reason: `source pool ${source.name} asks for encryption` };
  if (source.encryptionMode === 'Required') {
    const message = `pool ${source.name} requires encryption and ${ctx.wireguardWhyNot}: its traffic with ${ctx.node} is dropped`;
    events.push({
      reason: 'EncryptionRequiredBlocked',
      node: ctx.node,
      pool: source.name,
      message,
    });
    return { path: 'blocked', reason: message };
  }
  if (d.path !== 'blocked') {
    const message = `pool ${source.name} prefers encryption but ${ctx.wireguardWhyNot}: its traffic to pool ${dest.name} takes ${d.path}`;
    events.push({ reason: 'EncryptionFallback', node: ctx.node, pool: source.name, message });
  }
  return d;
}

/** The path of traffic from a pod of encrypted `source` to ctx.node's own address. */
function nodeAddressPath(
  source: PathPool,
  ctx: PairContext,
  whyNot: string | null,
  events: PathEvent[],
): PathDecision {
  if (whyNot === null)
    return { path: 'wireguard', reason: `source pool ${source.name} asks for encryption` };
  if (source.encryptionMode === 'Required') {
    const message = `pool ${source.name} requires encryption and ${whyNot}: its traffic with ${ctx.node} is dropped`;
    events.push({
      reason: 'EncryptionRequiredBlocked',
      node: ctx.node,
      pool: source.name,
      message,
    });
    return { path: 'blocked', reason: message };
  }
  const message = `pool ${source.name} prefers encryption but ${whyNot}: its traffic to ${ctx.node}'s node address crosses the underlay in plaintext`;
  events.push({ reason: 'EncryptionFallback', node: ctx.node, pool: source.name, message });
  return { path: 'native', reason: message, gateway: null };
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function sameDecision(a: PathDecision, b: PathDecision): boolean {
  return a.path === b.path && (a.gateway ?? null) === (b.gateway ?? null);
}

export function planPaths(input: PathInput): PathPlan {
  const { self } = input;
  const selfNode = input.nodes.find((n) => n.name === self);
  if (!selfNode) throw new Error(`node ${self} is not among the nodes`);
  const localUnderlay = selfNode.underlayIPs.find((a) => familyOf(a) === input.underlayFamily);
  if (!localUnderlay) throw new Error(`node ${self} has no IPv${input.underlayFamily} address`);
  const selfVtep = input.tunnelAddresses.get(self);
  if (!selfVtep) throw new Error(`no tunnel address for ${self}`);
  // IPv6 VTEPs exist where IPv6 blocks do, as the IPv6 tunnel addresses (agent/plan.ts).
  const ipv6 = input.blocks.some((b) => b.cidr.includes(':'));
  const vtepsOf = (node: string): { 4?: string; 6?: string } => {
    const address = input.tunnelAddresses.get(node);
    if (!address) return {};
    if (familyOf(address) === 6) return { 6: address };
    return ipv6 ? { 4: address, 6: tunnelAddress6(address) } : { 4: address };
  };
  const selfVteps = vtepsOf(self);
  const subnets = input.selfSubnets.map(parseCidr);
  const nodes = new Map(input.nodes.map((n) => [n.name, n]));
  const pools = new Map(input.pools.map((p) => [p.name, p]));
  const poolOf = (name: string): PathPool => pools.get(name) ?? { name, cidr: '', ...DEFAULT_POOL };
  const wgHere = input.available.wireguard;
  const events: PathEvent[] = [];

  const contextFor = (nodeName: string, blockFamily: 4 | 6): PairContext => {
    const node = nodes.get(nodeName);
    const remoteUnderlay =
      node?.underlayIPs.find((a) => familyOf(a) === input.underlayFamily) ?? null;
    const wireguard = !!wgHere?.available && !!node?.wireguardPeer;
    const wireguardWhyNot = !wgHere?.available
      ? `WireGuard is unavailable on this node (${wgHere?.detail ?? 'not probed'})`
      : `${nodeName} has no usable WireGuard key`;
    const remoteVteps = vtepsOf(nodeName);
    const vtepFamilies = ([4, 6] as const).filter((f) => selfVteps[f] && remoteVteps[f]);
    const vtepWhyNot = !input.tunnelAddresses.has(nodeName)
      ? `${nodeName} has no VTEP (tunnel) address`
      : `no IPv${blockFamily} VTEP address (the tunnel addresses are IPv${familyOf(selfVtep)})`;
    return {
      node: nodeName,
      wireguard,
      wireguardWhyNot,
      sameSubnet: remoteUnderlay !== null && subnets.some((s) => cidrContains(s, remoteUnderlay)),
      blockFamily,
      remoteUnderlay,
      vtepFamilies,
      vtepWhyNot,
      available: input.available,
      underlayFamily: input.underlayFamily,
    };
  };

  const encryptedPools = input.pools.filter((p) => p.encryption === 'WireGuard');
  const blocks: BlockPath[] = [];
  for (const b of [...input.blocks].sort((x, y) => byString(x.cidr, y.cidr))) {
    if (b.node === self) continue;
    const pool = poolOf(b.pool);
    const family = familyOf(b.cidr.split('/')[0] ?? '');
    const node = nodes.get(b.node);
    if (!node) {
      const message = `block ${b.cidr} belongs to ${b.node}, which is not a node of the cluster; not routed`;
      events.push({ reason: 'UnknownNode', node: b.node, pool: pool.name, message });
      blocks.push({ ...b, path: 'blocked', reason: message, fromPools: {} });
      continue;
    }
    const ctx = contextFor(b.node, family);
    const decision = destinationPath(pool, ctx, events);
    if (!pools.has(b.pool)) decision.reason += ` (pool ${b.pool} not found: the CRD defaults)`;
    const fromPools: Record<string, PathDecision> = {};
    for (const source of encryptedPools) {
      if (familyOf(source.cidr.split('/')[0] ?? '') !== family) continue;
      const pair = pairPath(source, pool, ctx, events);
      if (!sameDecision(pair, decision)) fromPools[source.name] = pair;
    }
    blocks.push({ cidr: b.cidr, node: b.node, pool: b.pool, ...decision, fromPools });
  }

  const state = (kind: 'vxlan' | 'ipip' | 'native', all: boolean): EncapState => {
    const peers = [...nodes.values()]
      .filter((n) => n.name !== self)
      .flatMap((n) => {
        const underlayIP = n.underlayIPs.find((a) => familyOf(a) === input.underlayFamily);
        const vtepIP = input.tunnelAddresses.get(n.name);
        if (!underlayIP || !vtepIP) return [];
        const mine = blocks.filter((b) => b.node === n.name && b.path === kind);
        const routed = kind === 'native' ? mine.filter((b) => b.gateway) : mine;
        if (!all && routed.length === 0) return [];
        const vtepIP6 = kind === 'vxlan' ? vtepsOf(n.name)[6] : undefined;
        return [
          {
            node: n.name,
            underlayIP,
            vtepIP,
            ...(vtepIP6 && vtepIP6 !== vtepIP ? { vtepIP6 } : {}),
            blocks: routed.map((b) => b.cidr),
          },
        ];
      })
      .sort((a, b) => byString(a.node, b.node));
    const mtu =
      kind === 'native'
        ? input.hostMtu
        : encapsulationMtu(input.hostMtu, kind, input.underlayFamily);
    const vtepIP6 = kind === 'vxlan' ? selfVteps[6] : undefined;
    return {
      localUnderlayIP: localUnderlay,
      vtepIP: selfVtep,
      ...(vtepIP6 && vtepIP6 !== selfVtep ? { vtepIP6 } : {}),
      mtu,
      peers,
    };
  };
  // A device exists while any pool may use it (remote nodes may send through it even
  // when no route here does), with the FDB and neighbours of every node.
  const poolUses = (prefix: string) => input.pools.some((p) => p.encapsulation.startsWith(prefix));
  const vxlan = input.available.vxlan?.available && poolUses('VXLAN') ? state('vxlan', true) : null;
  const ipip = input.available.ipip?.available && poolUses('IPIP') ? state('ipip', false) : null;

  // Other nodes' own addresses: the ones agent/plan.ts trusts into its peers'
  // AllowedIPs (pod, pool and tunnel ranges reserved alike), by encrypted source pool.
  const tunnelRanges = [...input.tunnelAddresses.values()].flatMap((a) =>
    familyOf(a) === 4 ? [hostCidr(a), hostCidr(tunnelAddress6(a))] : [hostCidr(a)],
  );
  const trusted = trustedNodeAddresses(
    input.nodes.map((n) => ({ name: n.name, addresses: n.underlayIPs })),
    [...input.pools.map((p) => p.cidr), ...input.blocks.map((b) => b.cidr), ...tunnelRanges],
    self,
  ).byNode;
  const nodeAddresses: NodeAddressPath[] = [];
  for (const node of [...nodes.values()].sort((x, y) => byString(x.name, y.name))) {
    if (node.name === self) continue;
    for (const address of trusted.get(node.name) ?? []) {
      const family = familyOf(address);
      const ctx = contextFor(node.name, family);
      const whyNot = !ctx.wireguard
        ? ctx.wireguardWhyNot
        : selfVteps[family]
          ? null
          : `this node has no IPv${family} tunnel address (no IPv${family} pod block exists)`;
      const fromPools: Record<string, PathDecision> = {};
      for (const source of encryptedPools)
        if (familyOf(source.cidr.split('/')[0] ?? '') === family)
          fromPools[source.name] = nodeAddressPath(source, ctx, whyNot, events);
      if (Object.keys(fromPools).length)
        nodeAddresses.push({ node: node.name, address, fromPools });
    }
  }

  // Every remote block whose node is a WireGuard peer, and those peers' node addresses,
  // for the encrypted pools' own traffic.
  const encryptRoutes: SourceRoute[] =
    encryptedPools.length === 0 || !wgHere?.available
      ? []
      : [
          ...blocks
            .filter((b) => nodes.get(b.node)?.wireguardPeer)
            .map((b) => ({
              dst: b.cidr,
              dev: WIREGUARD_DEVICE_NAME,
              // An IPv6 block's route takes this node's IPv6 tunnel address (agent/plan.ts).
              src: familyOf(b.cidr) === 6 ? tunnelAddress6(selfVtep) : selfVtep,
              table: ENCRYPT_ROUTE_TABLE,
            })),
          ...nodeAddresses
            .filter((a) => Object.values(a.fromPools).some((d) => d.path === 'wireguard'))
            .map((a) => ({
              dst: hostCidr(a.address),
              dev: WIREGUARD_DEVICE_NAME,
              src: selfVteps[familyOf(a.address)] ?? selfVtep,
              table: ENCRYPT_ROUTE_TABLE,
            })),
        ];
  // A rule only for an encrypted pool whose traffic to some remote destination takes
  // another path than the main table's: a remote block whose own route is not
  // WireGuard, or a WireGuard peer's node address (the main table sends those over the
  // underlay). Any policy rule costs every forwarded packet of the node (the kernel
  // then walks the rules and the local table apart from main on each lookup): about
  // 6% of a pod stream over VXLAN or native routing here (bench/paths.ts).
  const divergent = new Set([
    ...blocks.flatMap((b) => Object.keys(b.fromPools)),
    ...nodeAddresses.flatMap((a) =>
      Object.entries(a.fromPools)
        .filter(([, d]) => d.path === 'wireguard')
        .map(([pool]) => pool),
    ),
  ]);
  const encryptRules: SourceRule[] = encryptedPools
    .filter((p) => divergent.has(p.name))
    .map((p) => ({
      family: familyOf(p.cidr.split('/')[0] ?? ''),
      priority: ENCRYPT_RULE_PRIORITY,
      from: p.cidr,
      table: ENCRYPT_ROUTE_TABLE,
    }))
    .sort((a, b) => byString(a.from, b.from));

  return {
    blocks,
    nodeAddresses,
    wireguardBlocks: blocks.filter((b) => b.path === 'wireguard').map((b) => b.cidr),
    vxlan,
    ipip,
    native: state('native', false),
    encryptRoutes,
    encryptRules,
    nft: planPathNft(input.pools, {
      remoteBlocks: blocks.map((b) => b.cidr),
      meshRanges: input.meshRanges ?? [],
      // Every other node's addresses, trusted or not: a Required pool's traffic to an
      // address two nodes report is dropped rather than sent in plaintext.
      remoteNodeAddresses: input.nodes
        .filter((n) => n.name !== self)
        .flatMap((n) => n.underlayIPs)
        .filter((a) => !selfNode.underlayIPs.includes(a)),
    }),
    mtu: planMtu(input),
    events: dedupeEvents(events),
  };
}

/**
 * The path of traffic from a pod of `sourcePool` on this node to a remote block: the
 * block's own path unless the source pool's encryption overrides it.
 */
export function effectivePath(
  plan: Pick<PathPlan, 'blocks'>,
  sourcePool: string,
  blockCidr: string,
): PathDecision | null {
  const block = plan.blocks.find((b) => b.cidr === blockCidr);
  if (!block) return null;
  return block.fromPools[sourcePool] ?? block;
}

function dedupeEvents(events: PathEvent[]): PathEvent[] {
  const seen = new Map<string, PathEvent>();
  for (const e of events) {
    const key = `${e.reason}/${e.pool}/${e.node}`;
    if (!seen.has(key)) seen.set(key, e);
  }
  return [...seen.values()].sort((a, b) =>
    byString(`${a.node}/${a.pool}/${a.reason}`, `${b.node}/${b.pool}/${b.reason}`),
  );
}

/**
 * Pod MTU by pool: the smallest MTU over every path a pod of the pool can take, to a
 * block of any pool, whether or not the peer has a usable key and whether or not it is
 * on this node's subnet. It depends on the pools and on what this kernel has, not on
 * which peers exist now, so a pod's MTU stays right when a peer loses its key later.
 */
export function planMtu(
  input: Pick<PathInput, 'pools' | 'available' | 'hostMtu' | 'underlayFamily'>,
): PathPlan['mtu'] {
  const devices = {
    wireguard: encapsulationMtu(input.hostMtu, 'wireguard', input.underlayFamily),
    vxlan: encapsulationMtu(input.hostMtu, 'vxlan', input.underlayFamily),
    ipip: encapsulationMtu(input.hostMtu, 'ipip', input.underlayFamily),
  };
  const mtuOf = (path: Path): number =>
    path === 'native' || path === 'blocked' ? input.hostMtu : devices[path];
  const byPool: Record<string, number> = {};
  for (const source of input.pools) {
    const family = familyOf(source.cidr.split('/')[0] ?? '');
    let mtu = input.hostMtu;
    for (const dest of input.pools) {
      if (familyOf(dest.cidr.split('/')[0] ?? '') !== family) continue;
      for (const wireguard of [true, false]) {
        for (const sameSubnet of [true, false]) {
          const ctx: PairContext = {
            node: '(any)',
            wireguard: wireguard && !!input.available.wireguard?.available,
            wireguardWhyNot: '',
            sameSubnet,
            blockFamily: family,
            remoteUnderlay: input.underlayFamily === 4 ? '0.0.0.0' : '::',
            vtepFamilies: [family],
            vtepWhyNot: '',
            available: input.available,
            underlayFamily: input.underlayFamily,
          };
          mtu = Math.min(mtu, mtuOf(pairPath(source, dest, ctx, []).path));
        }
      }
    }
    byPool[source.name] = mtu;
  }
  const pod = Math.min(input.hostMtu, ...Object.values(byPool));
  return { devices, byPool, pod };
}
