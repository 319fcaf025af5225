// tunnels/: the encapsulations that carry pod traffic between nodes. WireGuard now;
// VXLAN and IP-in-IP later, as a registry of encapsulations behind one interface (as
// Flannel's backends), each owning its device, peers, routes and MTU overhead. Here too:
// the typed wrapper over `wg` with its in-memory fake, and supervised userspace
// wireguard-go for kernels without the WireGuard module.
export * from './wg.ts';
export * from './userspace.ts';
export * from './wg-fake.ts';
