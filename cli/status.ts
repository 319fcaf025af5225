// `wiremesh status`: on a node, what its agent reports over /run/wiremesh/agent.sock
// (peers with endpoint, path, handshake age and bytes; pools and their encryption
// state; IPAM usage; policy counts); with --cluster, what the apiserver holds
// (Nodes with their wiremesh annotations, IPPools, IPAMBlocks: usage per node and
// pool). `-o json|yaml` print the data as it came (node) or as collected (cluster);
// the default is a table, `-o wide` adds columns and the block list.
//
// The renderers are pure (the clock passed in), so their output is pinned by golden
// snapshots; collecting is the thin part: one socket call, or three API lists.
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { stringify as toYaml } from 'yaml';
import type { V1Node } from '@kubernetes/client-node';
import { kubeClient, type KubeClient } from '../kube/index.ts';
import {
  callAgent,
  meshNodeFromK8s,
  ANNOTATION_HOST_ENCRYPTION,
  type AgentStatus,
} from '../agent/index.ts';
import {
  ipPoolFromK8s,
  ipamBlockFromK8s,
  IPAM_GROUP,
  IPAM_VERSION,
  IPPOOL_PLURAL,
  IPAMBLOCK_PLURAL,
  type IpamUsage,
  type IpamProblem,
} from '../ipam/index.ts';
// IPAM's CIDR arithmetic directly: the index would load the IPAM engine for nothing.
import { cidrSize, mustParseCidr } from '../ipam/cidr.ts';

export const DEFAULT_SOCKET = '/run/wiremesh/agent.sock';

/** The agent's /status reply: its status plus this node's IPAM usage. */
export type NodeStatus = AgentStatus & { ipam?: IpamUsage[] };

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml';

export interface RenderOptions {
  wide?: boolean;
  /** Unix milliseconds, for handshake ages. */
  now?: number;
}

// ---------------------------------------------------------------- formatting

/** Columns padded to their widest cell, two spaces apart, no trailing blanks. */
export function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [headers, ...rows].map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n}B` : `${v.toFixed(1)}${units[u]}`;
}

/** '42s', '5m3s', '2h10m', 'never' for a handshake at unix seconds. */
export function formatAge(unixSeconds: number, nowMs: number): string {
  if (!unixSeconds) return 'never';
  const s = Math.max(0, Math.round(nowMs / 1000 - unixSeconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d`;
}

/** '1 block', '3 blocks'. */
function count(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}

function percent(part: number, whole: number): string {
  return whole ? `${Math.round((100 * part) / whole)}%` : '-';
}

// ---------------------------------------------------------------- a node

export interface PeerRow {
  node: string;
  publicKey: string | null;
  endpoint: string | null;
  /** The paths this node sends the peer's blocks over ('wireguard' when unknown). */
  paths: string[];
  latestHandshake: number | null;
  rxBytes: number | null;
  txBytes: number | null;
  allowedIPs: string[];
}

/**
 * One row per peer: the WireGuard peers `wg show` reports, plus the nodes whose
 * blocks go over another path (VXLAN, IP-in-IP, native) with no WireGuard peer.
 */
export function peerRows(s: NodeStatus): PeerRow[] {
  const pathsOf = new Map<string, Set<string>>();
  for (const b of s.paths?.blocks ?? []) {
    if (b.node === s.node) continue;
    pathsOf.set(b.node, (pathsOf.get(b.node) ?? new Set()).add(b.path));
  }
  const rows: PeerRow[] = s.peers.map((p) => ({
    node: p.node,
    publicKey: p.publicKey,
    endpoint: p.endpoint,
    paths: [...(pathsOf.get(p.node) ?? ['wireguard'])].sort(),
    latestHandshake: p.latestHandshake,
    rxBytes: p.rxBytes,
    txBytes: p.txBytes,
    allowedIPs: p.allowedIPs,
  }));
  const seen = new Set(rows.map((r) => r.node));
  for (const [node, paths] of pathsOf) {
    if (seen.has(node)) continue;
    rows.push({
      node,
      publicKey: null,
      endpoint: null,
      paths: [...paths].sort(),
      latestHandshake: null,
      rxBytes: null,
      txBytes: null,
      allowedIPs: [],
    });
  }
  return rows.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

/**
 * A pool's encryption as this node applies it: 'encrypted' when every remote block
 * of the pool goes over WireGuard, 'plaintext (fallback)' or 'blocked' when a pool
 * asking for WireGuard cannot have it, 'plaintext' for a pool that asks for none,
 * '-' when no remote block of the pool exists yet.
 */
export function poolEncryptionState(s: NodeStatus, pool: string, encryption: string): string {
  const remote = (s.paths?.blocks ?? []).filter((b) => b.pool === pool && b.node !== s.node);
  if (!remote.length) return '-';
  const paths = new Set(remote.map((b) => b.path));
  if (encryption !== 'WireGuard') return paths.has('wireguard') ? 'partly encrypted' : 'plaintext';
  if (paths.has('blocked')) return 'blocked';
  return paths.size === 1 && paths.has('wireguard') ? 'encrypted' : 'plaintext (fallback)';
}

export function renderNodeStatus(s: NodeStatus, opts: RenderOptions = {}): string {
  const now = opts.now ?? Date.now();
  const w = s.wireguard;
  const r = s.reconcile;
  const lines = [
    `node ${s.node}: WireGuard ${w.device} (${w.mode}) port ${w.listenPort}, tunnel address ${w.tunnelAddress ?? '-'}, MTU ${w.mtu ?? '-'}`,
    `public key ${w.publicKey || '-'}`,
    `reconcile: ${count(r.passes, 'pass', 'passes')}, ${count(r.failures, 'failure')}, last ${r.lastDurationMs.toFixed(1)} ms${r.lastError ? `, last error: ${r.lastError}` : ''}${s.synced ? '' : ' (not synced yet)'}`,
  ];
  const available = s.paths?.available;
  if (available)
    lines.push(
      `encapsulations: ${available.map((a) => (a.available ? a.kind : `${a.kind} (unavailable)`)).join(', ')}`,
    );

  const peers = peerRows(s);
  lines.push('');
  const peerHead = ['PEER', 'ENDPOINT', 'PATH', 'HANDSHAKE', 'RX', 'TX'];
  if (opts.wide) peerHead.push('PUBLIC KEY', 'ALLOWED IPS');
  lines.push(
    ...table(
      peerHead,
      peers.map((p) => {
        const row = [
          p.node,
          p.endpoint ?? '-',
          p.paths.join(','),
          p.latestHandshake === null ? '-' : formatAge(p.latestHandshake, now),
          p.rxBytes === null ? '-' : formatBytes(p.rxBytes),
          p.txBytes === null ? '-' : formatBytes(p.txBytes),
        ];
        if (opts.wide) row.push(p.publicKey ?? '-', p.allowedIPs.join(',') || '-');
        return row;
      }),
    ),
  );
  if (!peers.length) lines.push('(no peers)');

  const pools = s.paths?.pools ?? [];
  if (pools.length) {
    lines.push('');
    lines.push(
      ...table(
        ['POOL', 'CIDR', 'ENCRYPTION', 'STATE', 'ENCAPSULATION', 'NAT'],
        pools.map((p) => [
          p.name,
          p.cidr,
          p.encryption === 'WireGuard' ? `WireGuard (${p.encryptionMode})` : p.encryption,
          poolEncryptionState(s, p.name, p.encryption),
          p.encapsulation,
          p.natOutgoing ? 'yes' : 'no',
        ]),
      ),
    );
  }

  lines.push('');
  const ipam = s.ipam ?? [];
  const blocks = ipam.flatMap((u) => u.blocks);
  if (ipam.length) {
    const allocated = ipam.reduce((n, u) => n + u.allocated, 0);
    const capacity = ipam.reduce((n, u) => n + u.capacity, 0);
    lines.push(
      `ipam: ${allocated} of ${capacity} addresses allocated (${percent(allocated, capacity)}) in ${count(blocks.filter((b) => b.state === 'held').length, 'block')}`,
    );
  } else lines.push('ipam: not reported by this agent');
  const stats = s.policy.stats;
  if (stats) {
    let text = `policy: ${count(stats.policies, 'NetworkPolicy', 'NetworkPolicies')}, ${count(stats.rules, 'rule')}, ${count(stats.localPods, 'local pod')} (${stats.isolatedIngress} isolated for ingress, ${stats.isolatedEgress} for egress)`;
    if (stats.adminPolicies !== undefined)
      text += `, ${stats.adminPolicies} AdminNetworkPolicies${stats.baselinePolicy ? ' and a BaselineAdminNetworkPolicy' : ''}`;
    lines.push(text + `, ${count(s.policy.problems, 'problem')}`);
    if (opts.wide)
      lines.push(
        `policy table: ${stats.chains} chains, ${stats.sets} sets, ${stats.maps} maps, ${stats.elements} elements`,
      );
  } else lines.push('policy: not compiled yet');
  if (s.routes) {
    // The route watch: what someone else removed and how fast it came back.
    const r = s.routes;
    let text = `routes: ${r.watching ? 'watched' : 'not watched (resync only)'}; ${count(r.repairs, 'repair')}`;
    if (r.lastRepair)
      text += ` (the last at ${r.lastRepair.at}: ${count(r.lastRepair.count, 'route')} removed, ${r.lastRepair.restoredMs === null ? '' : `back in ${Math.round(r.lastRepair.restoredMs)} ms, `}verified in ${Math.round(r.lastRepair.repairedMs)} ms)`;
    lines.push(`${text}; ${count(r.restored, 'route')} written back`);
  }

  if (opts.wide && blocks.length) {
    lines.push('');
    lines.push(
      ...table(
        ['BLOCK', 'POOL', 'STATE', 'ALLOCATED', 'CAPACITY'],
        blocks.map((b) => [
          b.cidr,
          b.pool || '-',
          b.state,
          String(b.allocated),
          String(b.capacity),
        ]),
      ),
    );
  }
  if (opts.wide && s.paths?.blocks.length) {
    lines.push('');
    lines.push(
      ...table(
        ['REMOTE BLOCK', 'NODE', 'POOL', 'PATH', 'REASON'],
        s.paths.blocks
          .filter((b) => b.node !== s.node)
          .map((b) => [b.cidr, b.node, b.pool, b.path, b.reason || '-']),
      ),
    );
  }
  if (s.remotes?.length) {
    // Other clusters (RemoteCluster objects): each remote node's handshake age.
    lines.push('');
    lines.push(
      ...table(
        ['REMOTE CLUSTER', 'API', 'NODE', 'HANDSHAKE'],
        s.remotes.flatMap((rc) => {
          const api = !rc.synced ? 'connecting' : rc.reachable ? 'watching' : 'unreachable';
          if (!rc.peers.length) return [[rc.name, api, '-', '-']];
          return rc.peers.map((p) => [
            rc.name,
            api,
            p.node.slice(rc.name.length + 1),
            formatAge(p.latestHandshake, now),
          ]);
        }),
      ),
    );
  }
  if (s.bgp) {
    // BGP for the natively routed plaintext pools: each session and what crosses it.
    const b = s.bgp;
    lines.push('');
    lines.push(
      `bgp: announcing ${b.announced.length ? b.announced.join(', ') : 'nothing'}${b.error ? `; ERROR: ${b.error}` : ''}`,
    );
    for (const p of b.problems) lines.push(`bgp: ${p}`);
    if (b.sessions.length)
      lines.push(
        ...table(
          ['BGP SESSION', 'NEIGHBOR', 'AS', 'STATE', 'SINCE', 'ROUTES IN', 'ROUTES OUT'],
          b.sessions.map((x) => [
            x.name,
            x.neighbor,
            String(x.as ?? '-'),
            x.lastError ? `${x.state} (${x.lastError})` : x.state,
            x.since,
            String(x.routesImported),
            String(x.routesExported),
          ]),
        ),
      );
  }
  if (s.refused.length) {
    lines.push('', 'REFUSED');
    for (const x of s.refused) lines.push(`${x.node}: ${x.reason}: ${x.message}`);
  }
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- the cluster

export interface ClusterStatus {
  nodes: {
    name: string;
    internalIP: string | null;
    /** The validated wiremesh.io/wireguard-public-key, null when absent or refused. */
    publicKey: string | null;
    endpoint: string | null;
    endpointOverride: string | null;
    hostEncryption: boolean;
    problems: string[];
    blocks: number;
    allocated: number;
    capacity: number;
  }[];
  pools: {
    name: string;
    cidr: string;
    encryption: string;
    encryptionMode: string;
    encapsulation: string;
    natOutgoing: boolean;
    disabled: boolean;
    blocks: number;
    allocated: number;
    capacity: number;
  }[];
  blocks: { cidr: string; pool: string; node: string; allocated: number; capacity: number }[];
  problems: IpamProblem[];
}

/** The cluster's wiremesh state from the raw API lists (validated as the agents do). */
export function clusterStatus(
  nodes: readonly V1Node[],
  poolItems: readonly unknown[],
  blockItems: readonly unknown[],
): ClusterStatus {
  const problems: IpamProblem[] = [];
  const blocks: ClusterStatus['blocks'] = [];
  for (const raw of blockItems) {
    const { block, problems: p } = ipamBlockFromK8s(raw);
    problems.push(...p);
    if (!block) continue;
    blocks.push({
      cidr: block.cidr,
      pool: block.pool,
      node: block.node,
      allocated: block.allocations.size,
      capacity: Number(cidrSize(mustParseCidr(block.cidr))),
    });
  }
  blocks.sort((a, b) => a.pool.localeCompare(b.pool) || compareText(a.cidr, b.cidr));
  const sum = (of: (b: ClusterStatus['blocks'][number]) => boolean) => {
    const mine = blocks.filter(of);
    return {
      blocks: mine.length,
      allocated: mine.reduce((n, b) => n + b.allocated, 0),
      capacity: mine.reduce((n, b) => n + b.capacity, 0),
    };
  };
  const pools: ClusterStatus['pools'] = [];
  for (const raw of poolItems) {
    const { pool, problems: p } = ipPoolFromK8s(raw);
    problems.push(...p);
    if (!pool) continue;
    pools.push({
      name: pool.name,
      cidr: pool.cidr,
      encryption: pool.encryption,
      encryptionMode: pool.encryptionMode,
      encapsulation: pool.encapsulation,
      natOutgoing: pool.natOutgoing,
      disabled: pool.disabled,
      ...sum((b) => b.pool === pool.name),
    });
  }
  pools.sort((a, b) => compareText(a.name, b.name));
  const out: ClusterStatus['nodes'] = nodes.map((n) => {
    const m = meshNodeFromK8s(n);
    return {
      name: m.name,
      internalIP: m.internalIPs[0] ?? null,
      publicKey: m.publicKey,
      endpoint: m.endpoint,
      endpointOverride: m.endpointOverride,
      hostEncryption: n.metadata?.annotations?.[ANNOTATION_HOST_ENCRYPTION] === 'true',
      problems: m.problems.map((p) => `${p.reason}: ${p.message}`),
      ...sum((b) => b.node === m.name),
    };
  });
  out.sort((a, b) => compareText(a.name, b.name));
  return { nodes: out, pools, blocks, problems };
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function usage(allocated: number, capacity: number): string {
  return `${allocated}/${capacity} (${percent(allocated, capacity)})`;
}

export function renderClusterStatus(c: ClusterStatus, opts: RenderOptions = {}): string {
  const lines: string[] = [];
  const nodeHead = ['NODE', 'INTERNAL IP', 'ENDPOINT', 'KEY', 'BLOCKS', 'ADDRESSES'];
  if (opts.wide) nodeHead.push('PUBLIC KEY', 'HOST ENCRYPTION', 'PROBLEMS');
  lines.push(
    ...table(
      nodeHead,
      c.nodes.map((n) => {
        const row = [
          n.name,
          n.internalIP ?? '-',
          n.endpointOverride ? `${n.endpointOverride} (override)` : (n.endpoint ?? '-'),
          n.publicKey
            ? 'yes'
            : n.problems.some((p) => p.startsWith('InvalidPublicKey'))
              ? 'invalid'
              : 'no',
          String(n.blocks),
          usage(n.allocated, n.capacity),
        ];
        if (opts.wide)
          row.push(
            n.publicKey ?? '-',
            n.hostEncryption ? 'yes' : 'no',
            n.problems.join('; ') || '-',
          );
        return row;
      }),
    ),
  );
  lines.push('');
  lines.push(
    ...table(
      ['POOL', 'CIDR', 'ENCRYPTION', 'ENCAPSULATION', 'NAT', 'BLOCKS', 'ADDRESSES'],
      c.pools.map((p) => [
        p.name + (p.disabled ? ' (disabled)' : ''),
        p.cidr,
        p.encryption === 'WireGuard' ? `WireGuard (${p.encryptionMode})` : p.encryption,
        p.encapsulation,
        p.natOutgoing ? 'yes' : 'no',
        String(p.blocks),
        usage(p.allocated, p.capacity),
      ]),
    ),
  );
  if (!c.pools.length) lines.push('(no IPPools)');
  if (opts.wide) {
    lines.push('');
    lines.push(
      ...table(
        ['BLOCK', 'POOL', 'NODE', 'ALLOCATED', 'CAPACITY'],
        c.blocks.map((b) => [b.cidr, b.pool, b.node, String(b.allocated), String(b.capacity)]),
      ),
    );
  }
  if (c.problems.length) {
    lines.push('', 'PROBLEMS');
    for (const p of c.problems) lines.push(`${p.object}: ${p.reason}: ${p.message}`);
  }
  return lines.join('\n') + '\n';
}

/** Nodes, IPPools and IPAMBlocks from the apiserver. */
export async function collectClusterStatus(kube: KubeClient): Promise<ClusterStatus> {
  const api = `/apis/${IPAM_GROUP}/${IPAM_VERSION}`;
  const [nodes, pools, blocks] = await Promise.all([
    kube.request<{ items: V1Node[] }>('GET', '/api/v1/nodes'),
    kube.request<{ items: unknown[] }>('GET', `${api}/${IPPOOL_PLURAL}`),
    kube.request<{ items: unknown[] }>('GET', `${api}/${IPAMBLOCK_PLURAL}`),
  ]);
  return clusterStatus(nodes.items, pools.items, blocks.items);
}

// ---------------------------------------------------------------- the command

export function parseOutputFormat(text: string | undefined): OutputFormat {
  if (text === undefined) return 'table';
  if (text === 'json' || text === 'yaml' || text === 'wide') return text;
  throw new Error(`unknown output format '${text}': use -o json, -o yaml or -o wide`);
}

/** The data as JSON or YAML, or the table the render function makes of it. */
export function formatOutput(
  data: unknown,
  format: OutputFormat,
  render: (wide: boolean) => string,
): string {
  if (format === 'json') return JSON.stringify(data, null, 2) + '\n';
  if (format === 'yaml') return toYaml(data);
  return render(format === 'wide');
}

/** `wiremesh status [-o json|yaml|wide] [--socket PATH] | --cluster [--kubeconfig FILE]`. */
export async function runStatus(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      output: { type: 'string', short: 'o' },
      socket: { type: 'string', default: DEFAULT_SOCKET },
      cluster: { type: 'boolean', default: false },
      kubeconfig: { type: 'string', default: process.env.KUBECONFIG },
    },
  });
  const format = parseOutputFormat(values.output);
  if (values.cluster) {
    const home = `${process.env.HOME ?? '/root'}/.kube/config`;
    const kube = kubeClient(values.kubeconfig ?? (existsSync(home) ? home : undefined));
    const c = await collectClusterStatus(kube);
    process.stdout.write(formatOutput(c, format, (wide) => renderClusterStatus(c, { wide })));
    return 0;
  }
  const s = (await callAgent(values.socket, 'GET', '/status')) as NodeStatus;
  process.stdout.write(formatOutput(s, format, (wide) => renderNodeStatus(s, { wide })));
  return 0;
}
