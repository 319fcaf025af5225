import test from 'ava';
import { planMesh, assignTunnelAddresses, tunnelAddress6, type MeshInput } from './plan.ts';
import type { MeshNode } from './meshnode.ts';
import { generateKeyPair } from '../crypto/index.ts';

const keys = Array.from({ length: 6 }, () => generateKeyPair());
const key = (i: number) => keys[i]?.publicKey ?? '';

function node(name: string, i: number, extra: Partial<MeshNode> = {}): MeshNode {
  return {
    name,
    uid: `uid-${name}`,
    createdAt: 1000 + i,
    internalIPs: [`198.18.0.${10 + i}`],
    publicKey: key(i),
    endpoint: `198.18.0.${10 + i}:51825`,
    endpointOverride: null,
    persistentKeepalive: 0,
    hostEncryption: false,
    problems: [],
    ...extra,
  };
}

const settings = {
  listenPort: 51825,
  tunnelCIDR: '100.127.0.0/16',
  hostMtu: 1500,
  underlayFamily: 4 as const,
};
const input = (nodes: MeshNode[], self = 'n1'): MeshInput => ({
  self,
  selfPublicKey: key(1),
  nodes,
  settings,
});

test('every other node with a valid key becomes a peer routed to its tunnel address; its node address is allowed, not routed', (t) => {
  const plan = planMesh(input([node('n1', 1), node('n2', 2), node('n3', 3)]));
  t.deepEqual(
    plan.peers.map((p) => [p.node, p.publicKey, p.endpoint]),
    [
      ['n2', key(2), '198.18.0.12:51825'],
      ['n3', key(3), '198.18.0.13:51825'],
    ],
  );
  const addrs = assignTunnelAddresses(
    [node('n1', 1), node('n2', 2), node('n3', 3)],
    settings.tunnelCIDR,
  );
  t.deepEqual(
    plan.peers.map((p) => p.allowedIPs),
    [
      [`${addrs.get('n2')}/32`, '198.18.0.12/32'],
      [`${addrs.get('n3')}/32`, '198.18.0.13/32'],
    ],
  );
  t.is(plan.device.address, `${addrs.get('n1')}/32`);
  // A main-table route to a node address would carry WireGuard's own packets into the tunnel.
  t.deepEqual(
    plan.routes.map((r) => [r.dst, r.dev, r.src]),
    plan.peers.map((p) => [p.allowedIPs[0], 'wiremesh.wg', addrs.get('n1')]),
  );
  t.deepEqual(plan.refused, []);
});

test('the MTU is the host MTU minus 60, rounded down to a multiple of 16', (t) => {
  t.is(planMesh(input([node('n1', 1)])).device.mtu, 1440);
  t.is(
    planMesh({ ...input([node('n1', 1)]), settings: { ...settings, hostMtu: 9001 } }).device.mtu,
    8928,
  );
  t.is(
    planMesh({ ...input([node('n1', 1)]), settings: { ...settings, underlayFamily: 6 } }).device
      .mtu,
    1408,
  );
});

test('a node without a key is not a peer; a node with a refused key is reported', (t) => {
  const bad = node('n3', 3, {
    publicKey: null,
    problems: [{ reason: 'InvalidPublicKey', message: 'annotation x is not valid base64' }],
  });
  const plan = planMesh(input([node('n1', 1), node('n2', 2, { publicKey: null }), bad]));
  t.deepEqual(plan.peers, []);
  t.deepEqual(
    plan.refused.map((r) => [r.node, r.reason]),
    [['n3', 'InvalidPublicKey']],
  );
});

test('two nodes claiming one key: the first this agent saw publish it keeps it', (t) => {
  // forged (older Node, i=0) copies n2's key after n2 published it.
  const nodes = [
    node('n1', 1),
    node('n2', 2),
    node('n3', 3),
    node('forged', 0, { publicKey: key(2) }),
  ];
  const plan = planMesh({
    ...input(nodes),
    keySeen: new Map([
      ['n2', 5000],
      ['n3', 5000],
      ['forged', 9000],
    ]),
  });
  t.deepEqual(
    plan.peers.map((p) => [p.node, p.publicKey]),
    [
      ['n2', key(2)],
      ['n3', key(3)],
    ],
  );
  t.deepEqual(
    plan.refused.map((r) => [r.node, r.reason, r.message]),
    [
      [
        'forged',
        'DuplicatePublicKey',
        'its WireGuard public key was published first by n2, which keeps it; forged is not programmed',
      ],
    ],
  );
});

test('a key seen on two nodes at once goes to the older Node, then the name', (t) => {
  const at = (ms: number) =>
    new Map([
      ['n2', ms],
      ['late', ms],
      ['early', ms],
    ]);
  const late = node('late', 9, { publicKey: key(2) });
  const plan = planMesh({ ...input([node('n1', 1), node('n2', 2), late]), keySeen: at(7000) });
  t.deepEqual(
    plan.peers.map((p) => p.node),
    ['n2'],
  );
  // The same age: the name decides. No sighting recorded counts as seen at once.
  const twin = node('a-twin', 2, { publicKey: key(2), internalIPs: ['198.18.0.99'] });
  const tie = planMesh(input([node('n1', 1), node('n2', 2), twin]));
  t.deepEqual(
    tie.peers.map((p) => p.node),
    ['a-twin'],
  );
  t.deepEqual(
    tie.refused.map((r) => [r.node, r.reason]),
    [['n2', 'DuplicatePublicKey']],
  );
});

test("a node claiming this node's own key is refused; this node keeps its identity", (t) => {
  const plan = planMesh(
    input([node('n1', 1), node('n2', 2), node('thief', 3, { publicKey: key(1) })]),
  );
  t.deepEqual(
    plan.peers.map((p) => p.node),
    ['n2'],
  );
  t.deepEqual(
    plan.refused.map((r) => [r.node, r.reason]),
    [['thief', 'DuplicatePublicKey']],
  );
});

test('the endpoint override wins, then the published endpoint, then the InternalIP', (t) => {
  const plan = planMesh(
    input([
      node('n1', 1),
      node('n2', 2, { endpointOverride: 'gw.example.org:4000' }),
      node('n3', 3, { endpoint: null }),
      node('n4', 4, { endpoint: null, internalIPs: [], persistentKeepalive: 25 }),
    ]),
  );
  t.deepEqual(
    plan.peers.map((p) => [p.node, p.endpoint, p.persistentKeepalive]),
    [
      ['n2', 'gw.example.org:4000', 0],
      ['n3', '198.18.0.13:51825', 0],
      ['n4', null, 25],
    ],
  );
});

test('annotations never add routes: AllowedIPs are the planner’s addresses and the Node status’s', (t) => {
  const plan = planMesh(
    input([node('n1', 1), node('n2', 2, { endpoint: '100.127.0.1:51825', internalIPs: [] })]),
  );
  t.is(plan.peers[0]?.allowedIPs.length, 1);
  t.regex(plan.peers[0]?.allowedIPs[0] ?? '', /^100\.127\.\d+\.\d+\/32$/);
});

test('a node address reported twice, or inside a pod or tunnel range, is given to no peer and reported', (t) => {
  const blocks = new Map([['n2', ['100.64.0.64/26']]]);
  const plan = planMesh({
    ...input([
      node('n1', 1),
      node('n2', 2, { internalIPs: ['198.18.0.12', '198.18.0.11'] }), // also n1's own
      node('n3', 3, { internalIPs: ['198.18.0.13', '198.18.0.99'] }),
      node('n4', 4, { internalIPs: ['198.18.0.99'] }), // also n3's
      node('n5', 5, { internalIPs: ['100.64.0.70', '100.127.3.3', '100.65.0.1'] }),
    ]),
    blocks,
    podRanges: ['100.65.0.0/16'],
  });
  const allowed = (n: string) => plan.peers.find((p) => p.node === n)?.allowedIPs ?? [];
  t.true(allowed('n2').includes('198.18.0.12/32'));
  t.false(allowed('n2').includes('198.18.0.11/32'), "n1's own address");
  t.deepEqual(
    allowed('n3').filter((a) => a.startsWith('198.18.')),
    ['198.18.0.13/32'],
  );
  t.false(allowed('n4').some((a) => a.startsWith('198.18.')));
  t.deepEqual(allowed('n5').length, 1, 'a pod in a block, a tunnel address, a pod range: none');
  t.true(allowed('n2').includes('100.64.0.64/26'), "the block stays its holder's");
  t.deepEqual(
    plan.refused.map((r) => `${r.node} ${r.reason} ${r.message}`),
    [
      'n2 DuplicateNodeAddress its InternalIP 198.18.0.11 is also reported by n1: the address is routed to neither',
      'n3 DuplicateNodeAddress its InternalIP 198.18.0.99 is also reported by n4: the address is routed to neither',
      'n4 DuplicateNodeAddress its InternalIP 198.18.0.99 is also reported by n3: the address is routed to neither',
      'n5 ReservedNodeAddress its InternalIP 100.64.0.70 lies in the pod or tunnel range 100.64.0.64/26: the address is not routed to it',
      'n5 ReservedNodeAddress its InternalIP 100.127.3.3 lies in the pod or tunnel range 100.127.0.0/16: the address is not routed to it',
      'n5 ReservedNodeAddress its InternalIP 100.65.0.1 lies in the pod or tunnel range 100.65.0.0/16: the address is not routed to it',
    ],
  );
  t.deepEqual(
    plan.routes.filter((r) => !r.dst.startsWith('100.')),
    [],
    'node addresses are never routed by the main table',
  );
});

test('tunnel addresses are unique, stable when a node joins, and the same whatever the input order', (t) => {
  const nodes = Array.from({ length: 300 }, (_, i) => node(`node-${i}`, i));
  const a = assignTunnelAddresses(nodes, '100.127.0.0/16');
  t.is(new Set(a.values()).size, 300);
  const b = assignTunnelAddresses([...nodes].reverse(), '100.127.0.0/16');
  t.deepEqual([...a.entries()].sort(), [...b.entries()].sort());
  const c = assignTunnelAddresses([...nodes, node('late', 999)], '100.127.0.0/16');
  for (const [name, addr] of a) t.is(c.get(name), addr);
});

test('collisions in a tiny tunnel CIDR are resolved in creation order; a full CIDR is an error', (t) => {
  const nodes = [node('a', 1), node('b', 2)];
  const m = assignTunnelAddresses(nodes, '100.127.0.0/30');
  t.deepEqual([...m.values()].sort(), ['100.127.0.1', '100.127.0.2']);
  t.throws(() => assignTunnelAddresses([...nodes, node('c', 3)], '100.127.0.0/30'), {
    message: /room for 2 nodes/,
  });
});

test('the plan is the same however the nodes are ordered (replay)', (t) => {
  const nodes = [
    node('n1', 1),
    node('n2', 2),
    node('n3', 3),
    node('dup', 4, { publicKey: key(3) }),
    node('n5', 5),
    node('addr', 6, { publicKey: null, internalIPs: ['198.18.0.12', '198.18.0.15'] }),
  ];
  const forward = planMesh(input(nodes));
  t.deepEqual(planMesh(input([...nodes].reverse())), forward);
  t.deepEqual(planMesh(input([...nodes, ...nodes.slice(0, 0)])), forward);
});

test('host encryption covers a pair only when both nodes ask for it; addresses come from InternalIPs', (t) => {
  const nodes = [
    node('n1', 1, { hostEncryption: true }),
    node('n2', 2, { hostEncryption: true }),
    node('n3', 3),
  ];
  const plan = planMesh({ ...input(nodes), settings: { ...settings, hostEncryption: true } });
  const n2 = plan.peers.find((p) => p.node === 'n2');
  const n3 = plan.peers.find((p) => p.node === 'n3');
  t.true(n2?.allowedIPs.includes('198.18.0.12/32'));
  t.true(n3?.allowedIPs.includes('198.18.0.13/32'), 'accepted from n3 (replies to pods)');
  t.deepEqual(plan.hostRoutes, [
    { dst: '198.18.0.12/32', dev: 'wiremesh.wg', src: '198.18.0.11', table: 51825 },
  ]);
  t.deepEqual(plan.hostRules, [{ family: 4, priority: 5182, notFwmark: 0x51825, table: 51825 }]);
  const off = planMesh(input(nodes));
  t.deepEqual([off.hostRoutes, off.hostRules], [[], []]);
  t.deepEqual(
    off.peers.map((p) => p.allowedIPs),
    plan.peers.map((p) => p.allowedIPs),
    'the same AllowedIPs with or without host encryption: only the routing differs',
  );
  // A host-encryption peer's address that another node also reports is not routed either.
  const dup = planMesh({
    ...input([...nodes, node('n4', 4, { internalIPs: ['198.18.0.12'] })]),
    settings: { ...settings, hostEncryption: true },
  });
  t.deepEqual(dup.hostRoutes, []);
});

test('a peer is routed its IPAM blocks from the API, and only its own', (t) => {
  const blocks = new Map([
    ['n2', ['100.64.0.64/26', '100.64.1.0/26']],
    ['n3', ['100.64.0.128/26']],
  ]);
  const plan = planMesh({ ...input([node('n1', 1), node('n2', 2), node('n3', 3)]), blocks });
  const n2 = plan.peers.find((p) => p.node === 'n2');
  t.deepEqual(n2?.allowedIPs.slice(1), ['100.64.0.64/26', '100.64.1.0/26', '198.18.0.12/32']);
  t.deepEqual(
    plan.routes
      .map((r) => r.dst)
      .filter((d) => d.startsWith('100.64.'))
      .sort(),
    ['100.64.0.128/26', '100.64.0.64/26', '100.64.1.0/26'],
  );
});

test('IPv6 blocks: peers are routed their IPv6 blocks and IPv6 tunnel address, from ours', (t) => {
  const nodes = [node('n1', 1), node('n2', 2)];
  const blocks = new Map([
    ['n1', ['100.64.0.0/26', 'fd00:64::/122']],
    ['n2', ['100.64.0.64/26', 'fd00:64::40/122']],
  ]);
  const plan = planMesh({ ...input(nodes), blocks });
  const addrs = assignTunnelAddresses(nodes, settings.tunnelCIDR);
  const [own, peer] = [addrs.get('n1') ?? '', addrs.get('n2') ?? ''];
  t.is(tunnelAddress6('100.127.1.2'), 'fd5e:7a11:3c8b:ffff::647f:102');
  t.is(plan.tunnelAddress6, tunnelAddress6(own));
  t.is(plan.device.address6, `${tunnelAddress6(own)}/128`);
  t.deepEqual(plan.peers[0]?.allowedIPs, [
    `${peer}/32`,
    `${tunnelAddress6(peer)}/128`,
    '100.64.0.64/26',
    'fd00:64::40/122',
    '198.18.0.12/32',
  ]);
  t.deepEqual(
    plan.routes.map((r) => [r.dst, r.src]),
    [
      [`${peer}/32`, own],
      [`${tunnelAddress6(peer)}/128`, tunnelAddress6(own)],
      ['100.64.0.64/26', own],
      ['fd00:64::40/122', tunnelAddress6(own)],
    ],
  );
  // Without IPv6 blocks nothing IPv6 is planned (an IPv4 cluster is unchanged).
  const v4 = planMesh({ ...input(nodes), blocks: new Map([['n2', ['100.64.0.64/26']]]) });
  t.is(v4.device.address6, undefined);
  t.is(v4.tunnelAddress6, undefined);
  t.deepEqual(v4.peers[0]?.allowedIPs, [`${peer}/32`, '100.64.0.64/26', '198.18.0.12/32']);
});
