// The one interface every path between nodes implements (as Flannel's backends do):
// what it costs in MTU, which inner families it carries, whether this kernel has it,
// and a thin idempotent driver that makes the kernel match a desired per-peer state.
// WireGuard is represented here for availability and MTU; its device and peers are
// driven by agent/meshdriver.ts. Native routing (no encapsulation) is a path too.
// The registry of them is in registry.ts; the drivers in vxlan.ts, ipip.ts, native.ts.
import type { IpClient } from '../sys/index.ts';

export type EncapsulationKind = 'wireguard' | 'vxlan' | 'ipip';
export type PathKind = EncapsulationKind | 'native';

/** Bytes an encapsulation adds per packet, by underlay family (DESIGN.md). */
export const OVERHEAD: Record<PathKind, { 4: number; 6: number }> = {
  wireguard: { 4: 60, 6: 80 },
  vxlan: { 4: 50, 6: 70 },
  ipip: { 4: 20, 6: 40 },
  native: { 4: 0, 6: 0 },
};

/**
 * MTU inside a path: the host MTU less the path's overhead; WireGuard's rounded down
 * to a multiple of 16 (its padding). The same figures as agent/mtu.ts, for every path.
 */
export function encapsulationMtu(hostMtu: number, kind: PathKind, underlayFamily: 4 | 6): number {
  if (!Number.isInteger(hostMtu) || hostMtu < 1280)
    throw new Error(`host MTU ${hostMtu} is below 1280`);
  const mtu = hostMtu - OVERHEAD[kind][underlayFamily];
  return kind === 'wireguard' ? Math.floor(mtu / 16) * 16 : mtu;
}

/** Whether this kernel (and host) can use an encapsulation, and in words why (not). */
export interface Availability {
  kind: EncapsulationKind;
  available: boolean;
  /** e.g. 'kernel module', 'userspace wireguard-go', 'the kernel has no ipip support (...)'. */
  detail: string;
}

/** What the probes need to know about the host. */
export interface ProbeOptions {
  /** Underlay address of this node: VXLAN and IP-in-IP devices are bound to it. */
  localUnderlayIP: string;
  /** Whether userspace wireguard-go can stand in for a missing WireGuard module. */
  wireguardGo?: boolean;
}

/** One remote node on a path: where to send (underlay), its VTEP, and its pod blocks. */
export interface EncapPeer {
  node: string;
  underlayIP: string;
  /** The node's mesh tunnel address (see vtep.ts); used by VXLAN only. */
  vtepIP: string;
  /**
   * The node's IPv6 tunnel address, when IPv6 blocks exist (agent/plan.ts
   * tunnelAddress6): the VXLAN next hop of its IPv6 blocks. VXLAN only.
   */
  vtepIP6?: string;
  /** Pod blocks routed to this node over the path, as CIDRs. */
  blocks: string[];
}

/** The desired state of one path on this node. */
export interface EncapState {
  localUnderlayIP: string;
  /** This node's VTEP address (its mesh tunnel address); used by VXLAN only. */
  vtepIP: string;
  /** This node's IPv6 VTEP address (its IPv6 tunnel address), when IPv6 blocks exist. */
  vtepIP6?: string;
  /** MTU of the path's device (encapsulationMtu of the host MTU). */
  mtu: number;
  peers: EncapPeer[];
}

export interface EncapReport {
  deviceCreated: boolean;
  deviceRemoved: boolean;
  deviceChanged: boolean;
  fdbAdded: number;
  fdbRemoved: number;
  neighboursSet: number;
  neighboursRemoved: number;
  routesReplaced: number;
  routesRemoved: number;
}

export function emptyEncapReport(): EncapReport {
  return {
    deviceCreated: false,
    deviceRemoved: false,
    deviceChanged: false,
    fdbAdded: 0,
    fdbRemoved: 0,
    neighboursSet: 0,
    neighboursRemoved: 0,
    routesReplaced: 0,
    routesRemoved: 0,
  };
}

export function encapReportChanged(r: EncapReport): boolean {
  return Object.values(r).some((v) => v === true || (typeof v === 'number' && v > 0));
}

/** Makes the kernel match an EncapState; null removes the path's device and routes. */
export interface EncapDriver {
  readonly kind: PathKind;
  apply(state: EncapState | null): Promise<EncapReport>;
}

export interface Encapsulation {
  readonly kind: EncapsulationKind;
  /** The device carrying the path on every node. */
  readonly device: string;
  /** Whether the path carries inner packets of `inner` family over an `underlay` family. */
  carries(inner: 4 | 6, underlay: 4 | 6): boolean;
  /** Finds out whether this kernel has the encapsulation, leaving nothing behind. */
  probe(ip: IpClient, options: ProbeOptions): Promise<Availability>;
  /** The driver, for the paths wiremesh drives here; WireGuard's is agent/meshdriver.ts. */
  readonly driver?: (ip: IpClient, options?: DriverOptions) => EncapDriver;
}

export interface DriverOptions {
  /** The node's underlay device: VXLAN binds to it (optional), native routes use it. */
  underlayDev?: string;
}
