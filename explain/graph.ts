// `wiremesh graph`, the pure part: the mesh as a picture. Nodes with their pod
// blocks; an edge per pair of nodes, labelled with each pool's path between them
// (both directions when they differ), green when every path is WireGuard, orange
// when some pool crosses in plaintext, red and dashed when a Required pool is
// blocked. The paths come from each node's plan as `explain` makes it (the agent's
// planners over the API objects); what the API cannot tell comes from the agents
// (AgentFacts, read from their metrics endpoints by the command): a node whose
// agent does not answer, and a peer pair without a WireGuard handshake for 3
// minutes. A node whose key the mesh refuses is marked with the reason, a node
// with a refused IPAMBlock with the block and reason.
//
// Beyond the cluster: each Peer object (a WireGuard peer outside Kubernetes) and
// each remote cluster's nodes (in a box per RemoteCluster), with an edge from every
// local node, always WireGuard. Whether a node's agent programmed such a peer, and
// its handshake, come from that agent too: a peer missing from its series was
// refused or not yet programmed there (`wiremesh status` on the node says why).
// Rendered as Graphviz DOT; `dot -Tsvg` makes the SVG.
import type { Path } from '../agent/paths.ts';
import type { ClusterSnapshot, RemoteView } from './snapshot.ts';
import { sourcePlan } from './explain.ts';

/** What one node's agent says, or null when it did not answer. */
export interface AgentFacts {
  /**
   * Seconds since the latest handshake (Infinity: never) per programmed peer, named
   * as the agent's metrics name them: a node, `peer/NAME`, `CLUSTER/NODE`.
   */
  handshakeAge: Map<string, number>;
}

export const HANDSHAKE_STALE_S = 180;

export interface GraphNode {
  /** A node's name; `peer/NAME` for a Peer; `CLUSTER/NODE` for a remote cluster's node. */
  name: string;
  kind: 'node' | 'peer' | 'remote';
  /** The RemoteCluster of a remote node. */
  cluster?: string;
  /** Pod blocks; a Peer's allowed IPs (pool `peer`). */
  blocks: { cidr: string; pool: string }[];
  problems: string[];
}

export interface GraphEdge {
  a: string;
  b: string;
  /**
   * Per pool of either node's blocks: the path a -> b (to b's blocks) and b -> a.
   * An edge to a Peer or a remote node has none: it is WireGuard.
   */
  paths: { pool: string; ab: Path | null; ba: Path | null }[];
  state: 'encrypted' | 'plaintext' | 'blocked';
  problems: string[];
}

export interface MeshGraph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** RemoteClusters that could not be read, with the error. */
  clusters: { name: string; error: string | null }[];
}

const byCidr = (x: { cidr: string }, y: { cidr: string }) => (x.cidr < y.cidr ? -1 : 1);

export function planGraph(
  s: ClusterSnapshot,
  agents: ReadonlyMap<string, AgentFacts | null>,
  remotes: readonly RemoteView[] = [],
): MeshGraph {
  const names = s.nodes.map((n) => n.name).sort();
  const plans = new Map(
    s.nodes.map((n) => {
      try {
        return [n.name, sourcePlan(s, n)] as const;
      } catch {
        return [n.name, null] as const;
      }
    }),
  );
  const nodes: GraphNode[] = names.map((name) => {
    const n = s.nodes.find((x) => x.name === name);
    const problems: string[] = [];
    if (!agents.get(name)) problems.push('agent not answering');
    for (const p of n?.problems ?? []) problems.push(`refused: ${p.reason}`);
    if (n && !n.publicKey && (n.problems.length ?? 0) === 0) problems.push('no WireGuard key');
    for (const r of s.refusedBlocks.filter((b) => b.node === name))
      problems.push(`refused block ${r.cidr}: ${r.reason}`);
    return {
      name,
      kind: 'node',
      blocks: s.blocks
        .filter((b) => b.node === name)
        .map((b) => ({ cidr: b.cidr, pool: b.pool }))
        .sort(byCidr),
      problems,
    };
  });
  const pathTo = (from: string, to: string, pool: string): Path | null => {
    const plan = plans.get(from);
    const block = plan?.blocks.find((b) => b.node === to && b.pool === pool);
    return block?.path ?? null;
  };
  const edges: GraphEdge[] = [];
  for (const [i, a] of names.entries()) {
    for (const b of names.slice(i + 1)) {
      const pools = [
        ...new Set(s.blocks.filter((x) => x.node === a || x.node === b).map((x) => x.pool)),
      ].sort();
      const paths = pools.map((pool) => ({ pool, ab: pathTo(a, b, pool), ba: pathTo(b, a, pool) }));
      const all = paths.flatMap((p) => [p.ab, p.ba]).filter((p): p is Path => p !== null);
      const state = all.includes('blocked')
        ? 'blocked'
        : all.length > 0 && all.every((p) => p === 'wireguard')
          ? 'encrypted'
          : 'plaintext';
      const problems: string[] = [];
      for (const [x, y] of [
        [a, b],
        [b, a],
      ] as const) {
        const facts = agents.get(x);
        const age = facts?.handshakeAge.get(y);
        if (facts && all.includes('wireguard') && (age === undefined || age > HANDSHAKE_STALE_S))
          problems.push(
            `${x}: no handshake with ${y} ${age === undefined || !Number.isFinite(age) ? 'ever' : `for ${Math.round(age)} s`}`,
          );
      }
      if (state === 'blocked') problems.push('a Required pool is blocked');
      edges.push({ a, b, paths, state, problems });
    }
  }

  // Outside the cluster: every local node peers with each of them over WireGuard.
  const outside: GraphNode[] = [
    ...[...s.peers]
      .sort((x, y) => (x.name < y.name ? -1 : 1))
      .map((p): GraphNode => ({
        name: `peer/${p.name}`,
        kind: 'peer',
        blocks: p.allowedIPs.map((cidr) => ({ cidr, pool: 'peer' })),
        problems: p.endpoint ? [] : ['no endpoint: it connects first'],
      })),
    ...remotes.flatMap((r) =>
      [...r.nodes]
        .sort((x, y) => (x.name < y.name ? -1 : 1))
        .map((n): GraphNode => {
          const blocks = r.blocks
            .filter((b) => b.node === n.name)
            .map((b) => ({ cidr: b.cidr, pool: b.pool }))
            .sort(byCidr);
          const problems = n.publicKey ? [] : ['no WireGuard key'];
          if (blocks.length === 0) problems.push('no imported blocks');
          return { name: `${r.name}/${n.name}`, kind: 'remote', cluster: r.name, blocks, problems };
        }),
    ),
  ];
  for (const o of outside) {
    for (const a of names) {
      const facts = agents.get(a);
      const age = facts?.handshakeAge.get(o.name);
      const problems: string[] = [];
      if (facts && age === undefined) problems.push(`${a}: not programmed`);
      else if (facts && age !== undefined && age > HANDSHAKE_STALE_S)
        problems.push(
          `${a}: no handshake ${Number.isFinite(age) ? `for ${Math.round(age)} s` : 'ever'}`,
        );
      edges.push({ a, b: o.name, paths: [], state: 'encrypted', problems });
    }
  }
  return {
    nodes: [...nodes, ...outside],
    edges,
    clusters: remotes.map((r) => ({ name: r.name, error: r.error })),
  };
}

const COLOURS = { encrypted: 'darkgreen', plaintext: 'darkorange', blocked: 'red' } as const;

/** DOT text of the graph; ids are the node names, quoted. */
export function renderDot(g: MeshGraph): string {
  const q = (text: string) => `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const lines = [
    'graph wiremesh {',
    '  graph [fontname="Helvetica", label="wiremesh mesh", labelloc=t];',
    '  node [shape=box, style=rounded, fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=10];',
  ];
  const nodeLine = (n: GraphNode, indent: string) => {
    const label = [
      n.name,
      ...n.blocks.map((b) => (n.kind === 'peer' ? b.cidr : `${b.cidr} (${b.pool})`)),
      ...n.problems.map((p) => `! ${p}`),
    ];
    const colour = n.problems.length > 0 ? 'red' : 'black';
    const shape = n.kind === 'peer' ? ', shape=ellipse, style=solid' : '';
    return `${indent}${q(n.name)} [label=${q(label.join('\n'))}, color=${colour}${shape}];`;
  };
  for (const n of g.nodes.filter((x) => x.kind !== 'remote')) lines.push(nodeLine(n, '  '));
  for (const c of g.clusters) {
    // Graphviz draws a subgraph whose name starts with `cluster` as a box.
    lines.push(`  subgraph ${q(`cluster_${c.name}`)} {`);
    const title = [`cluster ${c.name}`, ...(c.error ? [`! cannot be read: ${c.error}`] : [])];
    lines.push(`    label=${q(title.join('\n'))}; color=${c.error ? 'red' : 'gray'};`);
    for (const n of g.nodes.filter((x) => x.cluster === c.name)) lines.push(nodeLine(n, '    '));
    lines.push('  }');
  }
  for (const e of g.edges) {
    const paths =
      e.paths.length === 0
        ? ['wireguard']
        : e.paths.map((p) =>
            p.ab === p.ba
              ? `${p.pool}: ${p.ab ?? '-'}`
              : `${p.pool}: ${p.ab ?? '-'} / ${p.ba ?? '-'}`,
          );
    const label = [...paths, ...e.problems.map((p) => `! ${p}`)].join('\n');
    const style = e.state === 'blocked' || e.problems.length > 0 ? 'dashed' : 'solid';
    lines.push(
      `  ${q(e.a)} -- ${q(e.b)} [label=${q(label)}, color=${COLOURS[e.state]}, fontcolor=${COLOURS[e.state]}, style=${style}];`,
    );
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Handshake ages per peer out of an agent's metrics text. */
export function handshakeAges(metrics: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of metrics.split('\n')) {
    const m = /^wiremesh_wireguard_peer_latest_handshake_age_seconds\{([^}]*)\} (\S+)$/.exec(line);
    const peer = m?.[1] && /peer="([^"]*)"/.exec(m[1])?.[1];
    if (m && peer) out.set(peer, m[2] === '+Inf' ? Infinity : Number(m[2]));
  }
  return out;
}
