// tunnels/: the encapsulations (WireGuard, VXLAN, IP-in-IP) as a registry behind one
// interface: devices, peers, routes, MTU; and the typed wrapper over `wg`.
// Built under the WireGuard mesh and per-pool encapsulation issues.
export {};
