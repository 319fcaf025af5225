import test from 'ava';
import type { ExecutionContext } from 'ava';
import { planRemotePeers, type RemotePlanInput } from './plan.ts';
import type { RemotePlan } from './types.ts';
import { block, externalPeer, pool, remoteNode, snapshot, testKey } from './fixtures.ts';

const LOCAL: Pick<RemotePlanInput, 'localPools' | 'tunnelCIDR' | 'localKeys' | 'listenPort'> = {
  localPools: [pool('default-ipv4', '100.64.0.0/16')],
  tunnelCIDR: '100.127.0.0/16',
  localKeys: new Map([
    [testKey(1), 'a-node1'],
    [testKey(2), 'a-node2'],
  ]),
  listenPort: 51825,
};

const clusterB = (parts: Parameters<typeof snapshot>[1] = {}) =>
  snapshot('b', {
    nodes: [
      remoteNode('b-node1', 11, { endpoint: '198.18.1.11:51825' }),
      remoteNode('b-node2', 12, { internalIPs: ['198.18.1.12'] }),
    ],
    pools: [pool('default-ipv4', '100.65.0.0/16')],
    blocks: [
      block('100.65.0.64/26', 'default-ipv4', 'b-node1'),
      block('100.65.0.0/26', 'default-ipv4', 'b-node1'),
      block('100.65.0.128/26', 'default-ipv4', 'b-node2'),
    ],
    ...parts,
  });

const plan = (extra: Partial<RemotePlanInput>): RemotePlan =>
  planRemotePeers({ ...LOCAL, remotes: [], peers: [], ...extra });

const peersOf = (p: RemotePlan) => p.peers.map((x) => `${x.node} ${x.allowedIPs.join(',')}`);
const conditionOf = (p: RemotePlan, cluster: string, type: string) => {
  const c = p.clusters.find((r) => r.name === cluster)?.conditions.find((x) => x.type === type);
  return c ? `${c.status} ${c.reason}` : 'absent';
};
const refusedOf = (p: RemotePlan) => p.refused.map((r) => `${r.object} ${r.reason}`);

interface Case {
  input: Partial<RemotePlanInput>;
  peers: string[];
  conditions?: Record<string, string>;
  refused?: string[];
}

const planned = test.macro({
  exec(t: ExecutionContext, c: Case) {
    const p = plan(c.input);
    t.deepEqual(peersOf(p), c.peers, 'peers');
    for (const [key, want] of Object.entries(c.conditions ?? {})) {
      const [cluster = '', type = ''] = key.split('.');
      t.is(conditionOf(p, cluster, type), want, key);
    }
    t.deepEqual(refusedOf(p), c.refused ?? [], 'refused');
  },
  title: (title = '') => `planRemotePeers: ${title}`,
});

test('two clusters with disjoint pools: every remote node with blocks is a peer', planned, {
  input: { remotes: [clusterB()] },
  peers: ['b/b-node1 100.65.0.0/26,100.65.0.64/26', 'b/b-node2 100.65.0.128/26'],
  conditions: {
    'b.Connected': 'True Watching',
    'b.Unreachable': 'False Reachable',
    'b.CIDRConflict': 'False NoOverlap',
  },
});

test('a remote pool overlapping a local pool is refused, nothing of it routed', planned, {
  input: {
    remotes: [
      clusterB({
        pools: [pool('default-ipv4', '100.64.0.0/16')],
        blocks: [block('100.64.0.0/26', 'default-ipv4', 'b-node1')],
      }),
    ],
  },
  peers: [],
  conditions: { 'b.Connected': 'True Watching', 'b.CIDRConflict': 'True OverlappingPools' },
});

test('a remote pool overlapping the local tunnel range is refused', planned, {
  input: {
    remotes: [
      clusterB({
        pools: [pool('default-ipv4', '100.127.0.0/24')],
        blocks: [block('100.127.0.0/26', 'default-ipv4', 'b-node1')],
      }),
    ],
  },
  peers: [],
  conditions: { 'b.CIDRConflict': 'True OverlappingPools' },
});

test('two remotes overlapping each other: both pools refused, the rest imported', planned, {
  input: {
    remotes: [
      clusterB({
        pools: [pool('default-ipv4', '100.65.0.0/16'), pool('extra', '100.66.0.0/24')],
        blocks: [
          block('100.65.0.0/26', 'default-ipv4', 'b-node1'),
          block('100.66.0.0/26', 'extra', 'b-node2'),
        ],
      }),
      snapshot('c', {
        nodes: [remoteNode('c-node1', 21, { endpoint: '198.18.2.11:51825' })],
        pools: [pool('p', '100.65.128.0/17')],
        blocks: [block('100.65.128.0/26', 'p', 'c-node1')],
      }),
    ],
  },
  peers: ['b/b-node2 100.66.0.0/26'],
  conditions: {
    'b.CIDRConflict': 'True OverlappingPools',
    'c.CIDRConflict': 'True OverlappingPools',
  },
});

test('importPools: only the named pools; a missing name is reported', planned, {
  input: {
    remotes: [
      clusterB({
        importPools: ['extra', 'nosuch'],
        pools: [pool('default-ipv4', '100.65.0.0/16'), pool('extra', '100.66.0.0/24')],
        blocks: [
          block('100.65.0.0/26', 'default-ipv4', 'b-node1'),
          block('100.66.0.0/26', 'extra', 'b-node2'),
        ],
      }),
    ],
  },
  peers: ['b/b-node2 100.66.0.0/26'],
  conditions: { 'b.Connected': 'True Watching', 'b.CIDRConflict': 'False NoOverlap' },
  refused: ['RemoteCluster/b UnknownPool'],
});

test('a block outside the pool it names is not routed; overlapping blocks neither', planned, {
  input: {
    remotes: [
      clusterB({
        blocks: [
          block('100.65.0.0/26', 'default-ipv4', 'b-node1'),
          block('100.70.0.0/26', 'default-ipv4', 'b-node1'),
          block('100.65.1.0/26', 'default-ipv4', 'b-node1'),
          block('100.65.1.0/25', 'default-ipv4', 'b-node2'),
        ],
      }),
    ],
  },
  peers: ['b/b-node1 100.65.0.0/26'],
  refused: [
    'b/IPAMBlock/100-70-0-0-26 BlockOutsidePool',
    'b/IPAMBlock/100.65.1.0/25 OverlappingBlock',
    'b/IPAMBlock/100.65.1.0/26 OverlappingBlock',
  ],
});

test('an unreachable remote keeps its last known peers', planned, {
  input: {
    remotes: [clusterB({ reachable: false, lastError: 'connect ECONNREFUSED 198.18.1.1:6443' })],
  },
  peers: ['b/b-node1 100.65.0.0/26,100.65.0.64/26', 'b/b-node2 100.65.0.128/26'],
  conditions: {
    'b.Connected': 'False Unreachable',
    'b.Unreachable': 'True APIUnreachable',
    'b.CIDRConflict': 'False NoOverlap',
  },
});

test('a remote never listed contributes nothing and says why', planned, {
  input: {
    remotes: [clusterB({ synced: false, lastError: 'secret wiremesh-remotes/b: 404 NotFound' })],
  },
  peers: [],
  conditions: {
    'b.Connected': 'False ConnectFailed',
    'b.Unreachable': 'True NeverConnected',
    'b.CIDRConflict': 'Unknown NotConnected',
  },
});

test('a remote node claiming a local node’s key is not programmed', planned, {
  input: { remotes: [clusterB({ nodes: [remoteNode('b-node1', 1), remoteNode('b-node2', 12)] })] },
  peers: ['b/b-node2 100.65.0.128/26'],
  refused: [
    'b/Node/b-node1 DuplicatePublicKey',
    'b/Node/b-node1 NoEndpoint',
    'b/Node/b-node2 NoEndpoint',
  ],
});

test('a Peer and a remote node with one key: neither is programmed', planned, {
  input: { remotes: [clusterB()], peers: [externalPeer('laptop', 12)] },
  peers: ['b/b-node1 100.65.0.0/26,100.65.0.64/26'],
  refused: ['Peer/laptop DuplicatePublicKey', 'b/Node/b-node2 DuplicatePublicKey'],
});

test('Peers: a good one is programmed, overlapping ones are refused whole', planned, {
  input: {
    remotes: [clusterB()],
    peers: [
      externalPeer('laptop', 31, { endpoint: '198.51.100.7:51820', persistentKeepalive: 25 }),
      externalPeer('grabber', 32, { allowedIPs: ['0.0.0.0/0'] }),
      externalPeer('podrange', 33, { allowedIPs: ['100.126.1.0/24', '100.64.5.0/24'] }),
      externalPeer('remoterange', 34, { allowedIPs: ['100.65.9.9/32'] }),
      externalPeer('tunnel', 35, { allowedIPs: ['100.127.0.9/32'] }),
      externalPeer('twin', 36, { allowedIPs: ['100.126.0.1/32'] }),
    ],
  },
  peers: ['b/b-node1 100.65.0.0/26,100.65.0.64/26', 'b/b-node2 100.65.0.128/26'],
  refused: [
    'Peer/grabber CIDRConflict',
    'Peer/laptop CIDRConflict',
    'Peer/podrange CIDRConflict',
    'Peer/remoterange CIDRConflict',
    'Peer/tunnel CIDRConflict',
    'Peer/twin CIDRConflict',
  ],
});

test('a Peer alone is programmed with its endpoint and keepalive', (t) => {
  const p = plan({
    peers: [
      externalPeer('laptop', 31, { endpoint: '198.51.100.7:51820', persistentKeepalive: 25 }),
    ],
    tunnelAddress: '100.127.3.4',
  });
  t.deepEqual(p.peers, [
    {
      node: 'peer/laptop',
      publicKey: testKey(31),
      endpoint: '198.51.100.7:51820',
      allowedIPs: ['100.126.0.1/32'],
      persistentKeepalive: 25,
      cluster: null,
    },
  ]);
  t.deepEqual(p.routes, [{ dst: '100.126.0.1/32', dev: 'wiremesh.wg', src: '100.127.3.4' }]);
  t.deepEqual(p.refused, []);
});

test('endpoints: override, then the published one, then InternalIP with the port', (t) => {
  const p = plan({
    remotes: [
      clusterB({
        nodes: [
          remoteNode('b-node1', 11, {
            endpoint: '198.18.1.11:51825',
            endpointOverride: '203.0.113.5:4500',
          }),
          remoteNode('b-node2', 12, { internalIPs: ['198.18.1.12'], persistentKeepalive: 15 }),
        ],
      }),
    ],
  });
  t.deepEqual(
    p.peers.map((x) => [x.node, x.endpoint, x.persistentKeepalive]),
    [
      ['b/b-node1', '203.0.113.5:4500', 0],
      ['b/b-node2', '198.18.1.12:51825', 15],
    ],
  );
});

test('counts and routes: what the status shows is what is programmed', (t) => {
  const p = plan({ remotes: [clusterB()], tunnelAddress: '100.127.0.7' });
  t.deepEqual(
    p.clusters.map((c) => [c.name, c.nodes, c.blocks]),
    [['b', 2, 3]],
  );
  t.deepEqual(
    p.routes.map((r) => r.dst),
    ['100.65.0.0/26', '100.65.0.64/26', '100.65.0.128/26'],
  );
  t.true(p.routes.every((r) => r.dev === 'wiremesh.wg' && r.src === '100.127.0.7'));
  t.deepEqual(plan({ remotes: [clusterB()] }).routes, []);
});

test('a conflict is refused on both sides: the mirror plan refuses it too', (t) => {
  // Cluster A (100.64.0.0/16) imports B; B (pools 100.64.128.0/17) imports A.
  const a = {
    pools: [pool('default-ipv4', '100.64.0.0/16')],
    node: remoteNode('a-node1', 1, { endpoint: '198.18.0.11:51825' }),
  };
  const b = {
    pools: [pool('default-ipv4', '100.64.128.0/17')],
    node: remoteNode('b-node1', 11, { endpoint: '198.18.1.11:51825' }),
  };
  const fromA = planRemotePeers({
    localPools: a.pools,
    tunnelCIDR: '100.127.0.0/16',
    localKeys: new Map([[a.node.publicKey!, a.node.name]]),
    remotes: [
      snapshot('b', {
        nodes: [b.node],
        pools: b.pools,
        blocks: [block('100.64.128.0/26', 'default-ipv4', 'b-node1')],
      }),
    ],
    peers: [],
    listenPort: 51825,
  });
  const fromB = planRemotePeers({
    localPools: b.pools,
    tunnelCIDR: '100.127.0.0/16',
    localKeys: new Map([[b.node.publicKey!, b.node.name]]),
    remotes: [
      snapshot('a', {
        nodes: [a.node],
        pools: a.pools,
        blocks: [block('100.64.0.0/26', 'default-ipv4', 'a-node1')],
      }),
    ],
    peers: [],
    listenPort: 51825,
  });
  t.deepEqual([fromA.peers, fromB.peers], [[], []]);
  t.is(conditionOf(fromA, 'b', 'CIDRConflict'), 'True OverlappingPools');
  t.is(conditionOf(fromB, 'a', 'CIDRConflict'), 'True OverlappingPools');
  t.regex(
    fromA.clusters[0]?.conditions.find((c) => c.type === 'CIDRConflict')?.message ?? '',
    /pool default-ipv4 100\.64\.128\.0\/17 overlaps local pool default-ipv4 100\.64\.0\.0\/16/,
  );
});

test('the plan does not depend on the order of its inputs', (t) => {
  const remotes = [
    clusterB(),
    snapshot('c', {
      nodes: [remoteNode('c-node1', 21)],
      pools: [pool('p', '100.66.0.0/16')],
      blocks: [block('100.66.0.0/26', 'p', 'c-node1')],
    }),
  ];
  const peers = [
    externalPeer('laptop', 31),
    externalPeer('vm', 32, { allowedIPs: ['100.126.0.2/32'] }),
  ];
  const one = plan({ remotes, peers });
  const two = plan({ remotes: [...remotes].reverse(), peers: [...peers].reverse() });
  t.deepEqual(one, two);
  t.is(one.peers.length, 5);
});
