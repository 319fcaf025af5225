// A node agent's status and IPAM usage as a 3-node cluster would show them on
// node-a, for the tests of the metrics (agent/metrics.test.ts) and of the status
// renderers (cli/status.test.ts). Plain data, no I/O.
import type { AgentStatus } from './status.ts';
import type { IpamUsage } from '../ipam/index.ts';

/** The fixture's clock: 2026-01-01T00:00:00Z. */
export const FIXTURE_NOW_MS = Date.UTC(2026, 0, 1);
const nowS = FIXTURE_NOW_MS / 1000;

export function fakeAgentStatus(): AgentStatus {
  return {
    node: 'node-a',
    wireguard: {
      mode: 'userspace',
      device: 'wiremesh.wg',
      listenPort: 51825,
      publicKey: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      tunnelAddress: '100.127.0.1',
      mtu: 1440,
    },
    peers: [
      {
        node: 'node-b',
        publicKey: 'BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=',
        endpoint: '198.18.0.3:51825',
        allowedIPs: ['100.127.0.2/32', '100.64.1.0/26'],
        latestHandshake: nowS - 42,
        rxBytes: 123456,
        txBytes: 654321,
      },
      {
        node: 'node-c',
        publicKey: 'CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA=',
        endpoint: '198.18.0.4:51825',
        allowedIPs: ['100.127.0.3/32', '100.64.2.0/26', '100.80.2.0/26'],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 148,
      },
    ],
    refused: [{ node: 'node-x', reason: 'DuplicateKey', message: 'node-y claims the same key' }],
    policy: {
      stats: {
        pods: 6,
        localPods: 2,
        policies: 3,
        isolatedIngress: 1,
        isolatedEgress: 0,
        chains: 7,
        sets: 4,
        maps: 1,
        rules: 21,
        elements: 9,
      },
      problems: 1,
      lastApply: null,
    },
    paths: {
      available: [
        { kind: 'wireguard', available: true, detail: 'userspace' },
        { kind: 'vxlan', available: true, detail: '' },
      ],
      pools: [
        {
          name: 'default',
          cidr: '100.64.0.0/16',
          encryption: 'WireGuard',
          encryptionMode: 'Required',
          encapsulation: 'None',
          natOutgoing: true,
        },
        {
          name: 'plain',
          cidr: '100.80.0.0/16',
          encryption: 'None',
          encryptionMode: 'Preferred',
          encapsulation: 'VXLAN',
          natOutgoing: false,
        },
      ],
      blocks: [
        { cidr: '100.64.0.0/26', node: 'node-a', pool: 'default', path: 'native', reason: 'local' },
        { cidr: '100.64.1.0/26', node: 'node-b', pool: 'default', path: 'wireguard', reason: '' },
        { cidr: '100.64.2.0/26', node: 'node-c', pool: 'default', path: 'wireguard', reason: '' },
        { cidr: '100.80.2.0/26', node: 'node-c', pool: 'plain', path: 'vxlan', reason: '' },
      ],
      mtu: null,
      events: [],
    },
    routes: {
      watching: true,
      removed: 3,
      repairs: 1,
      restored: 2,
      lastRepair: {
        at: new Date(FIXTURE_NOW_MS - 60_000).toISOString(),
        count: 3,
        removed: [
          '100.64.0.2 dev wm0a1b2c3d4e5 proto 252 scope 253',
          '100.64.1.0/26 dev wiremesh.wg proto 251 scope 253',
          '198.18.0.0/16 dev eth0 proto 2 scope 253 src 198.18.0.2',
        ],
        restoredMs: 24.2,
        repairedMs: 241.7,
      },
    },
    reconcile: {
      passes: 12,
      failures: 1,
      lastError: null,
      lastDurationMs: 18.5,
      lastSuccessAt: FIXTURE_NOW_MS - 5000,
    },
    synced: true,
  };
}

export function fakeIpamUsage(): IpamUsage {
  return {
    node: 'node-a',
    capacity: 64,
    allocated: 2,
    blocks: [
      {
        cidr: '100.64.0.0/26',
        pool: 'default',
        family: 4,
        capacity: 64,
        allocated: 2,
        state: 'held',
      },
    ],
    journal: { path: '/var/lib/wiremesh/ipam/journal', lines: 3 },
    pools: ['default', 'plain'],
    problems: [],
  };
}
