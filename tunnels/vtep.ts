// The VXLAN tunnel endpoint (VTEP) of a node, derived so that no annotation is needed.
//
// VTEP address: the node's mesh tunnel address (agent/plan.ts assignTunnelAddresses,
// the same deterministic assignment every agent computes). It is never assigned to the
// VXLAN device: it is only the next hop of the routes to a node's pod blocks
// (`via VTEP dev wiremesh.vxlan onlink`) and the key of the permanent neighbour entry
// that resolves it. So it does not collide with the same address on wiremesh.wg, and a
// host-originated packet never takes it as its source (a reply to it would need a
// WireGuard peer, which a node on the VXLAN fallback may not have).
//
// VTEP MAC: locally administered unicast, `0e:6d` ("m") then the low 32 bits of the
// VTEP address. Injective for IPv4; for IPv6 as long as the tunnel CIDR is /96 or
// longer, which the tunnel address assignment can check. Every agent derives the same
// MAC for a node, so the FDB entry (MAC -> underlay IP) and the neighbour entry
// (VTEP -> MAC) on one node match the device's own MAC on the other.
//
// IPv6 next hop: the link-local address of the VTEP MAC (EUI-64, fe80::/64), which is
// also the address the kernel gives the peer's VXLAN device itself. Not the IPv6
// tunnel address: the WireGuard mesh routes every peer's tunnel address /128 via
// wiremesh.wg, and the kernel refuses an IPv6 onlink route whose gateway the main
// table routes out of another device ("Nexthop has invalid gateway or device
// mismatch"); a link-local gateway is scoped to its device and never checked so.
import ipaddr from 'ipaddr.js';

export function vtepMac(vtepAddress: string): string {
  let bytes: number[];
  try {
    bytes = ipaddr.parse(vtepAddress).toByteArray();
  } catch (e) {
    throw new Error(`VTEP address '${vtepAddress}' is not an IP address`, { cause: e });
  }
  const low = bytes.slice(-4);
  return [0x0e, 0x6d, ...low].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The IPv6 link-local address (EUI-64 of vtepMac) that is a node's VXLAN next hop for IPv6. */
export function vtepLinkLocal(vtepAddress: string): string {
  const mac = vtepMac(vtepAddress)
    .split(':')
    .map((h) => parseInt(h, 16));
  const [m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0] = mac;
  const eui = [m0 ^ 0x02, m1, m2, 0xff, 0xfe, m3, m4, m5];
  return ipaddr.fromByteArray([0xfe, 0x80, 0, 0, 0, 0, 0, 0, ...eui]).toString();
}
