// The multi-cluster planner: a pure function from the local cluster's ranges and
// keys, the remote clusters' snapshots and the Peer objects to the WireGuard peers
// and routes one node adds for them, and the conditions of each RemoteCluster.
// No I/O, no clock. Every agent of a cluster computes the same plan, and the remote
// cluster computes the mirror image, so a conflict refused here is refused there.
//
// Decisions:
// - Unit of refusal for overlaps is the remote pool: a remote pool (after
//   importPools) that overlaps a local pool, the local tunnel range or another
//   remote cluster's pool is refused with CIDRConflict; the other side of a
//   remote-remote overlap too, so neither is routed. Its blocks get no AllowedIPs and
//   no routes. Pools that do not overlap are still imported.
// - A remote block is routed only when it lies inside an accepted pool of the name it
//   claims, and to the node it names; two blocks of one cluster that overlap are both
//   refused. A remote node without blocks is no peer (there is nothing to route to it).
// - A Peer object is refused whole when any of its allowedIPs overlaps a local pool,
//   the tunnel range, an imported remote pool (accepted or not) or another Peer.
// - A public key claimed twice (a local node, a remote node, a Peer) programs no
//   non-local claimant, as in planMesh.
// - Only synced remotes take part: a remote that was never listed contributes no
//   ranges and no peers; one that became unreachable keeps its last known state.
import { parseCanonicalCidr, cidrsOverlap, cidrContainsValue, type Cidr } from '../ipam/cidr.ts';
import { formatEndpoint } from '../agent/endpoint.ts';
import { WIREGUARD_DEVICE } from '../agent/annotations.ts';
import type {
  DesiredCondition,
  ExternalPeer,
  MultiClusterProblem,
  RemoteClusterReport,
  RemoteClusterSnapshot,
  RemotePeerPlan,
  RemotePlan,
  RemoteRoutePlan,
} from './types.ts';

export interface RemotePlanInput {
  /** Local IPPools (disabled ones too: their blocks still exist). */
  localPools: readonly { name: string; cidr: string }[];
  /** The local tunnel range (the agent's tunnel-cidr setting). */
  tunnelCIDR: string;
  /** Public keys of the local nodes, this one included, by key -> node name. */
  localKeys: ReadonlyMap<string, string>;
  remotes: readonly RemoteClusterSnapshot[];
  peers: readonly ExternalPeer[];
  /** Port assumed for a remote node that publishes no endpoint (its InternalIP is used). */
  listenPort: number;
  /** This node's tunnel address: the source of the routes; without it no routes are planned. */
  tunnelAddress?: string;
}

interface Range {
  cidr: Cidr;
  text: string;
  /** Who holds it, for messages: `local pool default-ipv4`, `RemoteCluster b pool x`. */
  owner: string;
}

function mustCidr(text: string, what: string): Cidr {
  const p = parseCanonicalCidr(text);
  if (!p.ok) throw new Error(`${what}: ${p.reason}`);
  return p.value;
}

const byName = <T extends { name: string }>(a: T, b: T) =>
  a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

export function planRemotePeers(input: RemotePlanInput): RemotePlan {
  const refused: MultiClusterProblem[] = [];
  const local: Range[] = [
    ...input.localPools.map((p) => ({
      cidr: mustCidr(p.cidr, `local pool ${p.name}`),
      text: p.cidr,
      owner: `local pool ${p.name}`,
    })),
    {
      cidr: mustCidr(input.tunnelCIDR, 'tunnel CIDR'),
      text: input.tunnelCIDR,
      owner: 'the local tunnel range',
    },
  ];
  const remotes = [...input.remotes].sort(byName);
  const synced = remotes.filter((r) => r.synced);

  // Candidate pools per remote: the imported ones that exist there.
  const candidates = new Map<string, Range[]>();
  const unknownPools = new Map<string, string[]>();
  for (const r of synced) {
    for (const p of r.problems) refused.push(p);
    const wanted = r.importPools ? new Set(r.importPools) : null;
    const pools = r.pools.filter((p) => !wanted || wanted.has(p.name)).sort(byName);
    const missing = r.importPools?.filter((name) => !r.pools.some((p) => p.name === name)) ?? [];
    unknownPools.set(r.name, missing);
    for (const name of missing) {
      refused.push({
        object: `RemoteCluster/${r.name}`,
        reason: 'UnknownPool',
        message: `spec.importPools names ${name}, which the remote cluster does not have`,
      });
    }
    candidates.set(
      r.name,
      pools.map((p) => ({
        cidr: mustCidr(p.cidr, `${r.name} pool ${p.name}`),
        text: p.cidr,
        owner: `RemoteCluster ${r.name} pool ${p.name}`,
      })),
    );
  }

  // Pool conflicts: against local ranges and against other remotes' candidates.
  const conflicts = new Map<string, string[]>(); // remote -> messages
  const refusedPools = new Map<string, Set<string>>(); // remote -> pool owners refused
  const refusePool = (remote: string, pool: Range, other: Range) => {
    const set = refusedPools.get(remote) ?? new Set<string>();
    refusedPools.set(remote, set);
    set.add(pool.owner);
    const msgs = conflicts.get(remote) ?? [];
    conflicts.set(remote, msgs);
    msgs.push(
      `${pool.owner.replace(`RemoteCluster ${remote} `, '')} ${pool.text} overlaps ${other.owner} ${other.text}`,
    );
  };
  for (const r of synced) {
    for (const pool of candidates.get(r.name) ?? []) {
      for (const l of local) if (cidrsOverlap(pool.cidr, l.cidr)) refusePool(r.name, pool, l);
      for (const o of synced) {
        if (o.name === r.name) continue;
        for (const other of candidates.get(o.name) ?? [])
          if (cidrsOverlap(pool.cidr, other.cidr)) refusePool(r.name, pool, other);
      }
    }
  }

  // Key claims: local nodes, remote nodes (with something to route), peers.
  const claims = new Map<string, string[]>();
  const claim = (key: string, who: string) => claims.set(key, [...(claims.get(key) ?? []), who]);
  for (const [key, node] of input.localKeys) claim(key, `local node ${node}`);

  interface Candidate {
    plan: RemotePeerPlan;
    object: string;
    /** How it is named among a key's claimants. */
    claimant: string;
  }
  const candidatesPeers: Candidate[] = [];
  const reports = new Map<string, { nodes: number; blocks: number }>();

  for (const r of synced) {
    const pools = (candidates.get(r.name) ?? []).filter(
      (p) => !refusedPools.get(r.name)?.has(p.owner),
    );
    const poolByName = new Map<string, Range>();
    for (const p of pools) poolByName.set(p.owner.slice(`RemoteCluster ${r.name} pool `.length), p);
    const blocks = [...r.blocks]
      .filter((b) => poolByName.has(b.pool))
      .sort((a, b) => (a.cidr < b.cidr ? -1 : a.cidr > b.cidr ? 1 : 0));
    const accepted: { node: string; cidr: Cidr; text: string }[] = [];
    for (const b of blocks) {
      const pool = poolByName.get(b.pool);
      const cidr = parseCanonicalCidr(b.cidr);
      if (!pool || !cidr.ok) continue;
      const c = cidr.value;
      if (!(cidrContainsValue(pool.cidr, c.family, c.base) && c.prefix >= pool.cidr.prefix)) {
        refused.push({
          object: `${r.name}/IPAMBlock/${b.name}`,
          reason: 'BlockOutsidePool',
          message: `${b.cidr} is not inside pool ${b.pool} ${pool.text}; not routed`,
        });
        continue;
      }
      accepted.push({ node: b.node, cidr: c, text: b.cidr });
    }
    const overlapping = new Set<number>();
    for (let i = 0; i < accepted.length; i++)
      for (let j = i + 1; j < accepted.length; j++)
        if (cidrsOverlap(accepted[i]!.cidr, accepted[j]!.cidr)) overlapping.add(i).add(j);
    const blocksByNode = new Map<string, string[]>();
    accepted.forEach((b, i) => {
      if (overlapping.has(i)) {
        refused.push({
          object: `${r.name}/IPAMBlock/${b.text}`,
          reason: 'OverlappingBlock',
          message: `${b.text} overlaps another block of the remote cluster; neither is routed`,
        });
        return;
      }
      blocksByNode.set(b.node, [...(blocksByNode.get(b.node) ?? []), b.text]);
    });

    for (const n of [...r.nodes].sort(byName)) {
      for (const p of n.problems)
        refused.push({ object: `${r.name}/Node/${n.name}`, reason: p.reason, message: p.message });
      const allowedIPs = blocksByNode.get(n.name);
      if (!allowedIPs?.length || !n.publicKey) continue;
      const endpoint =
        n.endpointOverride ??
        n.endpoint ??
        (n.internalIPs[0] ? formatEndpoint(n.internalIPs[0], input.listenPort) : null);
      if (!endpoint && n.persistentKeepalive === 0) {
        refused.push({
          object: `${r.name}/Node/${n.name}`,
          reason: 'NoEndpoint',
          message:
            'it has no endpoint, no InternalIP and no keepalive; it is programmed without an endpoint',
        });
      }
      const who = `${r.name}/${n.name}`;
      const claimant = `RemoteCluster ${r.name} node ${n.name}`;
      claim(n.publicKey, claimant);
      candidatesPeers.push({
        object: `${r.name}/Node/${n.name}`,
        claimant,
        plan: {
          node: who,
          publicKey: n.publicKey,
          endpoint,
          allowedIPs,
          persistentKeepalive: n.persistentKeepalive,
          cluster: r.name,
        },
      });
    }
  }

  // Peers: their ranges may overlap nothing local, nothing imported, no other Peer.
  const imported: Range[] = synced.flatMap((r) => candidates.get(r.name) ?? []);
  const peers = [...input.peers].sort(byName);
  const peerRanges = peers.map((p) =>
    p.allowedIPs.map((text) => ({
      cidr: mustCidr(text, `Peer ${p.name}`),
      text,
      owner: `Peer ${p.name}`,
    })),
  );
  peers.forEach((p, i) => {
    const mine = peerRanges[i] ?? [];
    const others = [...local, ...imported, ...peerRanges.filter((_, j) => j !== i).flat()];
    const clash = mine.flatMap((m) =>
      others
        .filter((o) => cidrsOverlap(m.cidr, o.cidr))
        .map((o) => `${m.text} overlaps ${o.owner} ${o.text}`),
    );
    if (clash.length) {
      refused.push({
        object: `Peer/${p.name}`,
        reason: 'CIDRConflict',
        message: `${clash.join('; ')}; the peer is not programmed`,
      });
      return;
    }
    claim(p.publicKey, `Peer ${p.name}`);
    candidatesPeers.push({
      object: `Peer/${p.name}`,
      claimant: `Peer ${p.name}`,
      plan: {
        node: `peer/${p.name}`,
        publicKey: p.publicKey,
        endpoint: p.endpoint,
        allowedIPs: [...p.allowedIPs],
        persistentKeepalive: p.persistentKeepalive,
        cluster: null,
      },
    });
  });

  const planned: RemotePeerPlan[] = [];
  for (const c of candidatesPeers) {
    const names = claims.get(c.plan.publicKey) ?? [];
    if (names.length > 1) {
      refused.push({
        object: c.object,
        reason: 'DuplicatePublicKey',
        message: `its WireGuard public key is also claimed by ${names.filter((n) => n !== c.claimant).join(', ')}; it is not programmed`,
      });
      continue;
    }
    planned.push(c.plan);
    if (c.plan.cluster) {
      const rep = reports.get(c.plan.cluster) ?? { nodes: 0, blocks: 0 };
      rep.nodes += 1;
      rep.blocks += c.plan.allowedIPs.length;
      reports.set(c.plan.cluster, rep);
    }
  }
  planned.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));

  const routes: RemoteRoutePlan[] = input.tunnelAddress
    ? planned.flatMap((p) =>
        p.allowedIPs.map((dst) => ({ dst, dev: WIREGUARD_DEVICE, src: input.tunnelAddress! })),
      )
    : [];

  const clusters: RemoteClusterReport[] = remotes.map((r) => {
    const rep = reports.get(r.name) ?? { nodes: 0, blocks: 0 };
    return {
      name: r.name,
      conditions: remoteConditions(
        r,
        conflicts.get(r.name) ?? [],
        unknownPools.get(r.name) ?? [],
        rep,
      ),
      nodes: rep.nodes,
      blocks: rep.blocks,
    };
  });
  return {
    peers: planned,
    routes,
    clusters,
    refused: refused.sort((a, b) =>
      a.object !== b.object
        ? a.object < b.object
          ? -1
          : 1
        : a.reason < b.reason
          ? -1
          : a.reason > b.reason
            ? 1
            : 0,
    ),
  };
}

function remoteConditions(
  r: RemoteClusterSnapshot,
  conflicts: readonly string[],
  unknownPools: readonly string[],
  counts: { nodes: number; blocks: number },
): DesiredCondition[] {
  const error = r.lastError ?? 'no answer yet';
  const connected: DesiredCondition = !r.synced
    ? {
        type: 'Connected',
        status: 'False',
        reason: r.lastError ? 'ConnectFailed' : 'Connecting',
        message: r.lastError
          ? `cannot list the remote cluster: ${error}`
          : 'listing the remote cluster',
      }
    : r.reachable
      ? {
          type: 'Connected',
          status: 'True',
          reason: 'Watching',
          message:
            `watching ${r.nodes.length} nodes, ${r.blocks.length} blocks; ${counts.nodes} nodes programmed with ${counts.blocks} blocks` +
            (unknownPools.length
              ? `; importPools not found there: ${unknownPools.join(', ')}`
              : ''),
        }
      : {
          type: 'Connected',
          status: 'False',
          reason: 'Unreachable',
          message: `the remote API stopped answering; the last known state is kept: ${error}`,
        };
  const unreachable: DesiredCondition =
    r.synced && !r.reachable
      ? {
          type: 'Unreachable',
          status: 'True',
          reason: 'APIUnreachable',
          message: `${error}; tunnels already built stay up, reconnecting with backoff`,
        }
      : !r.synced && r.lastError
        ? { type: 'Unreachable', status: 'True', reason: 'NeverConnected', message: error }
        : {
            type: 'Unreachable',
            status: 'False',
            reason: r.synced ? 'Reachable' : 'Connecting',
            message: '',
          };
  const conflict: DesiredCondition = !r.synced
    ? {
        type: 'CIDRConflict',
        status: 'Unknown',
        reason: 'NotConnected',
        message: 'the remote pools are not known yet',
      }
    : conflicts.length
      ? {
          type: 'CIDRConflict',
          status: 'True',
          reason: 'OverlappingPools',
          message: `refused, routed by neither side: ${conflicts.join('; ')}`,
        }
      : { type: 'CIDRConflict', status: 'False', reason: 'NoOverlap', message: '' };
  return [connected, unreachable, conflict];
}
