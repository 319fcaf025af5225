// Writing RemoteCluster status: the planner's conditions become metav1.Conditions
// (a condition keeps its lastTransitionTime while its status stays the same), and
// the writer patches the status subresource only when something differs, so a
// resync writes nothing. One agent per cluster writes (statusWriterNode picks it
// the same way on every node), so two nodes' views of a flaky remote never flap it.
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import { isRecord } from '../ipam/selector.ts';
import {
  REMOTECLUSTER_PATH,
  type Condition,
  type ConditionType,
  type DesiredCondition,
  type RemoteClusterReport,
} from './types.ts';

export interface RemoteClusterStatus {
  observedGeneration: number;
  nodes: number;
  blocks: number;
  conditions: Condition[];
}

const TYPES: readonly ConditionType[] = ['Connected', 'Unreachable', 'CIDRConflict'];

/** The conditions stored on an object, as far as they are well-formed. */
export function conditionsFromK8s(raw: unknown): Condition[] {
  if (!Array.isArray(raw)) return [];
  const out: Condition[] = [];
  for (const c of raw as unknown[]) {
    if (!isRecord(c) || !TYPES.includes(c.type as ConditionType)) continue;
    out.push({
      type: c.type as ConditionType,
      status: c.status === 'True' || c.status === 'False' ? c.status : 'Unknown',
      reason: typeof c.reason === 'string' ? c.reason : '',
      message: typeof c.message === 'string' ? c.message : '',
      lastTransitionTime: typeof c.lastTransitionTime === 'string' ? c.lastTransitionTime : '',
      observedGeneration: typeof c.observedGeneration === 'number' ? c.observedGeneration : 0,
    });
  }
  return out;
}

/** The desired conditions with transition times: kept from `old` while the status is unchanged. */
export function mergeConditions(
  old: readonly Condition[],
  desired: readonly DesiredCondition[],
  generation: number,
  now: Date,
): Condition[] {
  const stamp = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return desired.map((d) => {
    const prev = old.find((o) => o.type === d.type);
    return {
      ...d,
      lastTransitionTime:
        prev && prev.status === d.status && prev.lastTransitionTime
          ? prev.lastTransitionTime
          : stamp,
      observedGeneration: generation,
    };
  });
}

/** The status to store for a report, and whether it differs from the stored one. */
export function planStatus(
  stored: unknown,
  report: RemoteClusterReport,
  generation: number,
  now: Date,
): { status: RemoteClusterStatus; changed: boolean } {
  const old = isRecord(stored) ? stored : {};
  const oldConditions = conditionsFromK8s(old.conditions);
  const status: RemoteClusterStatus = {
    observedGeneration: generation,
    nodes: report.nodes,
    blocks: report.blocks,
    conditions: mergeConditions(oldConditions, report.conditions, generation, now),
  };
  const changed =
    old.observedGeneration !== generation ||
    old.nodes !== report.nodes ||
    old.blocks !== report.blocks ||
    JSON.stringify(oldConditions) !== JSON.stringify(status.conditions);
  return { status, changed };
}

/** The node whose agent writes RemoteCluster status: the first by name, the same on every node. */
export function statusWriterNode(nodeNames: Iterable<string>): string | undefined {
  let first: string | undefined;
  for (const n of nodeNames) if (first === undefined || n < first) first = n;
  return first;
}

/** Patches RemoteCluster status over the local API, only when it changed. */
export class RemoteClusterStatusWriter {
  private readonly kube: KubeClient;

  constructor(kube: KubeClient) {
    this.kube = kube;
  }

  /**
   * Writes the report as the status of the RemoteCluster at `generation` (the one the
   * report was planned from). True when it wrote; false when the status was already
   * so, or the object is gone.
   */
  async write(report: RemoteClusterReport, generation: number, now = new Date()): Promise<boolean> {
    const path = `${REMOTECLUSTER_PATH}/${encodeURIComponent(report.name)}`;
    for (let attempt = 0; ; attempt++) {
      let obj: { metadata?: { resourceVersion?: string }; status?: unknown };
      try {
        obj = await this.kube.request('GET', path);
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 404) return false;
        throw e;
      }
      const { status, changed } = planStatus(obj.status, report, generation, now);
      if (!changed) return false;
      try {
        // A merge patch carrying the resourceVersion it was computed from: 409 when
        // someone wrote in between, and then it is computed again.
        await this.kube.request(
          'PATCH',
          `${path}/status`,
          { metadata: { resourceVersion: obj.metadata?.resourceVersion }, status },
          { contentType: 'application/merge-patch+json' },
        );
        return true;
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 409 && attempt < 3) continue;
        if (e instanceof KubeApiError && e.status === 404) return false;
        throw e;
      }
    }
  }
}
