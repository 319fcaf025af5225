// A table that uses every kind of object the driver handles (base chains of two types,
// interval, concatenated and ifname sets, a verdict map with jump and goto), shared by
// the unit and kernel tests, and a generator of large tables for measurements.
import type { NftTable } from './model.ts';

export function sampleTable(): NftTable {
  return {
    sets: [
      {
        name: 'ns-prod-v4',
        type: 'ipv4_addr',
        flags: ['interval'],
        elements: ['100.64.0.0/26', '100.64.1.7'],
      },
      { name: 'ns-prod-v6', type: 'ipv6_addr', flags: ['interval'], elements: ['fd64::/64'] },
      {
        name: 'web-ports',
        type: 'inet_service',
        flags: ['interval'],
        elements: ['80', '8000-8080'],
      },
      {
        name: 'pod-svc',
        type: 'ipv4_addr . inet_service',
        elements: ['100.64.0.5 . 80', '100.64.0.6 . 443'],
      },
      { name: 'pod-ifaces', type: 'ifname', elements: ['wm0a1b2c3d4e5', '"wiremesh.wg"'] },
      { name: 'iface-port', type: 'ifname . inet_service', elements: ['wiremesh.wg . 53'] },
    ],
    maps: [
      {
        name: 'to-pod',
        type: 'ipv4_addr',
        value: 'verdict',
        elements: {
          '100.64.0.5': 'jump pol-web',
          '100.64.0.6': 'drop',
          '100.64.0.7': 'goto pol-db',
        },
      },
    ],
    chains: [
      {
        name: 'forward',
        base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' },
        rules: ['ct state established,related accept', 'ip daddr vmap @to-pod'],
      },
      {
        name: 'dnat-hook',
        base: { type: 'nat', hook: 'prerouting', priority: -100, policy: 'accept' },
        rules: [],
      },
      { name: 'pol-web', rules: ['ip saddr @ns-prod-v4 tcp dport @web-ports accept', 'drop'] },
      {
        name: 'pol-db',
        rules: ['ip daddr . tcp dport @pod-svc accept', 'iifname @pod-ifaces drop'],
      },
    ],
  };
}

/** `chains` policy chains, each dispatched to by a verdict-map element, and `elements` addresses. */
export function largeTable(chains: number, elements: number): NftTable {
  const addr = (i: number) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
  const dispatch: Record<string, string> = {};
  for (let i = 0; i < chains; i++) dispatch[addr(i)] = `jump pol-${i}`;
  return {
    sets: [
      {
        name: 'peers',
        type: 'ipv4_addr',
        elements: Array.from({ length: elements }, (_, i) => addr(i)),
      },
    ],
    maps: [{ name: 'to-pod', type: 'ipv4_addr', value: 'verdict', elements: dispatch }],
    chains: [
      {
        name: 'forward',
        base: { type: 'filter', hook: 'forward', priority: 0, policy: 'accept' },
        rules: ['ip daddr vmap @to-pod'],
      },
      ...Array.from({ length: chains }, (_, i) => ({
        name: `pol-${i}`,
        rules: [`ip saddr @peers tcp dport ${1000 + (i % 60000)} accept`, 'drop'],
      })),
    ],
  };
}
