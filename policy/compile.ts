// The NetworkPolicy compiler: (this node, pods, namespaces, policies) -> the policy
// fragment of the `inet wiremesh` table. Pure; no I/O.
//
// Shape of the fragment (what a packet meets):
//   policy-forward   (jumped to from the agent's forward base chain)
//     ct state established,related return      replies of allowed connections
//     ct state invalid drop
//     (all four dispatch rules below too: the chain is empty while no local pod is
//     isolated, and the agent does not jump to it)
//     ip saddr vmap @policy-egress-v4          egress of this node's isolated pods
//     ip6 saddr vmap @policy-egress-v6
//     ip daddr vmap @policy-ingress-v4         ingress of this node's isolated pods
//     ip6 daddr vmap @policy-ingress-v6
//   (no policy-input: NetworkPolicy never polices a pod's traffic to its own node)
//   pol-eg-<hash> / pol-in-<hash>: one chain per distinct set of policies selecting a
//     local pod for that direction: the allow rules of those policies (each ends in
//     `return`), then `drop`.
//   pol-peer-<hash>-v4/-v6: one set per distinct peer, shared by every policy naming
//     it: a selector peer's pod addresses, or an ipBlock minus its excepts as an
//     interval set (merged disjoint); pol-named-<hash>-v4/-v6: `addr . proto . port`
//     sets resolving named ports.
//
// With admin policies (any AdminNetworkPolicy or a BaselineAdminNetworkPolicy in
// the input), each direction gets its own decision, in the network-policy-api order
// ANP -> NetworkPolicy -> BANP -> allow, and the entry chains become:
//   policy-forward   ct established,related return; ct invalid drop;
//                    jump policy-egress; jump policy-ingress
//   policy-input     (jumped to from the input base chain: pod -> this node's
//                    addresses) ND and ct established,related return; jump policy-egress
//   policy-egress    ip saddr vmap @admin-egress-v4 (+v6): goto anp-eg-<hash>
//                    goto policy-egress-np
//   policy-egress-np fib daddr type local return               (the pod's own node)
//                    ip saddr vmap @policy-egress-v4 (+v6)     NetworkPolicy, as above
//                    ip saddr vmap @baseline-egress-v4 (+v6)   jump banp-egress
//   (policy-ingress, policy-ingress-np and banp-ingress alike, on daddr)
//   anp-eg-<hash>: one chain per distinct list of ANPs selecting a local address,
//     by priority (ties by name), each ANP's rules in order: Allow `return`, Deny
//     `drop`, Pass `goto policy-egress-np`; at the end `goto policy-egress-np`.
// Why it works without marks: policy-egress is jumped to, the ANP chain is reached
// by goto, so its `return` (Allow) ends the whole egress decision and policy-forward
// goes on to the ingress decision: an ANP Allow skips NetworkPolicy and BANP for its
// direction only, and the destination's ingress is still decided on a same-node
// path. A NetworkPolicy group chain returns (allowed) into policy-egress-np, whose
// BANP map holds only addresses no NetworkPolicy selects for that direction (known
// at compile time), so a NetworkPolicy result is final and the BANP decides only
// for the pods NetworkPolicy leaves alone; a BANP chain returns (Allow or no match)
// or drops. Every admin rule ends the evaluation, so a rule text repeated later in
// a chain is dropped. Without admin policies the fragment is exactly the
// NetworkPolicy-only one above, and its chains do not change with ANP membership:
// which pods an admin policy selects lives in the map elements. Two local pods
// claiming one address: it is treated as selected by every ANP selecting either.
// How unreadable admin policies fail closed is in admin-k8s.ts.
//
// Decisions, in upstream terms:
// - The fragment never `accept`s: allowed traffic returns to the agent's base chain
//   (policy accept), denied traffic is dropped. An egress allow therefore still meets
//   the destination's ingress check on a same-node path, and the agent may order its
//   base chains freely.
// - Conntrack first: replies and related packets (ICMP errors) of any connection
//   that was allowed when it started pass; `ct state invalid` is dropped for all
//   forwarded traffic, as kube-proxy does. Connections open before a policy
//   arrived stay open, as with every conntrack-based implementation. A node none of
//   whose pods is isolated has no `ct` rule (conntrack costs every packet of the
//   namespace); once one is, a connection already open is picked up mid-stream and
//   judged as new in the direction of its next packet.
// - Ingress is decided on the destination pod's node, egress on the source pod's
//   node: only pods with node === self get dispatch entries. A pod no policy selects
//   for a direction is not in that map and passes.
// - Traffic between a pod and the node it runs on is always allowed, as upstream
//   documents ("traffic to and from the node where a Pod is running is always
//   allowed"): the node's own traffic to its pods (output hook, e.g. kubelet probes)
//   and a pod's traffic to its node's addresses (input hook) meet neither
//   NetworkPolicy nor the BaselineAdminNetworkPolicy. Only an AdminNetworkPolicy,
//   the cluster administrator's explicit word, can deny a pod its own node (e.g. a
//   `networks` peer covering the node's address). Other nodes' addresses are
//   policed like any other address.
// - Peer pods are matched cluster-wide; ipBlock applies to every address, pods
//   included. A named port resolves against the destination pod's container ports
//   (ingress: the selected pod; egress: each peer pod, and pods inside an ipBlock);
//   it never matches a non-pod address.
// - Dispatch costs one map lookup; a packet then meets only the rules of the
//   policies selecting its pod. What changes with pods and labels (set and map
//   elements) is kept out of chain text; chains change with policies and with the
//   combinations of policies that select local pods.
// - Two local pods claiming one address (a stale object): the address gets the
//   intersection of both pods' policy chains (the stricter), with a problem.
import { createHash } from 'node:crypto';
import { memoised } from '../ipam/index.ts';
import type { NftChain, NftMap, NftSet, NftTable } from '../nftables/model.ts';
import {
  mergeRanges,
  parseCidr,
  renderRange,
  subtractRanges,
  type Family,
  type Range,
} from './ranges.ts';
import { compileAdminTiers } from './admin-tier.ts';
import { PodSets } from './podsets.ts';
import {
  PodIndex,
  cmp,
  podKey,
  podProblem,
  canonicalSelector,
  podList,
  type PodEntry,
} from './podindex.ts';
export { canonicalSelector, cmp, type Addr, type PodEntry } from './podindex.ts';
import { checkPolicy, effectivePolicyTypes } from './check.ts';
import {
  PROTOCOLS,
  type AdminAction,
  type CompileInput,
  type CompileStats,
  type LabelSelector,
  type NetworkPolicy,
  type PolicyPod,
  type PolicyProblem,
  type PolicyRule,
  type Protocol,
} from './types.ts';

export const POLICY_FORWARD_CHAIN = 'policy-forward';
/**
 * The netlink log group (NFLOG) of dropped flows in namespaces that asked for a log;
 * the agent reads it (agent/droplog.ts). At most DROP_LOG_RATE packets a second per
 * chain reach it, so a flood costs the kernel and the agent a bounded amount.
 */
export const DROP_LOG_GROUP = 2310;
export const DROP_LOG_RATE = '10/second burst 20 packets';
export const POLICY_INPUT_CHAIN = 'policy-input';
export const DISPATCH_MAPS = {
  ingress: { 4: 'policy-ingress-v4', 6: 'policy-ingress-v6' },
  egress: { 4: 'policy-egress-v4', 6: 'policy-egress-v6' },
} as const;

/** The admin tiers' dispatch maps: ANP (`goto` a group chain) and BANP (`jump`). */
export const ADMIN_MAPS = {
  admin: {
    ingress: { 4: 'admin-ingress-v4', 6: 'admin-ingress-v6' },
    egress: { 4: 'admin-egress-v4', 6: 'admin-egress-v6' },
  },
  baseline: {
    ingress: { 4: 'baseline-ingress-v4', 6: 'baseline-ingress-v6' },
    egress: { 4: 'baseline-egress-v4', 6: 'baseline-egress-v6' },
  },
} as const;

/** Per direction: its entry (ANP tier), the NetworkPolicy-then-BANP tail, the BANP chain. */
export const ADMIN_CHAINS = {
  ingress: { entry: 'policy-ingress', np: 'policy-ingress-np', baseline: 'banp-ingress' },
  egress: { entry: 'policy-egress', np: 'policy-egress-np', baseline: 'banp-egress' },
} as const;

export interface CompileResult {
  table: NftTable;
  problems: PolicyProblem[];
  stats: CompileStats;
  /**
   * Who wrote each policy rule: every allow, deny and pass rule of the fragment ends
   * in `comment "wm-<tag>"`, and this maps the tag to its policy and rule. The drop
   * rules also carry a `counter`, so the agent reads drops per policy off the kernel
   * and `wiremesh explain` names the rule that decided a packet.
   */
  origins: Record<string, RuleOrigin>;
}

/** The policy rule an nft rule of the fragment stands for (see CompileResult.origins). */
export interface RuleOrigin {
  tier: 'AdminNetworkPolicy' | 'NetworkPolicy' | 'BaselineAdminNetworkPolicy';
  direction: Direction;
  /** Allow (the rule returns), Deny (it drops), Pass (on to NetworkPolicy). */
  action: AdminAction;
  /**
   * The policy (namespace '' for the cluster-scoped admin policies). For the drop
   * that closes a NetworkPolicy chain: every policy selecting the pod, none of which
   * allowed the packet.
   */
  policies: { namespace: string; name: string }[];
  /** Position of the rule in spec.ingress / spec.egress; absent for the closing drop. */
  rule?: number;
  /** An admin policy rule's name. */
  ruleName?: string;
  /** Position of the matched peer in the rule's from / to; absent: every address. */
  peer?: number;
}

/** A rule text the compiler renders, with the position of the peer it matches. */
export interface RuleText {
  text: string;
  peer?: number;
}

export type Direction = 'ingress' | 'egress';
export const FAMILIES: readonly Family[] = [4, 6];
const IPX: Record<Family, string> = { 4: 'ip', 6: 'ip6' };
export const ADDR_TYPE: Record<Family, string> = { 4: 'ipv4_addr', 6: 'ipv6_addr' };
export const NFT_PROTO: Record<Protocol, string> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };
const METADATA_NAME = 'kubernetes.io/metadata.name';
export interface CompiledPeer {
  /** Selector peer: namespaces to look in (null = by namespaceSelector) and pod selector. */
  pods?: {
    namespace: string | null;
    namespaceSelector: LabelSelector | null;
    podSelector: LabelSelector | null;
  };
  block?: Record<Family, Range[]>;
  canonical: string;
}

export interface CompiledRule {
  /** null: every address. */
  peers: CompiledPeer[] | null;
  /** Empty (and no named ports): every port and protocol. */
  numeric: Map<Protocol, Range[] | 'all'>;
  named: { protocol: Protocol; name: string }[];
}

interface CompiledPolicy {
  key: string;
  /** Position in name order, in this compile only (a short grouping key). */
  index: number;
  policy: NetworkPolicy;
  types: Set<Direction>;
  rules: Record<Direction, CompiledRule[]>;
}

/** 64 bits of sha256, as hex: stable object names of bounded length. Memoised. */
export const hash: (text: string) => string = memoised((text) =>
  createHash('sha256').update(text).digest('hex').slice(0, 16),
);

export function compileRule(rule: PolicyRule, namespace: string): CompiledRule {
  let peers: CompiledPeer[] | null = null;
  if (rule.peers.length > 0) {
    peers = rule.peers.map((peer): CompiledPeer => {
      if (peer.ipBlock) {
        const block: Record<Family, Range[]> = { 4: [], 6: [] };
        const cidr = parseCidr(peer.ipBlock.cidr);
        if ('error' in cidr) throw new Error(`unchecked policy: ${cidr.error}`);
        const except = peer.ipBlock.except.flatMap((e) => {
          const ex = parseCidr(e);
          return 'error' in ex ? [] : [ex.range];
        });
        block[cidr.family] = subtractRanges([cidr.range], mergeRanges(except));
        const text = block[cidr.family].map((r) => renderRange(r, cidr.family)).join(',');
        return { block, canonical: JSON.stringify(['block', text]) };
      }
      const ns = peer.namespaceSelector ? null : namespace;
      const pods = {
        namespace: ns,
        namespaceSelector: peer.namespaceSelector ?? null,
        podSelector: peer.podSelector ?? null,
      };
      const canonical = JSON.stringify([
        'pods',
        ns,
        canonicalSelector(peer.namespaceSelector),
        canonicalSelector(peer.podSelector),
      ]);
      return { pods, canonical };
    });
    peers.sort((a, b) => cmp(a.canonical, b.canonical));
    peers = peers.filter((p, i, all) => i === 0 || all[i - 1]?.canonical !== p.canonical);
  }
  const numeric = new Map<Protocol, Range[] | 'all'>();
  const named = new Map<string, { protocol: Protocol; name: string }>();
  for (const port of rule.ports) {
    if (typeof port.port === 'string') {
      named.set(`${port.protocol}/${port.port}`, { protocol: port.protocol, name: port.port });
      continue;
    }
    const prev = numeric.get(port.protocol) ?? [];
    if (prev === 'all') continue;
    if (port.port === undefined) {
      numeric.set(port.protocol, 'all');
    } else {
      const hi = BigInt(port.endPort ?? port.port);
      numeric.set(port.protocol, mergeRanges([...prev, { lo: BigInt(port.port), hi }]));
    }
  }
  return {
    peers,
    numeric,
    named: [...named.entries()].sort(([a], [b]) => cmp(a, b)).map(([, v]) => v),
  };
}

interface PolicyParts {
  types: Set<Direction>;
  fault: string | null;
  rules: Record<Direction, CompiledRule[]>;
}

const compiledPolicies = new Map<string, PolicyParts>();
const compiledByObject = new WeakMap<NetworkPolicy, PolicyParts>();

/**
 * A policy's types, fault and compiled rules, memoised across compiles by the
 * policy's content (a pass recompiles only the policies that changed). What is
 * returned is shared between compiles and never mutated.
 */
function compiledPolicy(policy: NetworkPolicy): PolicyParts {
  // The agent hands the same policy object to every pass until the policy changes:
  // by identity first, without serialising a thousand policies per pass.
  const known = compiledByObject.get(policy);
  if (known) return known;
  const content = JSON.stringify(policy);
  let parts = compiledPolicies.get(content);
  if (parts === undefined) {
    const types = new Set(
      effectivePolicyTypes(policy).map((t): Direction => (t === 'Ingress' ? 'ingress' : 'egress')),
    );
    const fault = checkPolicy(policy);
    const rules = (list: PolicyRule[]) =>
      fault ? [] : list.map((r) => compileRule(r, policy.namespace));
    parts = {
      types,
      fault,
      rules: { ingress: rules(policy.ingress), egress: rules(policy.egress) },
    };
    if (compiledPolicies.size > 20_000) compiledPolicies.clear();
    compiledPolicies.set(content, parts);
  }
  compiledByObject.set(policy, parts);
  return parts;
}

/** The fragment under construction: objects by name, built once each. */
export class FragmentBuilder {
  readonly sets = new Map<string, NftSet>();
  readonly maps = new Map<string, NftMap>();
  readonly chains = new Map<string, NftChain>();
  readonly origins = new Map<string, RuleOrigin>();

  /**
   * `text` with the comment naming its origin. A comment costs a packet nothing: the
   * kernel only stores it.
   */
  tagged(text: string, origin: RuleOrigin): string {
    const tag = `wm-${hash(JSON.stringify(origin)).slice(0, 12)}`;
    this.origins.set(tag, origin);
    return `${text} comment "${tag}"`;
  }

  table(): NftTable {
    const byName = <T extends { name: string }>(m: Map<string, T>) =>
      [...m.values()].sort((a, b) => cmp(a.name, b.name));
    return { sets: byName(this.sets), maps: byName(this.maps), chains: byName(this.chains) };
  }
}

export function compilePolicies(input: CompileInput): CompileResult {
  const problems: PolicyProblem[] = [];
  const namespaceLabels = new Map<string, Record<string, string>>();
  const logNamespaces = new Set(input.namespaces.filter((n) => n.logDrops).map((n) => n.name));
  for (const ns of input.namespaces) {
    namespaceLabels.set(ns.name, { ...ns.labels, [METADATA_NAME]: ns.name });
  }

  const pods = podList(input.pods);
  problems.push(...pods.problems);
  for (const ns of pods.byNamespace.keys()) {
    if (!namespaceLabels.has(ns)) namespaceLabels.set(ns, { [METADATA_NAME]: ns });
  }
  const index = new PodIndex(pods);

  // Policies, compiled once; an invalid one keeps isolating and allows nothing.
  const policies: CompiledPolicy[] = [];
  const seen = new Map<string, number>();
  const sortedPolicies = [...input.policies].sort((a, b) =>
    cmp(`${a.namespace}/${a.name}`, `${b.namespace}/${b.name}`),
  );
  for (const policy of sortedPolicies) {
    const base = `${policy.namespace}/${policy.name}`;
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    const key = n === 0 ? base : `${base}#${n}`;
    const { types, fault, rules } = compiledPolicy(policy);
    if (fault) {
      problems.push({
        kind: 'NetworkPolicy',
        namespace: policy.namespace,
        name: policy.name,
        reason: 'InvalidPolicy',
        message: `${fault}; the pods it selects are isolated and it allows nothing`,
      });
    }
    policies.push({ key, index: policies.length, policy, types, rules });
  }
  const policiesByNamespace = new Map<string, CompiledPolicy[]>();
  for (const p of policies) {
    const list = policiesByNamespace.get(p.policy.namespace) ?? [];
    list.push(p);
    policiesByNamespace.set(p.policy.namespace, list);
  }

  // Local pods, grouped by the list of policies selecting them, per direction.
  const groups: Record<Direction, Map<string, { policies: CompiledPolicy[]; pods: PodEntry[] }>> = {
    ingress: new Map(),
    egress: new Map(),
  };
  const local = pods.on(input.self);
  const isolated: Record<Direction, number> = { ingress: 0, egress: 0 };
  // Each policy's local pods through the label index (a policy selects a few pods
  // of its namespace), appended in policy order: the lists come out as filtering
  // every local pod against every policy of its namespace would give them.
  const selectingOf: Record<Direction, Map<PodEntry, CompiledPolicy[]>> = {
    ingress: new Map(),
    egress: new Map(),
  };
  if (local.length > 0) {
    for (const p of policies) {
      const selected = index.selectOn(p.policy.namespace, p.policy.podSelector, input.self);
      for (const dir of ['ingress', 'egress'] as const) {
        if (!p.types.has(dir)) continue;
        for (const e of selected) {
          const list = selectingOf[dir].get(e);
          if (list) list.push(p);
          else selectingOf[dir].set(e, [p]);
        }
      }
    }
  }
  for (const e of local) {
    for (const dir of ['ingress', 'egress'] as const) {
      const selecting = selectingOf[dir].get(e);
      if (!selecting) continue;
      isolated[dir]++;
      // Grouped on positions (short); the chain is named after the policies' keys.
      const key =
        selecting.length === 1
          ? String(selecting[0]?.index)
          : selecting.map((p) => p.index).join(',');
      const group = groups[dir].get(key);
      if (group) group.pods.push(e);
      else groups[dir].set(key, { policies: selecting, pods: [e] });
    }
  }

  const out = new FragmentBuilder();
  const sets = new PodSets(out, index, namespaceLabels, input.self);

  /**
   * A rule's nft rules: one per (peer, family, protocol), each ending in `verdict`
   * (`return` for NetworkPolicy's allow rules). `ingressNamed` names the set that
   * resolves the rule's named ports against the local pods it protects.
   */
  const ruleTexts = (
    dir: Direction,
    rule: CompiledRule,
    verdict: string,
    ingressNamed: (f: Family) => string,
  ): RuleText[] => {
    const side = dir === 'ingress' ? 'saddr' : 'daddr';
    const targets: (CompiledPeer | null)[] = rule.peers ?? [null];
    const l4: string[][] = [];
    if (rule.numeric.size === 0 && rule.named.length === 0) l4.push([]);
    for (const proto of PROTOCOLS) {
      const ports = rule.numeric.get(proto);
      if (ports === 'all') l4.push([`meta l4proto ${NFT_PROTO[proto]}`]);
      else if (ports) l4.push([`${NFT_PROTO[proto]} dport { ${ports.map(portText).join(', ')} }`]);
    }
    const texts: RuleText[] = [];
    for (const match of l4) {
      for (const [i, peer] of targets.entries()) {
        if (!peer) {
          texts.push({ text: [...match, verdict].join(' ') });
          continue;
        }
        for (const f of FAMILIES) {
          const text = [`${IPX[f]} ${side} @${sets.peerSet(peer, f)}`, ...match, verdict].join(' ');
          texts.push({ text, peer: i });
        }
      }
    }
    if (rule.named.length > 0) {
      for (const [i, peer] of targets.entries()) {
        const at = peer ? { peer: i } : {};
        for (const f of FAMILIES) {
          const lookup = `${IPX[f]} daddr . meta l4proto . th dport`;
          if (dir === 'ingress') {
            const from = peer ? [`${IPX[f]} saddr @${sets.peerSet(peer, f)}`] : [];
            const text = [...from, `${lookup} @${ingressNamed(f)}`, verdict].join(' ');
            texts.push({ text, ...at });
          } else {
            const text = [`${lookup} @${sets.egressNamedSet(rule, peer, f)}`, verdict].join(' ');
            texts.push({ text, ...at });
          }
        }
      }
    }
    return texts;
  };

  // Group chains and dispatch elements.
  const dispatch: Record<
    Direction,
    Record<Family, Map<string, { value: bigint; chains: string[]; pods: PolicyPod[] }>>
  > = {
    ingress: { 4: new Map(), 6: new Map() },
    egress: { 4: new Map(), 6: new Map() },
  };
  for (const dir of ['ingress', 'egress'] as const) {
    const tag = dir === 'ingress' ? 'in' : 'eg';
    for (const group of groups[dir].values()) {
      const key = group.policies.map((p) => p.key).join('\n');
      const name = `pol-${tag}-${hash(`${dir}\n${key}`)}`;
      const rules: string[] = [];
      const have = new Set<string>();
      const origin = (p: CompiledPolicy): Pick<RuleOrigin, 'tier' | 'direction' | 'policies'> => ({
        tier: 'NetworkPolicy',
        direction: dir,
        policies: [{ namespace: p.policy.namespace, name: p.policy.name }],
      });
      for (const p of group.policies) {
        for (const [i, rule] of p.rules[dir].entries()) {
          const named = (f: Family) =>
            sets.ingressNamedSet(p.policy.namespace, p.policy.podSelector, rule, f);
          for (const { text, peer } of ruleTexts(dir, rule, 'return', named)) {
            // The same match from a later policy never fires: the first one returns.
            if (!have.has(text)) {
              const at = peer === undefined ? {} : { peer };
              rules.push(out.tagged(text, { ...origin(p), action: 'Allow', rule: i, ...at }));
            }
            have.add(text);
          }
        }
      }
      // Only packets no rule allowed get here: the counter costs allowed traffic nothing,
      // and so does the log of a namespace that asked for one (absent otherwise).
      if (group.policies.some((p) => logNamespaces.has(p.policy.namespace)))
        rules.push(`limit rate ${DROP_LOG_RATE} log group ${DROP_LOG_GROUP}`);
      rules.push(
        out.tagged('counter drop', {
          tier: 'NetworkPolicy',
          direction: dir,
          action: 'Deny',
          policies: group.policies.map((p) => ({
            namespace: p.policy.namespace,
            name: p.policy.name,
          })),
        }),
      );
      out.chains.set(name, { name, rules });
      for (const e of group.pods) {
        for (const a of e.addrs) {
          const slot = dispatch[dir][a.family].get(a.text);
          if (!slot) {
            dispatch[dir][a.family].set(a.text, { value: a.value, chains: [name], pods: [e.pod] });
            continue;
          }
          if (!slot.chains.includes(name)) slot.chains.push(name);
          slot.pods.push(e.pod);
        }
      }
    }
  }

  // Addresses claimed by more than one local pod.
  const claims = new Map<string, PolicyPod[]>();
  for (const e of local) {
    for (const a of e.addrs) {
      const pods = claims.get(a.text);
      if (pods) pods.push(e.pod);
      else claims.set(a.text, [e.pod]);
    }
  }
  const conflicts = [...claims.entries()].filter(([, pods]) => pods.length > 1);
  for (const [addr, pods] of conflicts.sort(([a], [b]) => cmp(a, b))) {
    const [first] = pods as [PolicyPod];
    problems.push(
      podProblem(
        first,
        'AddressConflict',
        `address ${addr} is claimed by local pods ${pods.map(podKey).join(', ')}; ` +
          'it gets the policies of all of them',
      ),
    );
  }

  for (const dir of ['ingress', 'egress'] as const) {
    for (const f of FAMILIES) {
      const slots = [...dispatch[dir][f].entries()].sort(([, a], [, b]) =>
        a.value < b.value ? -1 : a.value > b.value ? 1 : 0,
      );
      const elements: Record<string, string> = {};
      for (const [addr, slot] of slots) {
        if (slot.chains.length === 1) {
          elements[addr] = `jump ${slot.chains[0]}`;
          continue;
        }
        const chains = [...slot.chains].sort();
        // Every chain returns on allow and drops otherwise: in sequence, the intersection.
        const name = `pol-${dir === 'ingress' ? 'inx' : 'egx'}-${hash(chains.join('\n'))}`;
        out.chains.set(name, { name, rules: chains.map((c) => `jump ${c}`) });
        elements[addr] = `jump ${name}`;
      }
      const name = DISPATCH_MAPS[dir][f];
      out.maps.set(name, { name, type: ADDR_TYPE[f], value: 'verdict', elements });
    }
  }

  let adminStats: Pick<CompileStats, 'adminPolicies' | 'baselinePolicy'> = {};
  const admin =
    (input.adminPolicies?.length ?? 0) > 0 ||
    (input.baselinePolicy !== undefined && input.baselinePolicy !== null);
  if (!admin) {
    // No admin policies: NetworkPolicy alone, dispatched straight from the entry chains.
    // Conntrack only while some local pod is isolated: a `ct` expression makes the
    // kernel track every packet in the node's namespace (about 6% of a forwarded pod
    // stream's throughput here), which a node without isolated pods need not pay.
    const isolatedHere = (['ingress', 'egress'] as const).some((dir) =>
      FAMILIES.some((f) => dispatch[dir][f].size > 0),
    );
    // Nor the dispatch: four map lookups that cannot hit. The chain stays, empty, and
    // the agent does not jump to an empty chain.
    out.chains.set(POLICY_FORWARD_CHAIN, {
      name: POLICY_FORWARD_CHAIN,
      rules: isolatedHere
        ? [
            'ct state established,related return',
            'ct state invalid drop',
            `ip saddr vmap @${DISPATCH_MAPS.egress[4]}`,
            `ip6 saddr vmap @${DISPATCH_MAPS.egress[6]}`,
            `ip daddr vmap @${DISPATCH_MAPS.ingress[4]}`,
            `ip6 daddr vmap @${DISPATCH_MAPS.ingress[6]}`,
          ]
        : [],
    });
  } else {
    adminStats = compileAdminTiers({
      input,
      out,
      local,
      groups,
      namespaceLabels,
      problems,
      ruleTexts,
      namedSet: (key, f, elements) => sets.namedSet(key, f, elements),
      namedElements: (rule, pods) => sets.namedElements(rule, pods),
    });
  }

  sets.keep();
  const table = out.table();
  const elementCount =
    table.sets.reduce((n, s) => n + s.elements.length, 0) +
    table.maps.reduce((n, m) => n + Object.keys(m.elements).length, 0);
  return {
    table,
    problems,
    origins: Object.fromEntries(out.origins),
    stats: {
      pods: pods.entries.length,
      localPods: local.length,
      policies: policies.length,
      isolatedIngress: isolated.ingress,
      isolatedEgress: isolated.egress,
      chains: table.chains.length,
      sets: table.sets.length,
      maps: table.maps.length,
      rules: table.chains.reduce((n, c) => n + c.rules.length, 0),
      elements: elementCount,
      ...adminStats,
    },
  };
}

function portText(r: Range): string {
  return r.lo === r.hi ? `${r.lo}` : `${r.lo}-${r.hi}`;
}
