// `wiremesh explain SRC DST [PORT/PROTO]`, the pure part: from a snapshot of the
// cluster (explain/snapshot.ts), the path a new connection takes and the policy
// verdict at each end, with the rule that decided it. Nothing here is a second
// implementation of policy: each node's fragment comes from the agent's compiler
// (compilePolicies, with that node as `self`), and the packet is walked through it
// with the nft evaluator (policy/nftsim.ts traceVerdict), which records the comment
// tags of the rules that matched; the compiler's `origins` turn the last tag of each
// direction into its policy, rule and peer. The path comes from the agent's planners
// (planMesh for the WireGuard peers, planPaths per pool) run for the source node.
//
// What it cannot see from the API, it says: the source node's kernel (which
// encapsulations it has: taken as available, except WireGuard, which a node has
// when its agent published a key), and state (a connection already open passes on
// its conntrack entry; a policy not yet applied by an agent). `wiremesh status` on
// the node shows those.
import ipaddr from 'ipaddr.js';
import { cidrContains, parseCidr } from '../agent/cidr.ts';
import { assignTunnelAddresses, planMesh } from '../agent/plan.ts';
import { effectivePath, planPaths, type PathDecision, type PathPlan } from '../agent/paths.ts';
import type { MeshNode } from '../agent/meshnode.ts';
import { defaultAgentConfig } from '../agent/config.ts';
import {
  compilePolicies,
  POLICY_FORWARD_CHAIN,
  POLICY_INPUT_CHAIN,
  traceVerdict,
  type CompileResult,
  type Packet,
  type PolicyPod,
  type RuleOrigin,
} from '../policy/index.ts';
import { IPIP_DEVICE, VXLAN_DEVICE, WIREGUARD_DEVICE_NAME } from '../tunnels/index.ts';
import type { ClusterSnapshot } from './snapshot.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP' | 'ICMP';

export interface FlowQuery {
  /** `namespace/name` of a pod, or an address. */
  from: string;
  to: string;
  protocol: Protocol;
  /** Absent for ICMP. */
  port?: number;
}

export type Endpoint =
  | { kind: 'pod'; pod: PolicyPod; ip: string; node: string; pool: string | null }
  | { kind: 'node'; node: string; ip: string }
  | { kind: 'external'; ip: string };

export interface Decision {
  direction: 'egress' | 'ingress';
  /** The node that decides (the source pod's for egress, the destination pod's for ingress). */
  node: string | null;
  verdict: 'allow' | 'drop' | 'not reached' | 'not policed';
  /** The rule that decided; null: no policy selects the pod for this direction. */
  origin: RuleOrigin | null;
  /** Earlier rules on the way (an AdminNetworkPolicy Pass before the NetworkPolicy that decided). */
  via: RuleOrigin[];
  /** One line for people. */
  text: string;
}

export interface PathHop {
  kind: 'loopback' | 'local' | 'wireguard' | 'vxlan' | 'ipip' | 'native' | 'blocked' | 'underlay';
  device: string | null;
  encrypted: boolean;
  text: string;
}

export interface Explanation {
  query: FlowQuery;
  from: Endpoint;
  to: Endpoint;
  path: PathHop;
  egress: Decision;
  ingress: Decision;
  /** What happens to a new connection. */
  verdict: 'allow' | 'drop';
  /** What the explanation had to assume. */
  assumptions: string[];
}

const NFT_PROTO: Record<Protocol, Packet['proto']> = {
  TCP: 'tcp',
  UDP: 'udp',
  SCTP: 'sctp',
  ICMP: 'icmp',
};

/** `80/TCP`, `tcp/80`, `53/udp` or `icmp`; TCP when only a port is given. */
export function parsePortProtocol(text: string | undefined): { protocol: Protocol; port?: number } {
  if (text === undefined) return { protocol: 'ICMP' };
  const parts = text.toUpperCase().split('/');
  let protocol: Protocol = 'TCP';
  let port: number | undefined;
  for (const p of parts) {
    if (/^\d+$/.test(p)) port = Number(p);
    else if (['TCP', 'UDP', 'SCTP', 'ICMP'].includes(p)) protocol = p as Protocol;
    else throw new Error(`'${text}' is not PORT/PROTO (e.g. 80/TCP, 53/UDP, ICMP)`);
  }
  if (protocol === 'ICMP') {
    if (port !== undefined) throw new Error(`ICMP has no port ('${text}')`);
    return { protocol };
  }
  if (port === undefined || port < 1 || port > 65535) {
    throw new Error(`'${text}' needs a port from 1 to 65535`);
  }
  return { protocol, port };
}

function isAddress(text: string): boolean {
  return ipaddr.isValid(text);
}

const familyOf = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4);

/** A pod (namespace/name) or an address, resolved against the snapshot. */
export function resolveEndpoint(s: ClusterSnapshot, text: string, family: 4 | 6 | null): Endpoint {
  const poolOf = (ip: string): string | null =>
    s.blocks.find((b) => cidrContains(parseCidr(b.cidr), ip))?.pool ??
    s.pools.find((p) => cidrContains(parseCidr(p.cidr), ip))?.name ??
    null;
  if (isAddress(text)) {
    const ip = ipaddr.parse(text).toString();
    const pod = s.pods.find((p) => p.ips.includes(ip));
    if (pod) return { kind: 'pod', pod, ip, node: pod.node, pool: poolOf(ip) };
    const node = s.nodes.find((n) => n.internalIPs.includes(ip));
    if (node) return { kind: 'node', node: node.name, ip };
    return { kind: 'external', ip };
  }
  const [namespace, name, ...rest] = text.split('/');
  if (!namespace || !name || rest.length > 0) {
    throw new Error(`'${text}' is neither an address nor a pod as namespace/name`);
  }
  const pod = s.pods.find((p) => p.namespace === namespace && p.name === name);
  if (!pod) throw new Error(`no pod ${namespace}/${name} (or it has no address yet)`);
  const ip =
    (family ? pod.ips.find((a) => familyOf(a) === family) : undefined) ??
    (family ? undefined : (pod.ips.find((a) => familyOf(a) === 4) ?? pod.ips[0]));
  if (!ip) {
    throw new Error(`pod ${namespace}/${name} has no IPv${family ?? 4} address`);
  }
  return { kind: 'pod', pod, ip, node: pod.node, pool: poolOf(ip) };
}

/** The compiled fragment of each node, computed once per explanation set. */
export class PolicyCompiler {
  private readonly snapshot: ClusterSnapshot;
  private readonly byNode = new Map<string, CompileResult>();

  constructor(snapshot: ClusterSnapshot) {
    this.snapshot = snapshot;
  }

  of(node: string): CompileResult {
    let r = this.byNode.get(node);
    if (!r) {
      const s = this.snapshot;
      r = compilePolicies({
        self: node,
        pods: s.pods,
        namespaces: s.namespaces,
        policies: s.policies,
        adminPolicies: s.adminPolicies,
        baselinePolicy: s.baselinePolicy,
      });
      this.byNode.set(node, r);
    }
    return r;
  }
}

/** Explain one flow. `compiler` may be shared across many flows of one snapshot. */
export function explainFlow(
  s: ClusterSnapshot,
  query: FlowQuery,
  compiler = new PolicyCompiler(s),
): Explanation {
  const firstFamily = [query.from, query.to].filter(isAddress).map(familyOf)[0] ?? null;
  const from = resolveEndpoint(s, query.from, firstFamily);
  const to = resolveEndpoint(s, query.to, firstFamily ?? familyOf(from.ip));
  if (familyOf(from.ip) !== familyOf(to.ip)) {
    throw new Error(`${from.ip} and ${to.ip} are of different address families`);
  }
  const assumptions: string[] = ['a new connection (an open one passes on its conntrack entry)'];
  const pkt: Packet = {
    src: from.ip,
    dst: to.ip,
    proto:
      query.protocol === 'ICMP' && familyOf(from.ip) === 6
        ? 'ipv6-icmp'
        : NFT_PROTO[query.protocol],
    ct: 'new',
    ...(query.port === undefined ? {} : { dport: query.port }),
  };
  const srcNode = from.kind === 'external' ? null : from.node;
  const dstNode = to.kind === 'external' ? null : to.node;

  // The hooks the packet meets, in order, each walked through that node's fragment.
  const walks: { node: string; verdict: 'accept' | 'drop'; origins: RuleOrigin[] }[] = [];
  const walk = (node: string, entry: string, local: boolean) => {
    const result = compiler.of(node);
    const hasEntry = result.table.chains.some((c) => c.name === entry);
    const trace = hasEntry
      ? traceVerdict(result.table, entry, { ...pkt, local })
      : { verdict: 'accept' as const, tags: [] };
    const origins = trace.tags.flatMap((t) => (result.origins[t] ? [result.origins[t]] : []));
    walks.push({ node, verdict: trace.verdict, origins });
    return trace.verdict;
  };
  const samePod = from.kind === 'pod' && to.kind === 'pod' && from.pod === to.pod;
  if (!samePod && from.kind === 'pod') {
    // Forwarded by the source's node, or (to the node's own address) its input hook.
    const toOwnNode = to.kind === 'node' && to.node === from.node;
    const v = walk(from.node, toOwnNode ? POLICY_INPUT_CHAIN : POLICY_FORWARD_CHAIN, toOwnNode);
    if (v === 'accept' && to.kind === 'pod' && to.node !== from.node) {
      walk(to.node, POLICY_FORWARD_CHAIN, false);
    }
  } else if (!samePod && to.kind === 'pod' && !(from.kind === 'node' && from.node === to.node)) {
    walk(to.node, POLICY_FORWARD_CHAIN, false);
  }
  const dropped = walks.some((w) => w.verdict === 'drop');

  const decision = (direction: 'egress' | 'ingress'): Decision => {
    const ep = direction === 'egress' ? from : to;
    const node = ep.kind === 'pod' ? ep.node : null;
    const matched = walks.flatMap((w) => w.origins.filter((o) => o.direction === direction));
    const origin = matched.at(-1) ?? null;
    const via = matched.slice(0, -1);
    if (samePod) {
      return {
        direction,
        node,
        verdict: 'not policed',
        origin: null,
        via: [],
        text: 'a pod talking to itself never leaves it',
      };
    }
    if (ep.kind !== 'pod') {
      const what = ep.kind === 'node' ? `node ${ep.node}` : `${ep.ip} (outside the cluster's pods)`;
      return {
        direction,
        node,
        verdict: 'not policed',
        origin: null,
        via: [],
        text: `${what}: no pod, no ${direction} policy`,
      };
    }
    const podName = `${ep.pod.namespace}/${ep.pod.name}`;
    if (direction === 'ingress' && from.kind === 'node' && from.node === ep.node) {
      return {
        direction,
        node,
        verdict: 'allow',
        origin: null,
        via: [],
        text: `traffic from a pod's own node is always allowed`,
      };
    }
    if (direction === 'ingress' && walks.some((w) => w.verdict === 'drop') && !origin) {
      return {
        direction,
        node,
        verdict: 'not reached',
        origin: null,
        via: [],
        text: 'not reached: dropped on egress',
      };
    }
    if (!origin) {
      return {
        direction,
        node,
        verdict: 'allow',
        origin: null,
        via,
        text: `allowed: no policy selects ${podName} for ${direction}`,
      };
    }
    const verdict = origin.action === 'Deny' ? 'drop' : 'allow';
    return { direction, node, verdict, origin, via, text: describeOrigin(origin) };
  };

  const path = pathOf(s, from, to, assumptions);
  const egress = decision('egress');
  const ingress = decision('ingress');
  const verdict = dropped || path.kind === 'blocked' ? 'drop' : 'allow';
  if (srcNode && dstNode && srcNode !== dstNode && path.kind !== 'underlay') {
    assumptions.push(
      `the encapsulations ${srcNode}'s kernel has (taken as available; \`wiremesh status\` on the node shows them)`,
    );
  }
  return { query, from, to, path, egress, ingress, verdict, assumptions };
}

/** One line naming the policy, rule and peer, in the objects' own terms. */
export function describeOrigin(o: RuleOrigin): string {
  const names = o.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name));
  const field = o.direction === 'ingress' ? 'from' : 'to';
  const rule =
    o.rule === undefined
      ? ''
      : ` spec.${o.direction}[${o.rule}]${o.ruleName ? ` (${o.ruleName})` : ''}` +
        (o.peer === undefined ? '' : ` ${field}[${o.peer}]`);
  if (o.tier === 'NetworkPolicy') {
    if (o.action === 'Deny')
      return `dropped: NetworkPolicy ${names.join(', ')} select${names.length > 1 ? '' : 's'} the pod for ${o.direction} and no rule allows it`;
    return `allowed by NetworkPolicy ${names.join(', ')}${rule}`;
  }
  const verb = { Allow: 'allowed by', Deny: 'dropped by', Pass: 'passed on to NetworkPolicy by' }[
    o.action
  ];
  return `${verb} ${o.tier} ${names.join(', ')}${rule}`;
}

function deviceOf(kind: PathDecision['path']): string | null {
  return {
    wireguard: WIREGUARD_DEVICE_NAME,
    vxlan: VXLAN_DEVICE,
    ipip: IPIP_DEVICE,
    native: null,
    blocked: null,
  }[kind];
}

/** The path from the source's node to the destination, as the source node's planners decide. */
function pathOf(s: ClusterSnapshot, from: Endpoint, to: Endpoint, assumptions: string[]): PathHop {
  if (from.kind === 'pod' && to.kind === 'pod' && from.pod === to.pod) {
    return { kind: 'loopback', device: null, encrypted: false, text: 'inside the pod' };
  }
  const fromNode = from.kind === 'external' ? null : from.node;
  const toNode = to.kind === 'external' ? null : to.node;
  if (fromNode && fromNode === toNode) {
    return {
      kind: 'local',
      device: null,
      encrypted: false,
      text: `on node ${fromNode}, veth to veth: it never leaves the node`,
    };
  }
  if (from.kind !== 'pod' || to.kind !== 'pod') {
    const where = fromNode ? `node ${fromNode}` : 'outside';
    return {
      kind: 'underlay',
      device: null,
      encrypted: false,
      text: `from ${where} by the node's own routes (not between two pods' nodes)`,
    };
  }
  const self = s.nodes.find((n) => n.name === from.node);
  const block = s.blocks.find((b) => cidrContains(parseCidr(b.cidr), to.ip));
  const refused = s.refusedBlocks.find((b) => cidrContains(parseCidr(b.cidr), to.ip));
  if (self && !block && refused) {
    return {
      kind: 'underlay',
      device: null,
      encrypted: false,
      text: `${to.ip} lies in a refused block: ${refused.message}`,
    };
  }
  if (!self || !block) {
    return {
      kind: 'underlay',
      device: null,
      encrypted: false,
      text: `no ${self ? 'IPAM block holds ' + to.ip : 'Node ' + from.node}: no route the agents would program`,
    };
  }
  const plan = sourcePlan(s, self);
  const decided = effectivePath(plan, from.pool ?? '', block.cidr);
  if (!decided) {
    return {
      kind: 'underlay',
      device: null,
      encrypted: false,
      text: `block ${block.cidr} is not among ${self.name}'s remote blocks`,
    };
  }
  if (s.pools.some((p) => p.encapsulation.startsWith('CrossSubnet'))) {
    assumptions.push(
      "CrossSubnet pools taken as crossing subnets (the node's subnets are not in the API)",
    );
  }
  const device = deviceOf(decided.path);
  const pools = `pool ${from.pool ?? '?'} -> pool ${block.pool} (block ${block.cidr} on ${block.node})`;
  const why = decided.reason ? `; ${decided.reason}` : '';
  if (decided.path === 'blocked') {
    return {
      kind: 'blocked',
      device: null,
      encrypted: false,
      text: `blocked: ${pools}; the encryption guard drops it${why}`,
    };
  }
  const encrypted = decided.path === 'wireguard';
  return {
    kind: decided.path,
    device,
    encrypted,
    text: `${from.node} -> ${to.node} over ${decided.path}${device ? ` (${device})` : ' (the underlay)'}, ${encrypted ? 'encrypted' : 'NOT encrypted'}; ${pools}${why}`,
  };
}

/**
 * The path plan of node `self` as its agent would make it from the API objects:
 * planMesh for its WireGuard peers, then planPaths. What only its kernel knows is
 * assumed: WireGuard where the node published a key, VXLAN and IP-in-IP available,
 * a host MTU of 1500, no shared subnets.
 */
export function sourcePlan(s: ClusterSnapshot, self: MeshNode): PathPlan {
  const config = defaultAgentConfig(self.name);
  const blocksByNode = new Map<string, string[]>();
  for (const b of s.blocks) blocksByNode.set(b.node, [...(blocksByNode.get(b.node) ?? []), b.cidr]);
  const underlayFamily = self.internalIPs[0]?.includes(':') ? 6 : 4;
  const peers = new Set<string>();
  if (self.publicKey) {
    const mesh = planMesh({
      self: self.name,
      selfPublicKey: self.publicKey,
      nodes: s.nodes,
      blocks: blocksByNode,
      settings: {
        listenPort: config.listenPort,
        tunnelCIDR: config.tunnelCIDR,
        hostMtu: 1500,
        underlayFamily,
      },
      podRanges: s.pools.map((p) => p.cidr),
    });
    for (const p of mesh.peers) peers.add(p.node);
  }
  return planPaths({
    self: self.name,
    selfSubnets: [],
    nodes: s.nodes.map((n) => ({
      name: n.name,
      underlayIPs: n.internalIPs,
      wireguardPeer: peers.has(n.name),
    })),
    pools: s.pools,
    blocks: s.blocks,
    available: {
      wireguard: {
        available: self.publicKey !== null,
        detail: self.publicKey ? 'a key is published' : 'no key published',
      },
      vxlan: { available: true, detail: 'assumed' },
      ipip: { available: true, detail: 'assumed' },
    },
    tunnelAddresses: assignTunnelAddresses(s.nodes, config.tunnelCIDR),
    hostMtu: 1500,
    underlayFamily,
  });
}

/** The explanation as lines for people. */
export function renderExplanation(e: Explanation): string {
  const ep = (x: Endpoint) =>
    x.kind === 'pod'
      ? `pod ${x.pod.namespace}/${x.pod.name} ${x.ip} on ${x.node}${x.pool ? ` (pool ${x.pool})` : ''}`
      : x.kind === 'node'
        ? `node ${x.node} ${x.ip}`
        : `${x.ip} (no pod or node of the cluster)`;
  const what = e.query.protocol === 'ICMP' ? 'ICMP' : `${e.query.protocol}/${e.query.port}`;
  const lines = [
    `from:    ${ep(e.from)}`,
    `to:      ${ep(e.to)}`,
    `packet:  ${what}, a new connection`,
    `path:    ${e.path.text}`,
    `egress:  ${e.egress.text}${e.egress.node ? ` [decided on ${e.egress.node}]` : ''}`,
    ...e.egress.via.map((o) => `         after: ${describeOrigin(o)}`),
    `ingress: ${e.ingress.text}${e.ingress.node && e.ingress.verdict !== 'not reached' ? ` [decided on ${e.ingress.node}]` : ''}`,
    ...e.ingress.via.map((o) => `         after: ${describeOrigin(o)}`),
    `verdict: ${e.verdict === 'allow' ? 'ALLOWED' : 'DROPPED'}`,
    ...e.assumptions.map((a) => `assumes: ${a}`),
  ];
  return lines.join('\n') + '\n';
}
