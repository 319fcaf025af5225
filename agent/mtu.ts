// MTU of each path: the host MTU minus the encapsulation's overhead for the
// underlay family; WireGuard's is rounded down to a multiple of 16 (its padding).

export type Encapsulation = 'wireguard' | 'vxlan' | 'ipip';

const OVERHEAD: Record<Encapsulation, { 4: number; 6: number }> = {
  wireguard: { 4: 60, 6: 80 },
  vxlan: { 4: 50, 6: 70 },
  ipip: { 4: 20, 6: 40 },
};

export function pathMtu(
  hostMtu: number,
  encapsulation: Encapsulation,
  underlayFamily: 4 | 6,
): number {
  if (!Number.isInteger(hostMtu) || hostMtu < 1280)
    throw new Error(`host MTU ${hostMtu} is below 1280`);
  const mtu = hostMtu - OVERHEAD[encapsulation][underlayFamily];
  return encapsulation === 'wireguard' ? Math.floor(mtu / 16) * 16 : mtu;
}
