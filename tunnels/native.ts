// Native routing (encapsulation None, and the same-subnet half of the CrossSubnet
// variants): remote pod blocks `via REMOTE_UNDERLAY_IP dev UNDERLAY`, as Flannel's
// host-gw does. Only between nodes on one underlay subnet: the next hop must be on
// the link. No device of its own; the routes carry ENCAP_ROUTE_PROTOCOL on the
// underlay device, so the driver removes only those.
import type { IpClient } from '../sys/index.ts';
import {
  emptyEncapReport,
  type EncapDriver,
  type EncapReport,
  type EncapState,
} from './encapsulation.ts';
import { ENCAP_ROUTE_PROTOCOL } from './constants.ts';
import { applyOwnedRoutes, familyOf, type WantedRoute } from './routes.ts';

export class NativeDriver implements EncapDriver {
  readonly kind = 'native' as const;
  private readonly ip: IpClient;
  private readonly underlayDev: string;

  constructor(ip: IpClient, underlayDev: string) {
    this.ip = ip;
    this.underlayDev = underlayDev;
  }

  async apply(state: EncapState | null): Promise<EncapReport> {
    const report = emptyEncapReport();
    const dev = this.underlayDev;
    const routes: WantedRoute[] = (state?.peers ?? []).flatMap((p) =>
      p.blocks.map((dst) => {
        if (familyOf(dst.split('/')[0] ?? '') !== familyOf(p.underlayIP))
          throw new Error(`native route to ${dst} needs an underlay address of its family`);
        return { dst, dev, gateway: p.underlayIP };
      }),
    );
    const counts = await applyOwnedRoutes(this.ip, dev, ENCAP_ROUTE_PROTOCOL, routes);
    report.routesReplaced = counts.replaced;
    report.routesRemoved = counts.removed;
    return report;
  }
}
