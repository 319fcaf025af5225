// Route damage: a route watch (agent/routewatch.ts) follows the kernel's route and
// rule notifications; when a route the node needs goes (a flushed table, a pod's host
// route deleted by hand), it schedules the `routes` phase, which restores the pods'
// host routes and the underlay's connected route (agent/routerepair.ts) and runs the
// mesh phase, whose drivers put back their own routes and rules.
//
// RouteDamageRepair is the bookkeeping between the watch and the dataplane loop: the
// damage seen and not yet repaired, the removed routes to write back first, and the
// counts status shows. It runs no pass of its own: the `routes` pass restores through
// it at its start and tells it when the whole pass succeeded, because only a pass that
// began after the damage and verified every route has repaired it. What it reads of
// the rest of the agent (the IPAM's pods, the underlay device) comes in as callbacks,
// resolved at each use: the agent makes its IP client after the route watch that
// reports damage here.
import type { NodeIpam } from '../ipam/index.ts';
import type { IpClient } from '../sys/index.ts';
import type { Logger } from './log.ts';
import { restoreHostRoutes, restoreRemovedRoutes, type PodAddress } from './routerepair.ts';
import type { RouteEvent } from './routewatch.ts';
import type { RouteStatus } from './status.ts';

/** Routes removed by someone else and not yet repaired (see RouteStatus.lastRepair). */
export interface RouteDamage {
  /** When the route watch reported it (unix ms). */
  at: number;
  count: number;
  removed: string[];
  /** When the removed routes were written back, ms after `at`. */
  restoredMs?: number;
}

/** The repair's part of RouteStatus; the watch's part comes from the watch. */
export type RepairStatus = Omit<RouteStatus, 'watching' | 'removed'>;

export interface RouteDamageOptions {
  ip: IpClient;
  log: Logger;
  /** The IPAM whose allocations are this node's pods; none before the pod network starts. */
  ipam: () => Pick<NodeIpam, 'blocks'> | undefined;
  /** The underlay device: the last mesh pass's, or looked up before the first one. */
  findUnderlay: () => Promise<string | null>;
  /** Asks for a `routes` pass. */
  schedule: (reason: string) => void;
}

export class RouteDamageRepair {
  private readonly ip: IpClient;
  private readonly log: Logger;
  private readonly opts: RouteDamageOptions;
  /** Route damage seen and not yet repaired: when, and what went. */
  private pending: RouteDamage | null = null;
  /** The removed routes, as the kernel described them, to put back first. */
  private toRestore: RouteEvent[] = [];
  private counts: RepairStatus = { repairs: 0, restored: 0, lastRepair: null };

  constructor(opts: RouteDamageOptions) {
    this.ip = opts.ip;
    this.log = opts.log;
    this.opts = opts;
  }

  /** The route watch saw routes the node needs removed: keep them and ask for a pass. */
  damaged(events: readonly RouteEvent[]): void {
    const removed = events.map((e) => e.text);
    this.log.warn('routes removed outside the agent; repairing', {
      count: removed.length,
      removed: removed.slice(0, 10),
    });
    const earlier = this.pending?.removed ?? [];
    this.pending = {
      at: this.pending?.at ?? Date.now(),
      count: (this.pending?.count ?? 0) + removed.length,
      removed: [...earlier, ...removed].slice(0, 10),
    };
    this.toRestore.push(...events);
    this.opts.schedule('route damage');
  }

  /**
   * The start of a `routes` pass: the removed routes go back, then the host routes are
   * verified; each step runs even when the other failed, its error added to `errors`.
   * Returns the damage this pass repairs: damage seen after it began is repaired (and
   * counted) by the next one.
   */
  async restore(errors: unknown[]): Promise<RouteDamage | null> {
    const damage = this.pending;
    await this.restoreRemoved(damage).catch((e) => errors.push(e));
    await this.repairHostRoutes().catch((e) => errors.push(e));
    return damage;
  }

  /**
   * A pass that began with `damage` succeeded: unless more damage came meanwhile,
   * count the repair and how long it took.
   */
  passSucceeded(damage: RouteDamage | null): void {
    if (!damage || damage !== this.pending) return;
    this.pending = null;
    const repairedMs = Date.now() - damage.at;
    this.counts.repairs++;
    this.counts.lastRepair = {
      at: new Date(damage.at).toISOString(),
      count: damage.count,
      removed: damage.removed,
      restoredMs: damage.restoredMs ?? null,
      repairedMs,
    };
    this.log.info('route damage repaired', { restoredMs: damage.restoredMs, repairedMs });
  }

  status(): RepairStatus {
    return { ...this.counts };
  }

  /**
   * What the route watch saw removed goes back as it was, in one process, before
   * anything is listed: the pods are reachable again while the rest of the pass
   * verifies every route against the plans.
   */
  private async restoreRemoved(damage: RouteDamage | null): Promise<void> {
    const events = this.toRestore.splice(0);
    if (events.length === 0) return;
    const { written, failed } = await restoreRemovedRoutes(this.ip, events);
    if (damage) damage.restoredMs = Date.now() - damage.at;
    this.counts.restored += written;
    if (failed.length)
      this.log.warn('some removed routes could not be put back as they were', { failed });
  }

  /** The local pods' host routes and the underlay's connected route (agent/routerepair.ts). */
  private async repairHostRoutes(): Promise<void> {
    const pods: PodAddress[] = [];
    for (const block of this.opts.ipam()?.blocks() ?? [])
      for (const a of block.allocations.values())
        pods.push({ handle: a.handle, namespace: a.namespace, pod: a.pod, address: a.address });
    const repair = await restoreHostRoutes(this.ip, {
      underlay: await this.opts.findUnderlay(),
      pods,
    });
    const restored = repair.podRoutes.length + repair.connectedRoutes.length;
    if (restored === 0) return;
    this.counts.restored += restored;
    this.log.info('host routes restored', { ...repair });
  }
}
