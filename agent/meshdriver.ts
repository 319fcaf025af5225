// The WireGuard mesh driver: compares a MeshPlan with what the kernel and the
// WireGuard device report and applies only the difference, idempotently. It never
// rewrites a peer whose configuration is unchanged, since setting a peer can
// interrupt its traffic; it removes what it owns and no longer wants (peers on its
// device, routes carrying its protocol number). Run again on a timer, it repairs drift,
// including a device that vanished with a wireguard-go crash.
//
// Order: routes that are no longer wanted go first (main table and host table), then
// the peers that are no longer wanted, then the peers are set, then the new routes.
// So a route never outlives the peer it leads to, and never leads to a peer not yet
// set, even when something later in the pass fails. One peer that cannot be set (an
// endpoint that does not resolve) does not hold up the others, nor the routes: the
// pass goes on and fails at the end, naming it, and the reconciler retries.
import type { WgClient, WgPeerConfig, WgPeer } from '../tunnels/index.ts';
import type { IpClient, RouteInfo } from '../sys/index.ts';
import type { MeshPlan, PeerPlan } from './plan.ts';
import { ROUTE_PROTOCOL, HOST_ROUTE_TABLE } from './annotations.ts';

/** Creates the WireGuard link when it is missing (kernel module or supervised wireguard-go). */
export interface DeviceProvider {
  readonly mode: 'kernel' | 'userspace';
  ensure(name: string): Promise<void>;
}

export interface ApplyReport {
  deviceCreated: boolean;
  privateKeySet: boolean;
  listenPortSet: boolean;
  fwmarkSet: boolean;
  mtuSet: boolean;
  addressesChanged: number;
  peersAdded: number;
  peersUpdated: number;
  peersRemoved: number;
  routesReplaced: number;
  routesRemoved: number;
}

export function emptyReport(): ApplyReport {
  return {
    deviceCreated: false,
    privateKeySet: false,
    listenPortSet: false,
    fwmarkSet: false,
    mtuSet: false,
    addressesChanged: 0,
    peersAdded: 0,
    peersUpdated: 0,
    peersRemoved: 0,
    routesReplaced: 0,
    routesRemoved: 0,
  };
}

export function reportChanged(r: ApplyReport): boolean {
  return Object.values(r).some((v) => v === true || (typeof v === 'number' && v > 0));
}

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');

/** Whether the device's peer must be (re)written to match the plan. */
export function peerNeedsUpdate(
  want: PeerPlan,
  have: WgPeer,
  lastApplied: PeerPlan | undefined,
): boolean {
  if (!sameSet(want.allowedIPs, have.allowedIPs)) return true;
  if (want.persistentKeepalive !== have.persistentKeepalive) return true;
  // WireGuard updates a peer's endpoint when the peer roams; follow it unless our wish changed.
  if (want.endpoint !== null) {
    if (lastApplied) return lastApplied.endpoint !== want.endpoint;
    return have.endpoint !== want.endpoint;
  }
  return false;
}

function peerConfig(peer: PeerPlan): WgPeerConfig {
  return {
    publicKey: peer.publicKey,
    endpoint: peer.endpoint,
    allowedIPs: peer.allowedIPs,
    persistentKeepalive: peer.persistentKeepalive,
  };
}

export class MeshDriver {
  private readonly wg: WgClient;
  private readonly ip: IpClient;
  private readonly device: DeviceProvider;
  private lastApplied = new Map<string, PeerPlan>();

  constructor(deps: { wg: WgClient; ip: IpClient; device: DeviceProvider }) {
    this.wg = deps.wg;
    this.ip = deps.ip;
    this.device = deps.device;
  }

  async apply(plan: MeshPlan, privateKey: string, publicKey: string): Promise<ApplyReport> {
    const report = emptyReport();
    const name = plan.device.name;

    let link = await this.ip.linkShow(name);
    if (!link) {
      await this.device.ensure(name);
      report.deviceCreated = true;
      this.lastApplied.clear();
      link = await this.ip.linkShow(name);
      if (!link) throw new Error(`WireGuard device ${name} still missing after creating it`);
    }

    let dev = await this.wg.show(name);
    if (!dev) throw new Error(`WireGuard device ${name} exists but does not answer 'wg show'`);
    if (dev.publicKey !== publicKey) {
      await this.wg.setPrivateKey(name, privateKey);
      report.privateKeySet = true;
    }
    if (dev.listenPort !== plan.device.listenPort) {
      await this.wg.setListenPort(name, plan.device.listenPort);
      report.listenPortSet = true;
    }
    if (dev.fwmark !== plan.device.fwmark) {
      await this.wg.setFwmark(name, plan.device.fwmark);
      report.fwmarkSet = true;
    }
    if (report.privateKeySet || report.listenPortSet || report.fwmarkSet)
      dev = (await this.wg.show(name)) ?? dev;

    const failures: Error[] = [];
    const routes = await this.ip.routeList(name, ROUTE_PROTOCOL);
    const hostRoutes = await this.ip.routeList(name, ROUTE_PROTOCOL, HOST_ROUTE_TABLE);
    await this.withdrawRoutes(plan, routes, hostRoutes, report, failures);

    // Peers: remove the unwanted first, so a key moving between nodes frees its AllowedIPs.
    const want = new Map(plan.peers.map((p) => [p.publicKey, p]));
    for (const have of dev.peers) {
      if (want.has(have.publicKey)) continue;
      try {
        await this.wg.removePeer(name, have.publicKey);
        this.lastApplied.delete(have.publicKey);
        report.peersRemoved++;
      } catch (e) {
        failures.push(
          new Error(`removing peer ${have.publicKey}: ${(e as Error).message}`, { cause: e }),
        );
      }
    }
    const haveByKey = new Map(dev.peers.map((p) => [p.publicKey, p]));
    const changed = plan.peers.filter((peer) => {
      const have = haveByKey.get(peer.publicKey);
      return !have || peerNeedsUpdate(peer, have, this.lastApplied.get(peer.publicKey));
    });
    const set = await this.setPeers(name, changed, haveByKey, failures);
    for (const peer of set) {
      this.lastApplied.set(peer.publicKey, peer);
      if (haveByKey.has(peer.publicKey)) report.peersUpdated++;
      else report.peersAdded++;
    }

    if (link.mtu !== plan.device.mtu) {
      await this.ip.linkSetMtu(name, plan.device.mtu);
      report.mtuSet = true;
    }
    const addrs = await this.ip.addrList(name);
    const wantAddrs = [
      plan.device.address,
      ...(plan.device.address6 ? [plan.device.address6] : []),
    ];
    for (const a of addrs) {
      if (!wantAddrs.includes(a)) {
        await this.ip.addrDel(name, a);
        report.addressesChanged++;
      }
    }
    for (const want of wantAddrs) {
      if (addrs.includes(want)) continue;
      await this.ip.addrAdd(name, want);
      report.addressesChanged++;
    }
    if (!link.up) await this.ip.linkSetUp(name);

    const haveRoutes = new Map(routes.map((r) => [r.dst, r]));
    const newRoutes = plan.routes.filter((r) => {
      const h = haveRoutes.get(r.dst);
      return !(h && h.dev === r.dev && h.src === r.src);
    });
    await this.replaceRoutes(
      newRoutes.map((r) => ({ ...r, protocol: ROUTE_PROTOCOL })),
      report,
      failures,
    );
    await this.applyHostRouting(plan, hostRoutes, report, failures);
    const [first] = failures;
    if (first && failures.length === 1) throw first;
    if (first)
      throw new AggregateError(
        failures,
        `${failures.length} mesh changes failed: ${failures.map((f) => f.message).join('; ')}`,
      );
    return report;
  }

  /**
   * Sets the changed peers, many per `wg` call; when a call fails (one bad peer fails
   * all of it), its peers one by one, so the others still get set. Returns the peers set.
   */
  private async setPeers(
    name: string,
    peers: readonly PeerPlan[],
    have: ReadonlyMap<string, WgPeer>,
    failures: Error[],
  ): Promise<PeerPlan[]> {
    if (peers.length === 0) return [];
    // A new peer: turning keepalive on sends a keepalive at once, which starts a
    // handshake now. The far side may still hold a session from before this peer was
    // (re)added here, and would otherwise keep using it until it times out.
    const kick = (p: PeerPlan) =>
      !have.has(p.publicKey) && p.persistentKeepalive === 0 && p.endpoint !== null;
    const steps = (p: PeerPlan): WgPeerConfig[] =>
      kick(p) ? [{ ...peerConfig(p), persistentKeepalive: 1 }, peerConfig(p)] : [peerConfig(p)];
    try {
      const kicks = peers.filter(kick).map((p) => ({ ...peerConfig(p), persistentKeepalive: 1 }));
      if (kicks.length > 0) await this.wg.setPeers(name, kicks);
      await this.wg.setPeers(name, peers.map(peerConfig));
      return [...peers];
    } catch {
      const done: PeerPlan[] = [];
      for (const peer of peers) {
        try {
          for (const config of steps(peer)) await this.wg.setPeer(name, config);
          done.push(peer);
        } catch (e) {
          failures.push(new Error(`peer ${peer.node}: ${(e as Error).message}`, { cause: e }));
        }
      }
      return done;
    }
  }

  /** Writes routes with one `ip -batch`; each line that failed fails the pass at its end. */
  private async replaceRoutes(
    routes: readonly (RouteInfo & { protocol: number })[],
    report: ApplyReport,
    failures: Error[],
  ): Promise<void> {
    if (routes.length === 0) return;
    const errors = await this.ip.routeReplaceBatch(routes);
    if (errors.length > 0) failures.push(new Error(`writing routes: ${errors.join('; ')}`));
    // `ip -batch` names each failed line with an error line and a `Command failed` line.
    report.routesReplaced +=
      routes.length - errors.filter((l) => l.startsWith('Command failed')).length;
  }

  /**
   * Removes the routes of ours the plan no longer has, before any peer goes. `ip route
   * del` is quiet when the route is already gone, so what it removed is listed again:
   * one still there fails the pass (after the rest of it), rather than outliving its peer
   * unnoticed.
   */
  private async withdrawRoutes(
    plan: MeshPlan,
    routes: readonly RouteInfo[],
    hostRoutes: readonly RouteInfo[],
    report: ApplyReport,
    failures: Error[],
  ): Promise<void> {
    const name = plan.device.name;
    const wantMain = new Map(plan.routes.map((r) => [r.dst, r]));
    const wantHost = new Set(plan.hostRoutes.map((r) => r.dst));
    const stale = [
      ...routes.filter((r) => wantMain.get(r.dst)?.dev !== r.dev),
      ...hostRoutes.filter((r) => !wantHost.has(r.dst)),
    ];
    for (const r of stale) {
      await this.ip.routeDel(r);
      report.routesRemoved++;
    }
    if (stale.length === 0) return;
    const left = [
      ...(await this.ip.routeList(name, ROUTE_PROTOCOL)),
      ...(await this.ip.routeList(name, ROUTE_PROTOCOL, HOST_ROUTE_TABLE)),
    ].filter((r) => stale.some((s) => s.dst === r.dst && s.table === r.table));
    for (const r of left) {
      const table = r.table === undefined ? 'main' : String(r.table);
      failures.push(new Error(`route ${r.dst} dev ${name} (table ${table}) could not be removed`));
    }
  }

  /**
   * Host-to-host encryption: routes in HOST_ROUTE_TABLE and the `not fwmark` rules.
   * Unwanted routes are already gone (withdrawRoutes); rules go after the routes they
   * led to and come after the routes they lead to.
   */
  private async applyHostRouting(
    plan: MeshPlan,
    have: readonly RouteInfo[],
    report: ApplyReport,
    failures: Error[],
  ): Promise<void> {
    const haveByDst = new Map(have.map((r) => [r.dst, r]));
    const changed = plan.hostRoutes.filter((r) => {
      const h = haveByDst.get(r.dst);
      return !(h && h.src === r.src);
    });
    await this.replaceRoutes(
      changed.map((r) => ({ ...r, table: HOST_ROUTE_TABLE, protocol: ROUTE_PROTOCOL })),
      report,
      failures,
    );
    const rules = await this.ip.ruleList(HOST_ROUTE_TABLE);
    const key = (r: { family: number; priority: number; notFwmark: number }) =>
      `${r.family}/${r.priority}/${r.notFwmark}`;
    const wantRules = new Set(plan.hostRules.map(key));
    for (const r of rules) if (!wantRules.has(key(r))) await this.ip.ruleDel(r);
    const haveRules = new Set(rules.map(key));
    for (const r of plan.hostRules) if (!haveRules.has(key(r))) await this.ip.ruleAdd(r);
  }
}
