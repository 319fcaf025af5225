// The BGP planner as tables: who peers with whom in each topology, what a node
// announces and accepts, and that one node's routes are taken only for its own blocks.
import test from 'ava';
import type { IpPool } from '../ipam/index.ts';
import {
  ANNOTATION_BGP_AS,
  DEFAULT_BGP_SETTINGS,
  LABEL_ROUTE_REFLECTOR,
  planBgp,
  type BgpInput,
  type BgpNodeInfo,
} from './bgp.ts';

const pool = (name: string, cidr: string, over: Partial<IpPool>): IpPool => ({
  name,
  uid: name,
  createdAt: 0,
  cidr,
  family: 4,
  blockSize: 26,
  nodeSelector: { matchLabels: {}, matchExpressions: [] },
  encryption: 'None',
  encryptionMode: 'Preferred',
  encapsulation: 'None',
  natOutgoing: false,
  disabled: false,
  ...over,
});

const POOLS = [
  pool('native', '10.250.0.0/16', {}),
  pool('secret', '100.64.0.0/16', { encryption: 'WireGuard', encryptionMode: 'Required' }),
  pool('overlay', '10.251.0.0/16', { encapsulation: 'VXLAN' }),
];

const node = (
  name: string,
  address: string | null,
  labels = {},
  annotations = {},
): BgpNodeInfo => ({
  name,
  address,
  labels,
  annotations,
});

const NODES = [node('n1', '198.18.0.11'), node('n2', '198.18.0.12'), node('n3', '198.18.0.140')];

const BLOCKS = [
  { cidr: '10.250.0.0/26', node: 'n1', pool: 'native' },
  { cidr: '10.250.0.64/26', node: 'n2', pool: 'native' },
  { cidr: '10.250.0.128/26', node: 'n3', pool: 'native' },
  { cidr: '100.64.0.0/26', node: 'n1', pool: 'secret' },
  { cidr: '100.64.0.64/26', node: 'n2', pool: 'secret' },
  { cidr: '10.251.0.0/26', node: 'n1', pool: 'overlay' },
];

const input = (over: Partial<BgpInput> = {}): BgpInput => ({
  self: 'n1',
  settings: { ...DEFAULT_BGP_SETTINGS, enabled: true },
  nodes: NODES,
  pools: POOLS,
  blocks: BLOCKS,
  externalPeers: [],
  ...over,
});

test('BGP off: no plan, nothing started', (t) => {
  t.deepEqual(planBgp(input({ settings: DEFAULT_BGP_SETTINGS })), { plan: null, problems: [] });
});

test('full mesh: every other node, only the native pool announced and accepted', (t) => {
  const { plan, problems } = planBgp(input());
  t.deepEqual(problems, []);
  t.deepEqual(
    plan?.neighbors.map((n) => [n.name, n.address, n.as, n.role]),
    [
      ['node_n2', '198.18.0.12', 64512, 'mesh'],
      ['node_n3', '198.18.0.140', 64512, 'mesh'],
    ],
  );
  t.deepEqual(plan?.announce, ['10.250.0.0/26']);
  t.deepEqual(plan?.accept, ['10.250.0.0/16']);
  // The encrypted pool and the encapsulated one never take a BGP route.
  t.deepEqual(plan?.neverAccept, ['10.251.0.0/16', '100.64.0.0/16']);
  t.is(plan?.routerId, '198.18.0.11');
  t.is(plan?.localAS, 64512);
  t.is(plan?.reflectorClusterId, undefined);
});

test("a node's routes are taken only for the blocks it owns", (t) => {
  const { plan } = planBgp(input());
  t.deepEqual(plan?.nodeOrigins, {
    '198.18.0.12': ['10.250.0.64/26'],
    '198.18.0.140': ['10.250.0.128/26'],
  });
});

test('route reflectors replace the mesh: clients peer with reflectors only', (t) => {
  const nodes = [
    node('n1', '198.18.0.11', { [LABEL_ROUTE_REFLECTOR]: 'true' }),
    node('n2', '198.18.0.12'),
    node('n3', '198.18.0.140'),
    node('n4', '198.18.0.13', { [LABEL_ROUTE_REFLECTOR]: 'true' }),
  ];
  const reflector = planBgp(input({ nodes })).plan;
  t.deepEqual(
    reflector?.neighbors.map((n) => [n.name, n.role]),
    [
      ['node_n2', 'client'],
      ['node_n3', 'client'],
      ['node_n4', 'mesh'],
    ],
  );
  t.is(reflector?.reflectorClusterId, '198.18.0.11');
  const client = planBgp(input({ nodes, self: 'n2' })).plan;
  t.deepEqual(
    client?.neighbors.map((n) => [n.name, n.role]),
    [
      ['node_n1', 'reflector'],
      ['node_n4', 'reflector'],
    ],
  );
  // A label other than "true", or the plain wiremesh.io/ key a node could set on itself, is no reflector.
  const fake = planBgp(
    input({
      nodes: [
        node('n1', '198.18.0.11'),
        node('n2', '198.18.0.12', { 'wiremesh.io/route-reflector': 'true' }),
      ],
    }),
  ).plan;
  t.deepEqual(
    fake?.neighbors.map((n) => n.role),
    ['mesh'],
  );
});

test('without the mesh, only external peers whose selector matches this node', (t) => {
  const externalPeers = [
    {
      name: 'tor-a',
      address: '198.18.0.126',
      asNumber: 65000,
      nodeSelector: { matchLabels: { rack: 'a' }, matchExpressions: [] },
    },
    {
      name: 'tor-b',
      address: '198.18.0.254',
      asNumber: 65000,
      nodeSelector: { matchLabels: { rack: 'b' }, matchExpressions: [] },
    },
  ];
  const nodes = [
    node('n1', '198.18.0.11', { rack: 'a' }),
    node('n2', '198.18.0.140', { rack: 'b' }),
  ];
  const { plan } = planBgp(
    input({
      nodes,
      externalPeers,
      settings: { ...DEFAULT_BGP_SETTINGS, enabled: true, nodeToNodeMesh: false },
    }),
  );
  t.deepEqual(
    plan?.neighbors.map((n) => [n.name, n.address, n.as, n.role]),
    [['peer_tor_a', '198.18.0.126', 65000, 'external']],
  );
});

test('a BGPPeer at a node address is refused, not peered', (t) => {
  const { plan, problems } = planBgp(
    input({
      externalPeers: [
        {
          name: 'sneaky',
          address: '198.18.0.12',
          asNumber: 65000,
          nodeSelector: { matchLabels: {}, matchExpressions: [] },
        },
      ],
    }),
  );
  t.false(plan?.neighbors.some((n) => n.role === 'external'));
  t.deepEqual(problems, ["BGPPeer sneaky: 198.18.0.12 is a node's address; not peered"]);
});

test("a node's own AS from its annotation; a bad one is a problem and the cluster's AS", (t) => {
  const nodes = [
    node('n1', '198.18.0.11', {}, { [ANNOTATION_BGP_AS]: '65001' }),
    node('n2', '198.18.0.12', {}, { [ANNOTATION_BGP_AS]: 'lots' }),
  ];
  const { plan, problems } = planBgp(input({ nodes }));
  t.is(plan?.localAS, 65001);
  t.is(plan?.neighbors[0]?.as, 64512);
  t.regex(problems[0] ?? '', /node n2: annotation wiremesh.io\/bgp-as="lots" is not an AS number/);
});

test('a node without an IPv4 InternalIP gets no plan and says why', (t) => {
  const { plan, problems } = planBgp(input({ nodes: [node('n1', null), ...NODES.slice(1)] }));
  t.is(plan, null);
  t.deepEqual(problems, ['node n1 has no IPv4 InternalIP: BGP needs one']);
});

test('the plan does not depend on the order of its input', (t) => {
  const a = planBgp(input()).plan;
  const b = planBgp(
    input({
      nodes: [...NODES].reverse(),
      blocks: [...BLOCKS].reverse(),
      pools: [...POOLS].reverse(),
    }),
  ).plan;
  t.deepEqual(a, b);
});
