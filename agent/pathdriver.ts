// Applies a PathPlan (agent/paths.ts) to this node: the VXLAN and IP-in-IP devices
// with their FDB, neighbours and routes, the native routes on the underlay device,
// the encrypted pools' policy routing (table 51826), and loose reverse-path
// filtering on the tunnel devices (without encryption each side picks the path by
// the destination's pool, so a reply may arrive on another device than its request
// left by). Each tunnels/ driver applies only its difference and owns only its own
// routes (protocol 253); the WireGuard mesh is agent/meshdriver.ts's. rp_filter is
// loosened on the WireGuard device too: a plain pool's reply to an encrypted pod
// arrives through WireGuard while the route back to its source is VXLAN. The nftables
// fragment of the plan is composed into the agent's table by the policy phase.
//
// Order: the path drivers run after the mesh driver. A block moving from WireGuard
// to VXLAN loses its WireGuard route in the mesh pass and gains its VXLAN route a
// few milliseconds later here; one moving back is overwritten in place by the mesh
// driver's `route replace` (same destination), and the VXLAN driver then finds no
// route of its own left to remove. Either way no route points at a removed device.
import { writeFile } from 'node:fs/promises';
import type { IpClient } from '../sys/index.ts';
import {
  IPIP_DEVICE,
  IpipDriver,
  NativeDriver,
  SourceRoutingDriver,
  VXLAN_DEVICE,
  VxlanDriver,
  WIREGUARD_DEVICE_NAME,
  encapReportChanged,
  type EncapReport,
  type SourceRoutingReport,
} from '../tunnels/index.ts';
import type { PathPlan } from './paths.ts';

/** Writes one sysctl of this network namespace (real: /proc/sys; tests: a fake). */
export interface SysctlWriter {
  set(key: string, value: string): Promise<void>;
}

export const procSysctl: SysctlWriter = {
  async set(key, value) {
    if (!/^[a-z0-9_.\-/]+$/i.test(key) || key.includes('..'))
      throw new Error(`refusing sysctl key ${JSON.stringify(key)}`);
    await writeFile(`/proc/sys/${key}`, value);
  },
};

export interface PathApplyReport {
  vxlan: EncapReport;
  ipip: EncapReport;
  native: EncapReport;
  sourceRouting: SourceRoutingReport;
}

export function pathReportChanged(r: PathApplyReport): boolean {
  return (
    encapReportChanged(r.vxlan) ||
    encapReportChanged(r.ipip) ||
    encapReportChanged(r.native) ||
    Object.values(r.sourceRouting).some((v) => v > 0)
  );
}

export class PathDriver {
  private readonly ip: IpClient;
  private readonly sysctl: SysctlWriter;
  private readonly vxlan: VxlanDriver;
  private readonly ipip: IpipDriver;
  private readonly sourceRouting: SourceRoutingDriver;
  private native: { dev: string; driver: NativeDriver } | null = null;
  /** Devices whose rp_filter is set; a recreated device is set again. */
  private looseIndex = new Map<string, number>();

  constructor(ip: IpClient, sysctl: SysctlWriter = procSysctl) {
    this.ip = ip;
    this.sysctl = sysctl;
    this.vxlan = new VxlanDriver(ip);
    this.ipip = new IpipDriver(ip);
    this.sourceRouting = new SourceRoutingDriver(ip);
  }

  async apply(plan: PathPlan, underlayDev: string): Promise<PathApplyReport> {
    if (this.native?.dev !== underlayDev) {
      // The underlay device changed (rare): the old one's routes go first.
      if (this.native) await this.native.driver.apply(null);
      this.native = { dev: underlayDev, driver: new NativeDriver(this.ip, underlayDev) };
    }
    // The encrypted pools' policy routing is only there while some remote block takes
    // another path than theirs (agent/paths.ts), so it comes and goes with the other
    // paths' routes: rules are added before those routes move and removed after, so
    // an encrypted pool's packet never meets a plaintext route without its rule.
    const sourceState = { routes: plan.encryptRoutes, rules: plan.encryptRules };
    const before = await this.sourceRouting.apply(sourceState, { keepRules: true });
    const vxlan = await this.vxlan.apply(plan.vxlan);
    const ipip = await this.ipip.apply(plan.ipip);
    const native = await this.native.driver.apply(plan.native);
    for (const dev of [VXLAN_DEVICE, IPIP_DEVICE, WIREGUARD_DEVICE_NAME]) await this.loosen(dev);
    const after = await this.sourceRouting.apply(sourceState);
    const sourceRouting = {
      routesReplaced: before.routesReplaced + after.routesReplaced,
      routesRemoved: before.routesRemoved + after.routesRemoved,
      rulesAdded: before.rulesAdded + after.rulesAdded,
      rulesRemoved: before.rulesRemoved + after.rulesRemoved,
    };
    return { vxlan, ipip, native, sourceRouting };
  }

  private async loosen(dev: string): Promise<void> {
    const link = await this.ip.linkShow(dev);
    if (!link) {
      this.looseIndex.delete(dev);
      return;
    }
    if (this.looseIndex.get(dev) === link.index) return;
    await this.sysctl.set(`net/ipv4/conf/${dev}/rp_filter`, '2');
    this.looseIndex.set(dev, link.index);
  }
}
