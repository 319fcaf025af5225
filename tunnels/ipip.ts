// The IP-in-IP path: one point-to-multipoint device, `wiremesh.ipip`, bound to the
// node's underlay address (which also keeps it apart from the kernel's fallback
// `tunl0`, whose parameters are "any"), and for each remote node routes to its pod
// blocks `via REMOTE_UNDERLAY_IP dev wiremesh.ipip onlink`: the gateway of the route
// is the outer destination, and the node's VTEP address on the device (routes.ts
// applyDeviceAddress says why). No FDB, no neighbours. IPv4 inside IPv4 only (IPv6 would
// need ip6tnl/sit: the planner does not choose this path for IPv6 blocks).
// This project's test machines have no IP-in-IP module: the probe says so.
import type { IpClient, IpipLinkSpec } from '../sys/index.ts';
import {
  emptyEncapReport,
  type EncapDriver,
  type EncapReport,
  type EncapState,
  type Encapsulation,
} from './encapsulation.ts';
import { ENCAP_ROUTE_PROTOCOL, IPIP_DEVICE, PROBE_DEVICE } from './constants.ts';
import {
  applyDeviceAddress,
  applyOwnedRoutes,
  familyOf,
  removeDevice,
  type WantedRoute,
} from './routes.ts';
import { probeLinkKind } from './probe.ts';

export class IpipDriver implements EncapDriver {
  readonly kind = 'ipip' as const;
  private readonly ip: IpClient;
  private readonly device: string;

  constructor(ip: IpClient, options: { device?: string } = {}) {
    this.ip = ip;
    this.device = options.device ?? IPIP_DEVICE;
  }

  async apply(state: EncapState | null): Promise<EncapReport> {
    const report = emptyEncapReport();
    const dev = this.device;
    if (state === null) {
      report.deviceRemoved = await removeDevice(this.ip, dev);
      return report;
    }
    const routes: WantedRoute[] = state.peers.flatMap((p) =>
      p.blocks.map((dst) => {
        if (familyOf(dst.split('/')[0] ?? '') !== 4 || familyOf(p.underlayIP) !== 4)
          throw new Error(`IP-in-IP carries IPv4 over IPv4 only; cannot route ${dst} to ${p.node}`);
        return { dst, dev, gateway: p.underlayIP, onlink: true };
      }),
    );
    const spec: IpipLinkSpec = { name: dev, local: state.localUnderlayIP, mtu: state.mtu };
    let link = await this.ip.linkDetails(dev);
    if (link && (link.kind !== 'ipip' || link.ipip?.local !== spec.local)) {
      await this.ip.linkDelete(dev);
      report.deviceChanged = true;
      link = null;
    }
    if (!link) {
      await this.ip.linkAddIpip(spec);
      report.deviceCreated = !report.deviceChanged;
      link = await this.ip.linkDetails(dev);
      if (!link) throw new Error(`IP-in-IP device ${dev} still missing after creating it`);
    }
    if (link.mtu !== spec.mtu) {
      await this.ip.linkSetMtu(dev, spec.mtu);
      report.deviceChanged = true;
    }
    if (!link.up) await this.ip.linkSetUp(dev);
    // The VTEP address on the device, or loose rp_filter drops asymmetric traffic.
    if (await applyDeviceAddress(this.ip, dev, state.vtepIP)) report.deviceChanged = true;
    const counts = await applyOwnedRoutes(this.ip, dev, ENCAP_ROUTE_PROTOCOL, routes);
    report.routesReplaced += counts.replaced;
    report.routesRemoved += counts.removed;
    return report;
  }
}

export const ipipEncapsulation: Encapsulation = {
  kind: 'ipip',
  device: IPIP_DEVICE,
  carries: (inner, underlay) => inner === 4 && underlay === 4,
  async probe(ip, options) {
    const existing = await ip.linkDetails(IPIP_DEVICE);
    if (existing?.kind === 'ipip') return { kind: 'ipip', available: true, detail: 'kernel' };
    return probeLinkKind(ip, 'ipip', PROBE_DEVICE.ipip, () =>
      ip.linkAddIpip({ name: PROBE_DEVICE.ipip, local: options.localUnderlayIP, mtu: 1280 }),
    );
  },
  driver: (ip) => new IpipDriver(ip),
};
