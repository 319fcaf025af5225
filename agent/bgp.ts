// Which BGP sessions this node holds and what it says on them: the pure planner in
// front of bgp/ (which renders BIRD's configuration and runs BIRD). BGP carries only
// the blocks of pools routed natively in plaintext (`encryption: None`,
// `encapsulation: None`): their traffic then crosses subnets at native speed through
// routes the underlay's routers learn too. Every other pool is named in neverAccept,
// so no BGP route for an encrypted pool is ever imported or installed; the agent's
// WireGuard routes would win anyway (BIRD's routes carry a higher metric).
//
// Node authority: a node's own credentials can set its annotations and its
// InternalIP, and a compromised node may announce anything over BGP. So what one
// node accepts from another node is checked against the IPAMBlock objects (which the
// agents already admit, agent/blocks.ts): a route for a block is taken only with that
// block's owner as next hop. Only external routers (BGPPeer objects, written by an
// operator) are trusted with other next hops. The reflector role is a label a node
// cannot give itself (the NodeRestriction admission plugin keeps the
// node-restriction.kubernetes.io/ prefix for the operator), so a node cannot pull
// every session to itself.
import type { IpPool } from '../ipam/index.ts';
import { selectorMatches, type LabelSelector } from '../ipam/index.ts';
import { neighborName, type BgpNeighbor, type BirdPlan } from '../bgp/index.ts';
import type { PathBlock } from './paths.ts';

/** Node label (value "true") that makes a node a route reflector. */
export const LABEL_ROUTE_REFLECTOR = 'node-restriction.kubernetes.io/wiremesh.route-reflector';
/** Node annotation: this node's own AS number, instead of the cluster's. */
export const ANNOTATION_BGP_AS = 'wiremesh.io/bgp-as';

/** The cluster's BGP settings (the agent's `bgp-*` settings). */
export interface BgpSettings {
  enabled: boolean;
  /** The nodes' AS number where a node has no annotation of its own. */
  asNumber: number;
  /** Every node peers with every other (unless route reflectors exist). */
  nodeToNodeMesh: boolean;
  /** Seconds; short enough that a node that stops announcing is withdrawn in seconds. */
  holdTime: number;
}

export const DEFAULT_BGP_SETTINGS: BgpSettings = {
  enabled: false,
  asNumber: 64512,
  nodeToNodeMesh: true,
  holdTime: 9,
};

/** An external BGP speaker (a BGPPeer object): a top-of-rack router, say. */
export interface ExternalPeer {
  name: string;
  address: string;
  asNumber: number;
  nodeSelector: LabelSelector;
}

export interface BgpNodeInfo {
  name: string;
  /** The first IPv4 InternalIP; nodes without one take no part. */
  address: string | null;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
}

export interface BgpInput {
  self: string;
  settings: BgpSettings;
  nodes: readonly BgpNodeInfo[];
  pools: readonly IpPool[];
  /** Admitted blocks (agent/blocks.ts): their owners are the only next hops taken. */
  blocks: readonly PathBlock[];
  externalPeers: readonly ExternalPeer[];
}

export interface BgpPlanResult {
  plan: BirdPlan | null;
  /** What keeps a session or this node out, one sentence each (Events and status). */
  problems: string[];
}

/** Kernel metric of BGP routes: above the agent's own (0), so the agent's routes win. */
export const BGP_KERNEL_METRIC = 1024;

/** Pools whose blocks BGP carries. */
export function bgpPool(pool: IpPool): boolean {
  return pool.encryption === 'None' && pool.encapsulation === 'None' && pool.family === 4;
}

function nodeAS(node: BgpNodeInfo, settings: BgpSettings, problems: string[]): number {
  const raw = node.annotations[ANNOTATION_BGP_AS];
  if (raw === undefined) return settings.asNumber;
  const n = Number(raw);
  if (/^\d+$/.test(raw.trim()) && Number.isSafeInteger(n) && n >= 1 && n <= 4294967295) return n;
  problems.push(
    `node ${node.name}: annotation ${ANNOTATION_BGP_AS}=${JSON.stringify(raw)} is not an AS number (1-4294967295); using ${settings.asNumber}`,
  );
  return settings.asNumber;
}

export function planBgp(input: BgpInput): BgpPlanResult {
  const problems: string[] = [];
  if (!input.settings.enabled) return { plan: null, problems };
  const self = input.nodes.find((n) => n.name === input.self);
  if (!self?.address) {
    problems.push(`node ${input.self} has no IPv4 InternalIP: BGP needs one`);
    return { plan: null, problems };
  }
  const pools = new Map(input.pools.map((p) => [p.name, p]));
  const carried = input.pools.filter(bgpPool);
  const reflector = (n: BgpNodeInfo) => n.labels[LABEL_ROUTE_REFLECTOR] === 'true';
  const others = input.nodes.filter((n) => n.name !== self.name && n.address !== null);
  const reflectors = others.filter(reflector);
  const selfIsReflector = reflector(self);

  const neighbors: BgpNeighbor[] = [];
  const byAddress = new Map<string, BgpNodeInfo>();
  for (const n of others) {
    const address = n.address ?? '';
    const clash = byAddress.get(address);
    if (clash) {
      problems.push(
        `nodes ${clash.name} and ${n.name} both have address ${address}: no session with ${n.name}`,
      );
      continue;
    }
    byAddress.set(address, n);
    let role: BgpNeighbor['role'] | null;
    if (selfIsReflector) role = reflector(n) ? 'mesh' : 'client';
    else if (reflectors.length > 0) role = reflector(n) ? 'reflector' : null;
    else role = input.settings.nodeToNodeMesh ? 'mesh' : null;
    if (role === null) continue;
    neighbors.push({
      name: neighborName('node', n.name),
      address,
      as: nodeAS(n, input.settings, problems),
      role,
    });
  }
  for (const peer of input.externalPeers) {
    if (!selectorMatches(peer.nodeSelector, self.labels)) continue;
    if (byAddress.has(peer.address) || peer.address === self.address) {
      problems.push(`BGPPeer ${peer.name}: ${peer.address} is a node's address; not peered`);
      continue;
    }
    neighbors.push({
      name: neighborName('peer', peer.name),
      address: peer.address,
      as: peer.asNumber,
      role: 'external',
    });
  }

  const carriedBlocks = input.blocks.filter((b) => {
    const pool = pools.get(b.pool);
    return pool !== undefined && bgpPool(pool);
  });
  // Which node's address may be the next hop of which block.
  const origins: Record<string, string[]> = {};
  const nodeByName = new Map(input.nodes.map((n) => [n.name, n]));
  for (const b of carriedBlocks) {
    if (b.node === self.name) continue;
    const owner = nodeByName.get(b.node);
    if (!owner?.address) continue;
    (origins[owner.address] ??= []).push(b.cidr);
  }
  for (const list of Object.values(origins)) list.sort();

  const plan: BirdPlan = {
    routerId: self.address,
    localAS: nodeAS(self, input.settings, problems),
    localAddress: self.address,
    announce: carriedBlocks
      .filter((b) => b.node === self.name)
      .map((b) => b.cidr)
      .sort(),
    accept: carried.map((p) => p.cidr).sort(),
    neverAccept: input.pools
      .filter((p) => !bgpPool(p) && p.family === 4)
      .map((p) => p.cidr)
      .sort(),
    nodeOrigins: origins,
    neighbors: neighbors.sort((a, b) => a.name.localeCompare(b.name)),
    kernelMetric: BGP_KERNEL_METRIC,
    holdTime: input.settings.holdTime,
    keepaliveTime: Math.max(1, Math.floor(input.settings.holdTime / 3)),
    connectRetryTime: 5,
    // BIRD waits 60 s by default before it retries a session that failed.
    errorWaitTime: [1, 10],
    ...(selfIsReflector ? { reflectorClusterId: self.address } : {}),
  };
  return { plan, problems };
}
