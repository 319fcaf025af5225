// The host routes no mesh or path planner writes, restored when they are missing:
// - each local pod's host route (`ADDR/32 dev wm... proto 252`), which the CNI ADD
//   writes once (cni/podnet.ts) and nothing else would put back;
// - the connected route of the underlay device's addresses, which the kernel makes
//   when the address is added and never again: without it the tunnels' endpoints,
//   the VXLAN and native next hops and the apiserver on the underlay are unreachable.
// Run on every resync and at once after the route watch (agent/routewatch.ts) saw
// such a route go, after the removed routes were written back as they were
// (`restoreRemovedRoutes`, which covers the mesh's and the paths' routes too). Only missing routes are added; nothing is removed or rewritten
// (a pod's route goes with its veth at CNI DEL, a connected route with its address),
// and an address added with `noprefixroute` gets none: its subnet is the operator's.
//
// A pod's route is wanted while IPAM holds its address and the veth wired for that
// attachment exists and is up: the one whose alias is the attachment's CNI handle
// (named after the attachment, cni/podnet.ts hostVethName), or else one an earlier
// version named after the pod (legacyHostVethName) with no alias, wired without one.
// So a pair of the pod's other sandbox never gets this one's address.
import { legacyHostVethName, POD_ROUTE_PROTOCOL } from '../cni/index.ts';
import type { AddrDetails, AliasedLink, IpClient, RouteInfo } from '../sys/index.ts';
import { formatCidr, hostCidr, parseCidr } from './cidr.ts';
import type { RouteEvent } from './routewatch.ts';

/** A local pod's address as IPAM holds it. */
export interface PodAddress {
  handle: string;
  namespace: string;
  pod: string;
  address: string;
}

export type HostRoute = RouteInfo & { protocol: number };

/** The kernel's own protocol number, which connected routes carry. */
export const KERNEL_ROUTE_PROTOCOL = 2;
const MAIN_TABLE = 254;
/** The metric the kernel gives an IPv6 prefix route. */
const IPV6_PREFIX_METRIC = 256;

/** The host routes of the local pods whose veth is there and up (see the module comment). */
export function planPodRoutes(
  pods: readonly PodAddress[],
  veths: readonly AliasedLink[],
): HostRoute[] {
  const byName = new Map(veths.map((l) => [l.name, l]));
  const byOwner = new Map(veths.filter((l) => l.alias).map((l) => [l.alias, l]));
  const out: HostRoute[] = [];
  for (const p of pods) {
    const unowned = byName.get(legacyHostVethName(p.namespace, p.pod));
    const link = byOwner.get(p.handle) ?? (unowned?.alias === '' ? unowned : undefined);
    if (!link?.up) continue;
    out.push({ dst: hostCidr(p.address), dev: link.name, protocol: POD_ROUTE_PROTOCOL });
  }
  return out;
}

/** The connected routes the kernel made for `dev`'s addresses. */
export function planConnectedRoutes(dev: string, addrs: readonly AddrDetails[]): HostRoute[] {
  const out: HostRoute[] = [];
  for (const a of addrs) {
    const cidr = parseCidr(a.cidr);
    if (!a.prefixRoute || cidr.prefix === cidr.bits) continue;
    const [address] = a.cidr.split('/');
    out.push({
      dst: formatCidr(cidr),
      dev,
      protocol: KERNEL_ROUTE_PROTOCOL,
      // The kernel's IPv4 connected route names its source; its IPv6 one has a metric.
      ...(cidr.family === 4 ? { src: address ?? '' } : { metric: IPV6_PREFIX_METRIC }),
    });
  }
  return out;
}

export interface HostRouteRepair {
  /** The routes added back, as `DST dev DEV`. */
  podRoutes: string[];
  connectedRoutes: string[];
}

/** Adds the wanted routes that `have` lacks; a device gone meanwhile is skipped. */
async function addMissing(
  ip: IpClient,
  wanted: readonly HostRoute[],
  have: readonly RouteInfo[],
  failures: Error[],
): Promise<string[]> {
  const present = new Set(have.map((r) => `${r.dst} ${r.dev}`));
  const added: string[] = [];
  for (const r of wanted) {
    const name = `${r.dst} dev ${r.dev}`;
    if (present.has(`${r.dst} ${r.dev}`)) continue;
    try {
      await ip.routeReplace(r);
      added.push(name);
    } catch (e) {
      // A pod deleted between the listing and now: its veth and route are meant to go.
      if (/Cannot find device|No such device/i.test(String((e as Error).message))) continue;
      failures.push(
        new Error(`restoring the route ${name}: ${(e as Error).message}`, { cause: e }),
      );
    }
  }
  return added;
}

/**
 * Restores the missing connected routes of `underlay` first (other routes' next hops
 * may need them), then the local pods' host routes. Fails after trying every route
 * when one could not be added, naming it.
 */
export async function restoreHostRoutes(
  ip: IpClient,
  input: { underlay: string | null; pods: readonly PodAddress[] },
): Promise<HostRouteRepair> {
  const failures: Error[] = [];
  let connectedRoutes: string[] = [];
  if (input.underlay !== null) {
    const wanted = planConnectedRoutes(input.underlay, await ip.addrDetails(input.underlay));
    const have = wanted.length ? await ip.routeList(input.underlay, KERNEL_ROUTE_PROTOCOL) : [];
    const present = new Set(have.map((r) => r.dst));
    const missing = wanted.filter((r) => !present.has(r.dst));
    // A link that is down has no connected routes, and gets them back from the
    // kernel when it comes up: nothing to repair (and a route to it would fail).
    if (missing.length && (await ip.linkShow(input.underlay))?.up)
      connectedRoutes = await addMissing(ip, missing, have, failures);
  }
  let podRoutes: string[] = [];
  if (input.pods.length) {
    const wanted = planPodRoutes(input.pods, await ip.linkList('veth'));
    const have = await ip.routeListByProtocol(POD_ROUTE_PROTOCOL);
    podRoutes = await addMissing(ip, wanted, have, failures);
  }
  const [first] = failures;
  if (first && failures.length === 1) throw first;
  if (first)
    throw new AggregateError(
      failures,
      `${failures.length} host routes could not be restored: ${failures.map((f) => f.message).join('; ')}`,
    );
  return { podRoutes, connectedRoutes };
}

/**
 * The routes a route watch saw removed by someone else (agent/routewatch.ts), as they
 * were: they were the node's wanted state when they went (the agent's own deletions
 * are no damage), so writing them back at once, with one `ip -batch`, restores the
 * node before a pass has listed anything; the pass that follows verifies all of it.
 * Rules and default routes are left to that pass. Returns how many routes it wrote
 * and what could not be written.
 */
export async function restoreRemovedRoutes(
  ip: IpClient,
  removed: readonly RouteEvent[],
): Promise<{ written: number; failed: string[] }> {
  const routes: HostRoute[] = [];
  for (const e of removed) {
    if (e.kind !== 'route' || e.dev === undefined || e.protocol === undefined) continue;
    if (e.dst === 'default') continue;
    routes.push({
      dst: e.dst,
      dev: e.dev,
      protocol: e.protocol,
      ...(e.table === MAIN_TABLE ? {} : { table: e.table }),
      ...(e.gateway === undefined ? {} : { gateway: e.gateway }),
      ...(e.onlink ? { onlink: true } : {}),
      ...(e.scope === undefined ? {} : { scope: e.scope }),
      ...(e.src === undefined ? {} : { src: e.src }),
      ...(e.metric === undefined ? {} : { metric: e.metric }),
    });
  }
  // Routes through a gateway last: their next hop needs a connected route first.
  const direct = routes.filter((r) => r.gateway === undefined);
  const failed = await ip.routeReplaceBatch([
    ...direct,
    ...routes.filter((r) => r.gateway !== undefined),
  ]);
  // `ip -batch` names each failed line with an error line and a `Command failed` line.
  const written = routes.length - failed.filter((l) => l.startsWith('Command failed')).length;
  return { written, failed };
}
