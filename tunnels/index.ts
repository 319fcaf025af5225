// tunnels/: the paths that carry pod traffic between nodes, as a registry of
// encapsulations behind one interface (as Flannel's backends): WireGuard (the `wg`
// wrapper with its in-memory fake, and supervised userspace wireguard-go for kernels
// without the module; its device and peers are driven by agent/meshdriver.ts), VXLAN
// and IP-in-IP (device, FDB, neighbours, routes per remote node), native routing, each
// with its MTU overhead and a start-up probe that says plainly when the kernel lacks it.
export * from './wg.ts';
export * from './userspace.ts';
export * from './wg-fake.ts';
export * from './constants.ts';
export * from './encapsulation.ts';
export * from './vtep.ts';
export * from './vxlan.ts';
export * from './ipip.ts';
export * from './native.ts';
export * from './registry.ts';
export * from './sourcerouting.ts';
export { applyOwnedRoutes, type WantedRoute } from './routes.ts';
