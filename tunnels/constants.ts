// Fixed names and numbers of the VXLAN and IP-in-IP paths and of the policy routing
// that sends an encrypted pool's traffic into WireGuard. The WireGuard device's own
// constants, and the mesh's route protocol (251), live in agent/annotations.ts; pod
// routes carry 252 (cni/podnet.ts). Routes written by the drivers here carry
// ENCAP_ROUTE_PROTOCOL, so each driver lists, repairs and removes exactly its own
// (on its own device) and never a route someone else wrote.

/** The same name as agent/annotations.ts WIREGUARD_DEVICE (a unit test holds them equal). */
export const WIREGUARD_DEVICE_NAME = 'wiremesh.wg';
export const VXLAN_DEVICE = 'wiremesh.vxlan';
export const VXLAN_VNI = 4100;
export const VXLAN_PORT = 4789;
export const IPIP_DEVICE = 'wiremesh.ipip';

/** Routes to remote pod blocks over VXLAN, IP-in-IP, native routing, and in ENCRYPT_ROUTE_TABLE. */
export const ENCAP_ROUTE_PROTOCOL = 253;

/**
 * Routing table an encrypted pool's pods look up first (`from POOL lookup
 * ENCRYPT_ROUTE_TABLE`): remote pod blocks via the WireGuard device, so a pod whose
 * own pool asks for encryption is encrypted whatever the destination's pool says.
 */
export const ENCRYPT_ROUTE_TABLE = 51826;
/** Priority of those rules: after the host-encryption rule (5182), before main (32766). */
export const ENCRYPT_RULE_PRIORITY = 5183;

/** Names of the throwaway links the availability probes create and delete at once. */
export const PROBE_DEVICE = {
  wireguard: 'wmprobe.wg',
  vxlan: 'wmprobe.vxlan',
  ipip: 'wmprobe.ipip',
};
