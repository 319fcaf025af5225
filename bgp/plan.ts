// What a node's BIRD 2 should do, as one configuration text: the pure half of BGP.
// The agent decides the facts (which pod blocks this node holds, which pools may be
// routed in plaintext, who the neighbours are) and hands them over as a BirdPlan;
// renderBirdConfig turns them into bird.conf. The text is a pure function of the plan
// with every list sorted, so an unchanged plan yields byte-identical text and the
// driver can skip a reload by comparing strings.
//
// Two BIRD tables keep the jobs apart. master4 holds only what BGP deals in: this
// node's blocks (static, BIRD-only) and routes learned from neighbours. wm_kernel4
// mirrors the kernel's main table: the kernel protocol learns the underlay into it
// (default and agent routes; device subnets come from the direct protocol, since BIRD
// never learns the kernel's own connected routes) and a pipe brings in the learned
// pod-block routes to install. BIRD allows one kernel protocol per BIRD table, so the
// pipe is how one table both learns from and writes to the main table while kernel
// routes can never reach BGP: nothing flows from wm_kernel4 back into master4.
// iBGP next hops (the originating node, possibly on another subnet) are resolved
// recursively through wm_kernel4 (`igp table`).
import { mustParseCidr } from '../ipam/cidr.ts';
import { validatePlan } from './validate.ts';

export { validatePlan };

export type NeighborRole = 'mesh' | 'reflector' | 'client' | 'external';

export interface BgpNeighbor {
  /** The BIRD protocol name: letters, digits and '_', starting with a letter. */
  name: string;
  address: string;
  as: number;
  /** mesh: iBGP full mesh; reflector: we are its client; client: we reflect to it. */
  role: NeighborRole;
  /** External neighbours only: not on a local subnet, reached through the routing table. */
  multihop?: boolean;
}

export interface BirdPlan {
  /** The node's IPv4 underlay address. */
  routerId: string;
  localAS: number;
  /** Source address of the sessions. */
  localAddress: string;
  /** Pod blocks this node holds, of pools that may be routed in plaintext. */
  announce: string[];
  /** Pool CIDRs whose prefixes (or more specific ones) may be learned and installed. */
  accept: string[];
  /** Encrypted pools: never imported nor installed, even when inside `accept`. */
  neverAccept: string[];
  neighbors: BgpNeighbor[];
  /** Set when this node is a route reflector for its 'client' neighbours. */
  reflectorClusterId?: string;
  /** Metric of installed routes; above the agent's own so the agent's routes win. */
  kernelMetric: number;
  /** BGP hold time in seconds (0 disables keepalives); BIRD's default is 240. */
  holdTime?: number;
  keepaliveTime?: number;
  /** Seconds between attempts to open a session; BIRD's default is 120. */
  connectRetryTime?: number;
  /** Seconds before a failed session is retried, doubling up to the second; BIRD: 60,300. */
  errorWaitTime?: [number, number];
  /**
   * Node underlay address -> the blocks that node owns. When set, a route learned over
   * iBGP is imported only for a block owned by its next hop (a node cannot announce
   * another's block); only external routers are trusted with other next hops.
   */
  nodeOrigins?: Record<string, string[]>;
}

/** A BIRD protocol name for a Kubernetes node name (or anything else), e.g. node_b_1. */
export function neighborName(prefix: string, raw: string): string {
  const name = `${prefix}_${raw}`.replace(/[^A-Za-z0-9_]/g, '_').slice(0, 60);
  return /^[A-Za-z]/.test(name) ? name : `n${name.slice(0, 59)}`;
}

/** The whole bird.conf for a plan; throws listing every problem if the plan is invalid. */
export function renderBirdConfig(plan: BirdPlan): string {
  const errors = validatePlan(plan);
  if (errors.length) throw new Error(`invalid BGP plan: ${errors.join('; ')}`);
  const announce = sortCidrs(plan.announce);
  const accept = sortCidrs(plan.accept);
  const never = sortCidrs(plan.neverAccept);
  const lines = [
    '# bird.conf written by wiremesh (bgp/plan.ts); replaced on every change, do not edit.',
    'log stderr all;',
    `router id ${plan.routerId};`,
    'timeformat protocol iso long;',
    '',
    '# The kernel main table as BIRD sees it: the underlay, plus the pod-block routes to install.',
    'ipv4 table wm_kernel4;',
    '',
    '# Pod-block prefixes that may be learned: inside a plaintext pool, outside every',
    '# encrypted pool and outside the blocks this node holds itself.',
    'function wm_learnable()',
    '{',
    ...(never.length ? [`  if net ~ ${prefixSet(never, '+')} then return false;`] : []),
    ...(announce.length ? [`  if net ~ ${prefixSet(announce, '+')} then return false;`] : []),
    accept.length ? `  return net ~ ${prefixSet(accept, '+')};` : '  return false;',
    '}',
    '',
    '# The blocks this node holds, as its own static protocol made them.',
    'function wm_own_block()',
    '{',
    announce.length
      ? `  return proto = "wm_blocks" && net ~ ${prefixSet(announce, '')};`
      : '  return false;',
    '}',
    '',
    'filter wm_bgp_import',
    '{',
    '  if wm_learnable() then accept;',
    '  reject;',
    '}',
    ...(plan.nodeOrigins ? ['', ...renderOrigins(plan.nodeOrigins)] : []),
    '',
    '# To external neighbors, and iBGP ones of a non-reflector: only the blocks we hold.',
    'filter wm_bgp_export',
    '{',
    '  if wm_own_block() then accept;',
    '  reject;',
    '}',
    '',
    "# A reflector's iBGP neighbors: also learned blocks; BIRD's reflection rules pick which.",
    'filter wm_bgp_export_reflected',
    '{',
    '  if wm_own_block() then accept;',
    '  if source = RTS_BGP && wm_learnable() then accept;',
    '  reject;',
    '}',
    '',
    '# Towards the kernel: learned pod-block routes only, never the underlay or our blocks.',
    'filter wm_to_kernel',
    '{',
    '  if source = RTS_BGP && wm_learnable() then accept;',
    '  reject;',
    '}',
    '',
    '# What the kernel and direct protocols bring in: the underlay only, never pool routes.',
    'filter wm_from_kernel',
    '{',
    ...(accept.length || never.length || announce.length
      ? [`  if net ~ ${prefixSet([...accept, ...never, ...announce], '+')} then reject;`]
      : []),
    '  accept;',
    '}',
    '',
    'protocol device wm_device',
    '{',
    '  scan time 10;',
    '}',
    '',
    "# Subnet routes of the interfaces: the kernel protocol never learns the kernel's own.",
    'protocol direct wm_direct',
    '{',
    '  ipv4 { table wm_kernel4; import filter wm_from_kernel; };',
    '}',
    '',
    '# Installs with proto bird and this metric, learns routes of other origins, and',
    '# on shutdown removes what it installed.',
    'protocol kernel wm_kernel',
    '{',
    '  ipv4 { table wm_kernel4; import filter wm_from_kernel; export filter wm_to_kernel; };',
    '  learn;',
    '  scan time 10;',
    `  metric ${plan.kernelMetric};`,
    '}',
    '',
    'protocol pipe wm_pipe',
    '{',
    '  table master4;',
    '  peer table wm_kernel4;',
    '  export filter wm_to_kernel;',
    '  import none;',
    '}',
    '',
    '# Announced, never installed: the agent routes its own blocks.',
    'protocol static wm_blocks',
    '{',
    '  ipv4;',
    ...announce.map((c) => `  route ${c} blackhole;`),
    '}',
    ...[...plan.neighbors]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .flatMap((n) => ['', ...renderNeighbor(plan, n)]),
  ];
  return lines.join('\n') + '\n';
}

function renderNeighbor(plan: BirdPlan, n: BgpNeighbor): string[] {
  const multihop = n.role !== 'external' || n.multihop === true;
  const checkOrigin = n.role !== 'external' && plan.nodeOrigins !== undefined;
  // A reflector passes clients' routes to every iBGP neighbor and others' to clients.
  const reflects =
    n.role === 'client' || (n.role !== 'external' && plan.reflectorClusterId !== undefined);
  const timers = [
    plan.holdTime !== undefined ? `  hold time ${plan.holdTime};` : '',
    plan.keepaliveTime !== undefined ? `  keepalive time ${plan.keepaliveTime};` : '',
    plan.connectRetryTime !== undefined ? `  connect retry time ${plan.connectRetryTime};` : '',
    plan.errorWaitTime ? `  error wait time ${plan.errorWaitTime.join(',')};` : '',
  ].filter(Boolean);
  // iBGP next hops stay the originating node (perhaps on another subnet): resolve them
  // through the underlay. An external router on a local subnet gives a direct next hop.
  const channel = multihop ? ['    gateway recursive;', '    igp table wm_kernel4;'] : [];
  return [
    `protocol bgp ${n.name}`,
    '{',
    `  description "${n.role} ${n.address} AS ${n.as}";`,
    `  local ${plan.localAddress} as ${plan.localAS};`,
    `  neighbor ${n.address} as ${n.as};`,
    multihop ? '  multihop;' : '  direct;',
    // The nodes share one AS: a router passes one node's blocks to another with that AS
    // in the path, which BGP's loop check would otherwise refuse.
    ...(n.role === 'external' ? ['  allow local as;'] : []),
    ...(n.role === 'client' ? ['  rr client;', `  rr cluster id ${plan.reflectorClusterId};`] : []),
    // A stopped node's routes must go at once, not linger as stale for two minutes.
    '  graceful restart off;',
    ...timers,
    '  ipv4 {',
    `    import filter ${checkOrigin ? 'wm_bgp_import_internal' : n.role === 'external' && plan.nodeOrigins ? 'wm_bgp_import_external' : 'wm_bgp_import'};`,
    `    export filter ${reflects ? 'wm_bgp_export_reflected' : 'wm_bgp_export'};`,
    ...channel,
    '  };',
    '}',
  ];
}

/** iBGP imports: a learnable prefix, and one of the blocks its next hop owns. */
function renderOrigins(origins: Record<string, string[]>): string[] {
  const known = sortCidrs(Object.values(origins).flat());
  const owners = Object.keys(origins)
    .filter((a) => origins[a]?.length)
    .sort();
  return [
    'function wm_from_owner()',
    '{',
    ...owners.map(
      (a) =>
        `  if bgp_next_hop = ${a} then return net ~ ${prefixSet(sortCidrs(origins[a] ?? []), '')};`,
    ),
    '  return false;',
    '}',
    '',
    'filter wm_bgp_import_internal',
    '{',
    '  if wm_learnable() && wm_from_owner() then accept;',
    '  reject;',
    '}',
    '',
    // A router relays the nodes' blocks with itself as next hop, so the owner cannot be
    // checked; but a prefix no node owns (a node announcing more than its blocks) is
    // refused from routers too.
    'filter wm_bgp_import_external',
    '{',
    ...(known.length ? [`  if wm_learnable() && net ~ ${prefixSet(known, '')} then accept;`] : []),
    '  reject;',
    '}',
  ];
}

/** Sorted by address then length, duplicates dropped: one plan, one text. */
function sortCidrs(list: string[]): string[] {
  const key = (t: string) => mustParseCidr(t);
  return [...new Set(list)].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    return x.base < y.base ? -1 : x.base > y.base ? 1 : x.prefix - y.prefix;
  });
}

/** A BIRD prefix set; suffix '+' matches the prefix and everything more specific. */
function prefixSet(list: string[], suffix: '' | '+'): string {
  return `[ ${list.map((c) => c + suffix).join(', ')} ]`;
}
