// What a mesh pass tells the operator beyond its own log line: a warning the first
// time a condition appears, and an Event on the object concerned for as long as it
// lasts (Events of conditions that ended are retired: KubeEventRecorder.retain).
// Nodes refused as peers and encapsulations this node lacks go on Nodes, path
// conditions (fallbacks, blocked pools) on IPPools, refused blocks on their IPAMBlock, refused multi-cluster objects on
// their RemoteCluster or Peer. Each takes the previous pass's plan to tell new from old.
import type { Availability } from '../tunnels/index.ts';
import type {
  MultiClusterProblem,
  MultiClusterWatch,
  RemoteClusterStatusWriter,
  RemotePlan,
} from '../multicluster/index.ts';
import { KubeEventRecorder } from './events.ts';
import type { Logger } from './log.ts';
import type { RefusedBlock } from './blocks.ts';
import type { MeshNode } from './meshnode.ts';
import type { PathPlan } from './paths.ts';
import type { MeshPlan } from './plan.ts';

export interface Reporter {
  events: KubeEventRecorder;
  log: Logger;
  /** This node's name, for the Events' messages. */
  node: string;
}

/** Nodes this node does not program as peers, and encapsulations it lacks: on Nodes. */
export function reportNodeProblems(
  r: Reporter,
  self: MeshNode,
  nodes: readonly MeshNode[],
  refused: MeshPlan['refused'],
  before: MeshPlan | null,
  available: readonly Availability[],
): void {
  const keys = new Set<string>();
  for (const x of refused) {
    const target = {
      kind: 'Node' as const,
      name: x.node,
      uid: nodes.find((n) => n.name === x.node)?.uid,
    };
    const message = `wiremesh on ${self.name} does not program node ${x.node}: ${x.message}`;
    keys.add(KubeEventRecorder.key(target, x.reason, message));
    if (
      !before?.refused.some(
        (y) => y.node === x.node && y.reason === x.reason && y.message === x.message,
      )
    ) {
      r.log.warn('node refused', { node: x.node, reason: x.reason, detail: x.message });
    }
    r.events.warn(target, x.reason, message);
  }
  for (const a of available) {
    if (a.available) continue;
    const target = { kind: 'Node' as const, name: self.name, uid: self.uid };
    const reason = a.kind === 'wireguard' ? 'WireGuardUnavailable' : 'EncapsulationUnavailable';
    const message = `${a.kind} is unavailable on node ${self.name}: ${a.detail}`;
    keys.add(KubeEventRecorder.key(target, reason, message));
    r.events.warn(target, reason, message);
  }
  r.events.retain(keys, ['Node']);
}

/** A log line for each newly refused block; a Warning Event on the IPAMBlock while it lasts. */
export function reportBlockProblems(
  r: Reporter,
  before: readonly RefusedBlock[] | null,
  refused: readonly RefusedBlock[],
): void {
  const id = (x: RefusedBlock) => `${x.block}/${x.reason}/${x.message}`;
  const seen = new Set((before ?? []).map(id));
  const keys = new Set<string>();
  for (const x of refused) {
    if (!seen.has(id(x)))
      r.log.warn('IPAM block refused', {
        block: x.block,
        cidr: x.cidr,
        owner: x.node,
        reason: x.reason,
        detail: x.message,
      });
    const target = { kind: 'IPAMBlock' as const, name: x.block };
    const message = `wiremesh on ${r.node}: ${x.message}`;
    keys.add(KubeEventRecorder.key(target, x.reason, message));
    r.events.warn(target, x.reason, message);
  }
  r.events.retain(keys, ['IPAMBlock']);
}

/** A log line for each new path condition; an Event on the pool for each condition. */
export function reportPathEvents(r: Reporter, before: PathPlan | null, paths: PathPlan): void {
  const id = (e: PathPlan['events'][number]) => `${e.reason}/${e.pool}/${e.node}/${e.message}`;
  const seen = new Set((before?.events ?? []).map(id));
  const keys = new Set<string>();
  for (const e of paths.events) {
    if (!seen.has(id(e)))
      r.log.warn('path', { reason: e.reason, pool: e.pool, node: e.node, detail: e.message });
    const target = { kind: 'IPPool' as const, name: e.pool };
    const message = `on ${r.node}: ${e.message}`;
    keys.add(KubeEventRecorder.key(target, e.reason, message));
    r.events.warn(target, e.reason, message);
  }
  r.events.retain(keys, ['IPPool']);
}

/** A log line for each new refusal; an Event on its RemoteCluster or Peer. */
export function reportRemoteProblems(
  r: Reporter,
  before: RemotePlan | null,
  refused: readonly MultiClusterProblem[],
): void {
  const id = (p: MultiClusterProblem) => `${p.object}/${p.reason}/${p.message}`;
  const seen = new Set((before?.refused ?? []).map(id));
  const keys = new Set<string>();
  for (const p of refused) {
    if (!seen.has(id(p)))
      r.log.warn('multi-cluster object refused', {
        object: p.object,
        reason: p.reason,
        detail: p.message,
      });
    const [first, second] = p.object.split('/');
    const target =
      first === 'Peer'
        ? { kind: 'Peer' as const, name: second ?? '' }
        : {
            kind: 'RemoteCluster' as const,
            name: first === 'RemoteCluster' ? (second ?? '') : (first ?? ''),
          };
    const message = `on ${r.node}: ${p.object}: ${p.message}`;
    keys.add(KubeEventRecorder.key(target, p.reason, message));
    r.events.warn(target, p.reason, message);
  }
  r.events.retain(keys, ['RemoteCluster', 'Peer']);
}

/** The RemoteClusters' conditions, from the one node that writes them. */
export async function writeRemoteStatus(
  log: Logger,
  writer: RemoteClusterStatusWriter,
  multicluster: MultiClusterWatch | undefined,
  remote: RemotePlan,
): Promise<void> {
  for (const report of remote.clusters) {
    const cluster = multicluster?.cluster(report.name);
    if (!cluster) continue;
    await writer.write(report, cluster.generation).then(
      (wrote) => {
        if (wrote)
          log.info('remote cluster status written', {
            cluster: report.name,
            conditions: report.conditions.map((c) => `${c.type}=${c.status}`).join(','),
          });
      },
      (e: unknown) =>
        log.warn('cannot write remote cluster status', {
          cluster: report.name,
          error: (e as Error).message,
        }),
    );
  }
}
