// The ADD result (CNI spec section 5, "ADD Success") for a wiremesh pod, in the shape
// of the cniVersion the request's config asks for. Pure: the netns and veth work
// hands over what it made (`PodInterfaceResult`), `addResult` renders it as a 1.1.0
// result and `convertResult` turns that into the version asked for.
//
// The result is also the `prevResult` of the plugins chained after us (portmap,
// bandwidth), which read it with the reference library's types: they find the pod's
// addresses through `ips[].interface` pointing at the interface named CNI_IFNAME with
// a `sandbox`, and the host veth as an interface without one. So both interfaces are
// listed, host side first.
//
// The conversions are the spec's (and the reference library's, pkg/types/040 and
// 100), one result type per row:
//   0.3.0, 0.3.1, 0.4.0  one type: every ip carries `version` ("4" or "6") beside its
//                        `interface` index; no interface or route field of 1.1.
//   1.0.0                `ips[].version` dropped (the address says its family).
//   1.1.0                adds interfaces[].mtu, socketPath, pciID and routes[].mtu,
//                        advmss, priority, table, scope.
// Converting down drops what the older type lacks and adds `version`; converting up
// drops `version`. 0.1.0 and 0.2.0 had another result type (ip4/ip6), not spoken here.
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
  mac?: string;
  sandbox?: string;
  /** 1.1.0 only, like socketPath and pciID. */
  mtu?: number;
  socketPath?: string;
  pciID?: string;
}

export interface ResultIp {
  /** 0.3.x and 0.4.0 only. */
  version?: '4' | '6';
  address: string;
  gateway?: string;
  interface?: number;
}

export interface ResultRoute {
  dst: string;
  gw?: string;
  /** 1.1.0 only, like advmss, priority, table and scope. */
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface AddResult {
  cniVersion: string;
  interfaces: ResultInterface[];
  ips: ResultIp[];
  routes: ResultRoute[];
  dns: Record<string, unknown>;
}

const POD_INTERFACE = 1; // index of the pod's interface in `interfaces`
const INTERFACE_FIELDS_1_1 = ['mtu', 'socketPath', 'pciID'] as const;
const ROUTE_FIELDS_1_1 = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;

/** The ADD result for one pod; throws on an unsupported version or a malformed address. */
export function addResult(r: PodInterfaceResult, cniVersion: string): AddResult {
  const ips: ResultIp[] = r.addresses.map((address) => {
    const v4 = isIPv4(address);
    if (!v4 && !isIPv6(address)) {
      throw new Error(`addResult: ${JSON.stringify(address)} is not a plain IP address`);
    }
    const gateway = v4 ? r.gateway4 : r.gateway6;
    return {
      address: `${address}/${v4 ? 32 : 128}`,
      ...(gateway !== undefined ? { gateway } : {}),
      interface: POD_INTERFACE,
    };
  });

  const routes: ResultRoute[] = [];
  if (r.addresses.some((a) => isIPv4(a))) routes.push(defaultRoute('0.0.0.0/0', r.gateway4));
  if (r.addresses.some((a) => isIPv6(a))) routes.push(defaultRoute('::/0', r.gateway6));

  const latest: AddResult = {
    cniVersion: '1.1.0',
    interfaces: [
      { name: r.hostIfName, mac: r.hostMac },
      { name: r.podIfName, mac: r.podMac, sandbox: r.sandbox, mtu: r.mtu },
    ],
    ips,
    routes,
    dns: {},
  };
  return convertResult(latest, cniVersion);
}

/**
 * A result of one supported version in the shape of another (see the table above).
 * Fields neither type knows pass through; throws on a version outside 0.3.0 - 1.1.0
 * and, converting down, on an ip whose address is not a CIDR.
 */
export function convertResult(result: AddResult, toVersion: string): AddResult {
  for (const v of [result.cniVersion, toVersion])
    if (!SUPPORTED_VERSIONS.includes(v))
      throw new Error(`convertResult: unsupported cniVersion ${JSON.stringify(v)}`);
  const legacy = toVersion.startsWith('0.'); // the 0.3.0 - 0.4.0 result type
  const withV11Fields = toVersion === '1.1.0';
  return {
    ...result,
    cniVersion: toVersion,
    interfaces: result.interfaces.map((i) =>
      withV11Fields ? { ...i } : omit(i, INTERFACE_FIELDS_1_1),
    ),
    ips: result.ips.map((ip) => {
      const rest = omit(ip, ['version']);
      return legacy ? { version: familyOf(ip.address), ...rest } : rest;
    }),
    routes: result.routes.map((r) => (withV11Fields ? { ...r } : omit(r, ROUTE_FIELDS_1_1))),
  };
}

function familyOf(cidr: string): '4' | '6' {
  const address = cidr.split('/')[0] ?? '';
  if (isIPv4(address)) return '4';
  if (isIPv6(address)) return '6';
  throw new Error(`convertResult: ${JSON.stringify(cidr)} is not an address in CIDR notation`);
}

function omit<T extends object>(o: T, keys: readonly string[]): T {
  const out = { ...o };
  for (const k of keys) delete (out as Record<string, unknown>)[k];
  return out;
}

function defaultRoute(dst: string, gw: string | undefined): ResultRoute {
  return gw === undefined ? { dst } : { dst, gw };
}
