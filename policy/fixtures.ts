// The cluster of the upstream network-policy e2e tests, as compiler input, for
// unit tests and benchmarks: namespaces x, y, z (label ns=<name>), pods a, b, c in
// each (label pod=<name>), serving TCP, UDP and SCTP on ports 80 and 81 under the
// upstream port names (serve-80-tcp, ...), dual-stack. Pod a lives on node n1,
// pods b and c on node n2, so both the cross-node and the same-node paths occur.
import { compilePolicies } from './compile.ts';
import type { NftTable } from '../nftables/model.ts';
import { hookVerdict, type Packet } from './nftsim.ts';
import { POLICY_FORWARD_CHAIN } from './compile.ts';
import type {
  AdminNetworkPolicy,
  AdminRule,
  AdminSubject,
  CompileInput,
  LabelSelector,
  NetworkPolicy,
  PolicyNamespace,
  PolicyPod,
  Protocol,
} from './types.ts';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const POD_NAMES = ['a', 'b', 'c'] as const;
export const NODES = ['n1', 'n2'] as const;

export function upstreamNamespaces(): PolicyNamespace[] {
  return NAMESPACES.map((name) => ({ name, labels: { ns: name } }));
}

export function podAddress(ns: string, pod: string, family: 4 | 6): string {
  const n = NAMESPACES.indexOf(ns as 'x') + 1;
  const p = POD_NAMES.indexOf(pod as 'a') + 1;
  return family === 4 ? `100.64.${n}.${p}` : `fd00:64:${n}::${p}`;
}

export function upstreamPods(): PolicyPod[] {
  return NAMESPACES.flatMap((namespace) =>
    POD_NAMES.map((name) => ({
      namespace,
      name,
      labels: { pod: name },
      ips: [podAddress(namespace, name, 4), podAddress(namespace, name, 6)],
      node: name === 'a' ? 'n1' : 'n2',
      ports: [80, 81].flatMap((port) =>
        (['TCP', 'UDP', 'SCTP'] as Protocol[]).map((protocol) => ({
          name: `serve-${port}-${protocol.toLowerCase()}`,
          port,
          protocol,
        })),
      ),
    })),
  );
}

export const ALL: LabelSelector = { matchLabels: {}, matchExpressions: [] };

export function labels(matchLabels: Record<string, string>): LabelSelector {
  return { matchLabels, matchExpressions: [] };
}

/** A policy with upstream defaults for whatever is not given. */
export function policy(p: Partial<NetworkPolicy> & { name: string }): NetworkPolicy {
  return {
    namespace: 'x',
    podSelector: ALL,
    policyTypes: [],
    ingress: [],
    egress: [],
    ...p,
  };
}

/** An AdminNetworkPolicy over every pod unless a subject is given. */
export function anp(
  p: Partial<AdminNetworkPolicy> & { name: string; priority: number },
): AdminNetworkPolicy {
  return { subject: { namespaceSelector: ALL, podSelector: ALL }, ingress: [], egress: [], ...p };
}

/** An admin rule: `action` on traffic from/to pods of the namespaces with label ns=<ns>. */
export function adminRule(
  action: AdminRule['action'],
  peers: AdminRule['peers'],
  ports: AdminRule['ports'] = [],
): AdminRule {
  return { name: `${action.toLowerCase()}-rule`, action, peers, ports };
}

export function nsSubject(ns: string, pod?: string): AdminSubject {
  return { namespaceSelector: labels({ ns }), podSelector: pod ? labels({ pod }) : ALL };
}

export interface Probe {
  from: string;
  to: string;
  proto?: Packet['proto'];
  port?: number;
}

/**
 * Whether a new connection gets through the whole cluster: the source node's
 * forward hook (egress; on a same-node path also ingress) and, across nodes, the
 * destination node's forward hook (ingress). Probed over IPv4 and IPv6; the two
 * must agree or this throws.
 */
export function makeCluster(
  policies: NetworkPolicy[],
  pods = upstreamPods(),
  admin: Pick<CompileInput, 'adminPolicies' | 'baselinePolicy'> = {},
) {
  const tables = new Map<string, NftTable>(
    NODES.map((node) => [
      node,
      compilePolicies({ self: node, pods, namespaces: upstreamNamespaces(), policies, ...admin })
        .table,
    ]),
  );
  const nodeOf = (id: string) => {
    const [ns, name] = id.split('/');
    const pod = pods.find((p) => p.namespace === ns && p.name === name);
    if (!pod) throw new Error(`no pod ${id}`);
    return pod.node;
  };
  const reach = (probe: Probe): boolean => {
    const results = ([4, 6] as const).map((f) => {
      const [sns, sname] = probe.from.split('/') as [string, string];
      const [dns, dname] = probe.to.split('/') as [string, string];
      const pkt: Packet = {
        src: podAddress(sns, sname, f),
        dst: podAddress(dns, dname, f),
        proto: probe.proto ?? 'tcp',
        dport: probe.port ?? 80,
      };
      if (pkt.proto === 'icmp' && f === 6) pkt.proto = 'ipv6-icmp';
      const nodes = [...new Set([nodeOf(probe.from), nodeOf(probe.to)])];
      return nodes.every((n) => {
        const table = tables.get(n);
        if (!table) throw new Error(`no node ${n}`);
        return hookVerdict(table, POLICY_FORWARD_CHAIN, pkt) === 'accept';
      });
    });
    if (results[0] !== results[1]) {
      throw new Error(`IPv4 and IPv6 disagree for ${JSON.stringify(probe)}: ${results.join(' ')}`);
    }
    return results[0] as boolean;
  };
  return { tables, reach };
}

export const POD_IDS = NAMESPACES.flatMap((ns) => POD_NAMES.map((p) => `${ns}/${p}`));

/** The reachability matrix as upstream prints it: rows are sources, `.` blocked. */
export function matrix(cell: (from: string, to: string) => boolean): string {
  const head = ['    ', ...POD_IDS.map((id) => id.padEnd(4))].join('');
  const rows = POD_IDS.map((from) =>
    [from.padEnd(4), ...POD_IDS.map((to) => (cell(from, to) ? 'X' : '.').padEnd(4))].join(''),
  );
  return [head, ...rows].map((r) => r.trimEnd()).join('\n');
}
