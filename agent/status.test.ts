import test from 'ava';
import type { MeshPlan } from './plan.ts';
import { composeStatus, type StatusParts } from './status.ts';

const peer = (publicKey: string, rxBytes: number) => ({
  publicKey,
  endpoint: '198.18.0.12:51825',
  allowedIPs: ['100.64.1.0/26'],
  latestHandshake: 1,
  rxBytes,
  txBytes: 0,
  persistentKeepalive: 0,
});

function parts(over: Partial<StatusParts> = {}): StatusParts {
  const plan = {
    tunnelAddress: '100.127.0.1',
    device: { mtu: 1420 },
    refused: [{ node: 'node-x', reason: 'NoPublicKey', message: 'no key' }],
    peers: [
      { node: 'node-b', publicKey: 'KB', endpoint: null, allowedIPs: [], persistentKeepalive: 0 },
      { node: 'east/n1', publicKey: 'KE', endpoint: null, allowedIPs: [], persistentKeepalive: 0 },
    ],
  } as unknown as MeshPlan;
  return {
    node: 'node-a',
    listenPort: 51825,
    mode: 'userspace',
    publicKey: 'KA',
    plan,
    devicePeers: [peer('KB', 5), peer('KE', 7), peer('K?', 9)],
    policy: { stats: null, problems: 0, lastApply: null },
    available: null,
    pools: [],
    paths: null,
    remotes: [
      {
        name: 'east',
        synced: true,
        reachable: true,
        lastError: null,
      } as unknown as StatusParts['remotes'][number],
    ],
    remotePlan: {
      clusters: [{ name: 'east', conditions: [{ type: 'Ready', status: 'True' }] }],
    } as unknown as StatusParts['remotePlan'],
    reconcile: { passes: 1 } as unknown as StatusParts['reconcile'],
    synced: true,
    ...over,
  };
}

test('peers are named by their key in the plan, sorted; a stranger is (unknown)', (t) => {
  const s = composeStatus(parts());
  t.deepEqual(
    s.peers.map((p) => [p.node, p.rxBytes]),
    [
      ['(unknown)', 9],
      ['east/n1', 7],
      ['node-b', 5],
    ],
  );
  t.false('persistentKeepalive' in (s.peers[0] ?? {}));
  t.deepEqual(s.wireguard, {
    mode: 'userspace',
    device: 'wiremesh.wg',
    listenPort: 51825,
    publicKey: 'KA',
    tunnelAddress: '100.127.0.1',
    mtu: 1420,
  });
  t.is(s.refused[0]?.node, 'node-x');
});

test('a remote cluster shows its own peers and the conditions of the last plan', (t) => {
  const s = composeStatus(parts());
  t.deepEqual(
    s.remotes?.map((r) => [r.name, r.peers.map((p) => p.node), r.conditions.length]),
    [['east', ['east/n1'], 1]],
  );
});

test('before the first pass: no plan, nothing known yet', (t) => {
  const s = composeStatus(parts({ plan: null, devicePeers: [], remotePlan: null }));
  t.is(s.wireguard.tunnelAddress, null);
  t.is(s.wireguard.mtu, null);
  t.deepEqual(s.refused, []);
  t.deepEqual(s.paths.blocks, []);
  t.is(s.paths.mtu, null);
  t.deepEqual(s.remotes?.[0]?.conditions, []);
});
