// The route half of every path driver: make the routes on one device that carry one
// protocol number match a wanted list, touching only those that differ. Shared by the
// VXLAN, IP-in-IP and native drivers and the encrypted pools' policy routing; and
// the one address an encapsulation device holds.
import type { IpClient, RouteInfo } from '../sys/index.ts';

export interface WantedRoute {
  dst: string;
  dev: string;
  gateway?: string;
  onlink?: boolean;
  src?: string;
}

const same = (want: WantedRoute, have: RouteInfo) =>
  (want.gateway ?? null) === (have.gateway ?? null) &&
  !!want.onlink === !!have.onlink &&
  (want.src ?? null) === (have.src ?? null);

/** Removes this device's routes of `protocol` not wanted, first; then writes the missing. */
export async function applyOwnedRoutes(
  ip: IpClient,
  dev: string,
  protocol: number,
  wanted: readonly WantedRoute[],
  table?: number,
): Promise<{ replaced: number; removed: number }> {
  const counts = { replaced: 0, removed: 0 };
  const want = new Map(wanted.map((r) => [r.dst, r]));
  if (want.size !== wanted.length) throw new Error(`two routes to one destination on ${dev}`);
  const have = await ip.routeList(dev, protocol, table);
  for (const r of have) {
    if (!want.has(r.dst)) {
      await ip.routeDel(r);
      counts.removed++;
    }
  }
  const haveByDst = new Map(have.map((r) => [r.dst, r]));
  const changed = wanted.filter((r) => {
    const h = haveByDst.get(r.dst);
    return !(h && same(r, h));
  });
  // One `ip -batch` for all: a process per route took minutes on a thousand nodes.
  const failed = await ip.routeReplaceBatch(
    changed.map((r) => ({ ...r, protocol, ...(table === undefined ? {} : { table }) })),
  );
  if (failed.length > 0) throw new Error(`routes on ${dev}: ${failed.join('; ')}`);
  counts.replaced = changed.length;
  return counts;
}

/** Delete a device if it exists (with its addresses, routes and entries); true if it did. */
export async function removeDevice(ip: IpClient, dev: string): Promise<boolean> {
  if (!(await ip.linkShow(dev))) return false;
  await ip.linkDelete(dev);
  return true;
}

export function familyOf(address: string): 4 | 6 {
  return address.includes(':') ? 6 : 4;
}

/**
 * Give a tunnel device exactly its VTEP (mesh tunnel) addresses as host prefixes, as
 * Calico puts one on vxlan.calico and tunl0: the IPv4 one and, where IPv6 blocks
 * exist, the IPv6 one (VXLAN). Loose reverse-path filtering (agent/pathdriver.ts sets
 * it on these devices) drops every packet that arrives on a device without an IPv4
 * address when its source routes out of another device, so without it a
 * native-routed pod could not reach a VXLAN or IP-in-IP pool's pod: the request
 * arrives on the tunnel, its source routes via the underlay. Link-local addresses
 * (the kernel's own) are left alone. Returns whether it changed anything.
 */
export async function applyDeviceAddress(
  ip: IpClient,
  dev: string,
  address: string | readonly string[],
): Promise<boolean> {
  const wanted = (typeof address === 'string' ? [address] : address).map(
    (a) => `${a}/${familyOf(a) === 4 ? 32 : 128}`,
  );
  const have = await ip.addrList(dev);
  let changed = false;
  for (const a of have) {
    if (wanted.includes(a)) continue;
    await ip.addrDel(dev, a);
    changed = true;
  }
  for (const want of wanted) {
    if (have.includes(want)) continue;
    await ip.addrAdd(dev, want);
    changed = true;
  }
  return changed;
}
