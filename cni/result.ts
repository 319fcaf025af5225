// The ADD result (CNI spec section 5, "ADD Success") for a wiremesh pod, in the shape
// of the cniVersion the runtime asked for. Pure: the netns and veth work hands over
// what it made (`PodInterfaceResult`) and this renders it.
//
// The result is also the `prevResult` of the plugins chained after us (portmap,
// bandwidth), which read it with the reference library's types: they find the pod's
// addresses through `ips[].interface` pointing at the interface named CNI_IFNAME with
// a `sandbox`, and the host veth as an interface without one. So both interfaces are
// listed, host side first. Per version: 0.3.x and 0.4.0 need `ips[].version` ("4" or
// "6"); 1.0.0 dropped it; `interfaces[].mtu` exists from 1.1.0.
import { isIPv4, isIPv6 } from 'node:net';
import { SUPPORTED_VERSIONS } from './protocol.ts';

export interface PodInterfaceResult {
  /** The host side of the veth (`wm` + 11 hex). */
  hostIfName: string;
  hostMac: string;
  /** CNI_IFNAME, inside the pod. */
  podIfName: string;
  podMac: string;
  /** CNI_NETNS: the pod's netns path. */
  sandbox: string;
  mtu: number;
  /** The pod's addresses, plain (no prefix): each is a /32 or a /128. */
  addresses: string[];
  /** The pod's IPv4 next hop, 169.254.1.1 (proxy ARP on the host side). */
  gateway4?: string;
  gateway6?: string;
}

export interface ResultInterface {
  name: string;
  mac: string;
  sandbox?: string;
  mtu?: number;
}

export interface ResultIp {
  /** 0.3.x and 0.4.0 only. */
  version?: '4' | '6';
  address: string;
  gateway?: string;
  interface: number;
}

export interface ResultRoute {
  dst: string;
  gw?: string;
}

export interface AddResult {
  cniVersion: string;
  interfaces: ResultInterface[];
  ips: ResultIp[];
  routes: ResultRoute[];
  dns: Record<string, never>;
}

const POD_INTERFACE = 1; // index of the pod's interface in `interfaces`

/** The ADD result for one pod; throws on an unsupported version or a malformed address. */
export function addResult(r: PodInterfaceResult, cniVersion: string): AddResult {
  if (!SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new Error(`addResult: unsupported cniVersion ${JSON.stringify(cniVersion)}`);
  }
  const legacy = cniVersion.startsWith('0.'); // the 0.3.0 - 0.4.0 result type
  const withMtu = cniVersion === '1.1.0';

  const ips: ResultIp[] = r.addresses.map((address) => {
    const v4 = isIPv4(address);
    if (!v4 && !isIPv6(address)) {
      throw new Error(`addResult: ${JSON.stringify(address)} is not a plain IP address`);
    }
    const gateway = v4 ? r.gateway4 : r.gateway6;
    return {
      ...(legacy ? { version: v4 ? ('4' as const) : ('6' as const) } : {}),
      address: `${address}/${v4 ? 32 : 128}`,
      ...(gateway !== undefined ? { gateway } : {}),
      interface: POD_INTERFACE,
    };
  });

  const routes: ResultRoute[] = [];
  if (r.addresses.some((a) => isIPv4(a))) routes.push(defaultRoute('0.0.0.0/0', r.gateway4));
  if (r.addresses.some((a) => isIPv6(a))) routes.push(defaultRoute('::/0', r.gateway6));

  return {
    cniVersion,
    interfaces: [
      { name: r.hostIfName, mac: r.hostMac },
      {
        name: r.podIfName,
        mac: r.podMac,
        sandbox: r.sandbox,
        ...(withMtu ? { mtu: r.mtu } : {}),
      },
    ],
    ips,
    routes,
    dns: {},
  };
}

function defaultRoute(dst: string, gw: string | undefined): ResultRoute {
  return gw === undefined ? { dst } : { dst, gw };
}
