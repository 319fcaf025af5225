// The VXLAN path: one device, `wiremesh.vxlan` (VNI 4100, UDP 4789, bound to the
// node's underlay address, no learning), and for each remote node on the path:
//   FDB entry        remote VTEP MAC -> remote underlay IP   (where to send the frame)
//   neighbour entry  remote VTEP IP  -> remote VTEP MAC      (permanent, no ARP)
//   routes           remote pod blocks via remote VTEP IP dev wiremesh.vxlan onlink
// A node with an IPv6 VTEP (its IPv6 tunnel address, vtepIP6) is the next hop of its
// IPv6 blocks as the link-local address of its VTEP MAC (vtep.ts vtepLinkLocal says
// why not the tunnel address itself), with a permanent IPv6 neighbour entry to the
// same MAC: one FDB entry per node carries both families, and the underlay (the FDB
// dst and the device's `local`) may be IPv4 or IPv6 whatever the inner family. The
// device holds the node's VTEP addresses (/32, /128) and the kernel's own link-local
// address, which is the one its peers use. VTEP addresses and MACs are derived
// (vtep.ts), so no annotation is needed. The
// device is wholly ours: every FDB and permanent neighbour entry on it that is not
// wanted is removed; routes only when they carry ENCAP_ROUTE_PROTOCOL. Additions go
// FDB, neighbour, route; removals the other way round, so a route never points at a
// next hop that does not resolve.
import ipaddr from 'ipaddr.js';
import type { IpClient, VxlanLinkSpec, LinkDetails } from '../sys/index.ts';
import {
  emptyEncapReport,
  type EncapDriver,
  type EncapReport,
  type EncapState,
  type Encapsulation,
} from './encapsulation.ts';
import {
  ENCAP_ROUTE_PROTOCOL,
  PROBE_DEVICE,
  VXLAN_DEVICE,
  VXLAN_PORT,
  VXLAN_VNI,
} from './constants.ts';
import { vtepLinkLocal, vtepMac } from './vtep.ts';
import {
  applyDeviceAddress,
  applyOwnedRoutes,
  familyOf,
  removeDevice,
  type WantedRoute,
} from './routes.ts';
import { probeLinkKind } from './probe.ts';

/** One spelling of an address, so `2001:db8:0::1` and `2001:db8::1` compare equal. */
function normalise(address: string): string {
  if (!ipaddr.isValid(address)) return address;
  return ipaddr.parse(address).toString();
}

type Vteps = { vtepIP: string; vtepIP6?: string | undefined };

/** A node's VTEP addresses: the IPv4 (or only) one, and the IPv6 one when given. */
function vtepAddresses(e: Vteps): string[] {
  return e.vtepIP6 && e.vtepIP6 !== e.vtepIP ? [e.vtepIP, e.vtepIP6] : [e.vtepIP];
}

/** The next hops of a node: its IPv4 VTEP, and for IPv6 its VTEP MAC's link-local address. */
function nextHops(e: Vteps): string[] {
  const v4 = familyOf(e.vtepIP) === 4 ? [e.vtepIP] : [];
  const v6 = e.vtepIP6 || familyOf(e.vtepIP) === 6 ? [vtepLinkLocal(e.vtepIP)] : [];
  return [...v4, ...v6];
}

function deviceMatches(have: LinkDetails, want: VxlanLinkSpec): boolean {
  const v = have.vxlan;
  return (
    have.kind === 'vxlan' &&
    v !== undefined &&
    v.vni === want.vni &&
    v.port === want.port &&
    v.local !== null &&
    normalise(v.local) === normalise(want.local) &&
    !v.learning &&
    v.underlayDev === (want.underlayDev ?? null)
  );
}

export class VxlanDriver implements EncapDriver {
  readonly kind = 'vxlan' as const;
  private readonly ip: IpClient;
  private readonly device: string;
  private readonly underlayDev: string | undefined;

  constructor(ip: IpClient, options: { device?: string; underlayDev?: string } = {}) {
    this.ip = ip;
    this.device = options.device ?? VXLAN_DEVICE;
    this.underlayDev = options.underlayDev;
  }

  async apply(state: EncapState | null): Promise<EncapReport> {
    const report = emptyEncapReport();
    const dev = this.device;
    if (state === null) {
      report.deviceRemoved = await removeDevice(this.ip, dev);
      return report;
    }
    const peers = state.peers.map((p) => ({
      ...p,
      mac: vtepMac(p.vtepIP),
      vteps: vtepAddresses(p),
      hops: nextHops(p),
    }));
    checkUnique(peers.map((p) => p.mac).concat(vtepMac(state.vtepIP)), 'VTEP MAC');
    checkUnique(peers.flatMap((p) => p.vteps).concat(vtepAddresses(state)), 'VTEP address');

    const spec: VxlanLinkSpec = {
      name: dev,
      vni: VXLAN_VNI,
      port: VXLAN_PORT,
      local: state.localUnderlayIP,
      mtu: state.mtu,
      mac: vtepMac(state.vtepIP),
      ...(this.underlayDev ? { underlayDev: this.underlayDev } : {}),
    };
    let link = await this.ip.linkDetails(dev);
    if (link && !deviceMatches(link, spec)) {
      // VNI, port, local address and learning are fixed at creation.
      await this.ip.linkDelete(dev);
      report.deviceChanged = true;
      link = null;
    }
    if (!link) {
      await this.ip.linkAddVxlan(spec);
      report.deviceCreated = !report.deviceChanged;
      link = await this.ip.linkDetails(dev);
      if (!link) throw new Error(`VXLAN device ${dev} still missing after creating it`);
    }
    if (link.mac !== spec.mac) {
      await this.ip.linkSetMac(dev, spec.mac);
      report.deviceChanged = true;
    }
    if (link.mtu !== spec.mtu) {
      await this.ip.linkSetMtu(dev, spec.mtu);
      report.deviceChanged = true;
    }
    if (!link.up) await this.ip.linkSetUp(dev);
    // The VTEP address on the device, or loose rp_filter drops asymmetric traffic.
    if (await applyDeviceAddress(this.ip, dev, vtepAddresses(state))) report.deviceChanged = true;

    const routes: WantedRoute[] = peers.flatMap((p) =>
      p.blocks.map((dst) => {
        const gateway = p.hops.find((v) => familyOf(v) === familyOf(dst.split('/')[0] ?? ''));
        if (!gateway)
          throw new Error(
            `VXLAN route to ${dst} needs a VTEP address of its family; ${p.node}'s are ${p.vteps.join(', ')}`,
          );
        return { dst, dev, gateway, onlink: true };
      }),
    );
    const wantFdb = new Map(peers.map((p) => [`${p.mac} ${normalise(p.underlayIP)}`, p]));
    const wantNeigh = new Map(
      peers.flatMap((p) => p.hops.map((v) => [normalise(v), p.mac] as const)),
    );
    const haveFdb = await this.ip.fdbList(dev);
    const haveNeigh = await this.ip.neighList(dev);

    // Removals: routes, then neighbours, then FDB entries.
    const removedRoutes = await this.removeRoutes(routes);
    report.routesRemoved += removedRoutes;
    for (const n of haveNeigh) {
      if (!wantNeigh.has(normalise(n.dst))) {
        await this.ip.neighDel(n);
        report.neighboursRemoved++;
      }
    }
    for (const f of haveFdb) {
      if (!wantFdb.has(`${f.mac} ${normalise(f.dst)}`)) {
        await this.ip.fdbDel(f);
        report.fdbRemoved++;
      }
    }
    // Additions: FDB entries, then neighbours, then routes.
    const haveFdbKeys = new Set(haveFdb.map((f) => `${f.mac} ${normalise(f.dst)}`));
    for (const [key, p] of wantFdb) {
      if (haveFdbKeys.has(key)) continue;
      await this.ip.fdbAppend({ dev, mac: p.mac, dst: p.underlayIP });
      report.fdbAdded++;
    }
    const haveNeighMac = new Map(haveNeigh.map((n) => [normalise(n.dst), n.lladdr]));
    for (const [dst, mac] of wantNeigh) {
      if (haveNeighMac.get(dst) === mac) continue;
      await this.ip.neighReplace({ dev, dst, lladdr: mac });
      report.neighboursSet++;
    }
    const counts = await applyOwnedRoutes(this.ip, dev, ENCAP_ROUTE_PROTOCOL, routes);
    report.routesReplaced += counts.replaced;
    report.routesRemoved += counts.removed;
    return report;
  }

  /** The first half of applyOwnedRoutes: drop unwanted routes before their next hops go. */
  private async removeRoutes(wanted: readonly WantedRoute[]): Promise<number> {
    const want = new Set(wanted.map((r) => r.dst));
    let removed = 0;
    for (const r of await this.ip.routeList(this.device, ENCAP_ROUTE_PROTOCOL)) {
      if (want.has(r.dst)) continue;
      await this.ip.routeDel(r);
      removed++;
    }
    return removed;
  }
}

function checkUnique(values: string[], what: string): void {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) throw new Error(`two VXLAN endpoints share the ${what} ${v}`);
    seen.add(v);
  }
}

export const vxlanEncapsulation: Encapsulation = {
  kind: 'vxlan',
  device: VXLAN_DEVICE,
  carries: () => true,
  async probe(ip, options) {
    const existing = await ip.linkDetails(VXLAN_DEVICE);
    if (existing?.kind === 'vxlan') return { kind: 'vxlan', available: true, detail: 'kernel' };
    // A VNI nobody uses, so no existing VXLAN device can make the probe collide.
    return probeLinkKind(ip, 'vxlan', PROBE_DEVICE.vxlan, () =>
      ip.linkAddVxlan({
        name: PROBE_DEVICE.vxlan,
        vni: 16777214,
        port: VXLAN_PORT,
        local: options.localUnderlayIP,
        mtu: 1280,
        mac: '0e:6d:ff:ff:ff:ff',
      }),
    );
  },
  driver: (ip, options) =>
    new VxlanDriver(ip, options?.underlayDev ? { underlayDev: options.underlayDev } : {}),
};
