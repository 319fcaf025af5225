import test from 'ava';
import type { V1Node } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import {
  clusterStatus,
  formatAge,
  formatBytes,
  formatOutput,
  parseOutputFormat,
  peerRows,
  poolEncryptionState,
  renderClusterStatus,
  renderNodeStatus,
  type NodeStatus,
} from './status.ts';
import { ipamBlockToK8s, type Allocation } from '../ipam/index.ts';
import { fakeAgentStatus, fakeIpamUsage, FIXTURE_NOW_MS } from '../agent/status-fixture.ts';

function nodeStatus(): NodeStatus {
  return { ...fakeAgentStatus(), ipam: [fakeIpamUsage()] };
}

test('node status table (golden)', (t) => {
  t.snapshot(renderNodeStatus(nodeStatus(), { now: FIXTURE_NOW_MS }));
});

test('node status -o wide (golden)', (t) => {
  t.snapshot(renderNodeStatus(nodeStatus(), { now: FIXTURE_NOW_MS, wide: true }));
});

test('node status before the first passes: no peers, no policy, no IPAM', (t) => {
  const s: NodeStatus = {
    ...fakeAgentStatus(),
    peers: [],
    refused: [],
    policy: { stats: null, problems: 0, lastApply: null },
    paths: { available: null, pools: [], blocks: [], mtu: null, events: [] },
    synced: false,
  };
  t.snapshot(renderNodeStatus(s, { now: FIXTURE_NOW_MS }));
});

test('every peer is a row with its path; a node reached only over VXLAN too', (t) => {
  const s = nodeStatus();
  s.paths.blocks.push({
    cidr: '100.80.3.0/26',
    node: 'node-d',
    pool: 'plain',
    path: 'vxlan',
    reason: 'no WireGuard key',
  });
  t.deepEqual(
    peerRows(s).map((r) => [r.node, r.paths.join(','), r.latestHandshake === null]),
    [
      ['node-b', 'wireguard', false],
      ['node-c', 'vxlan,wireguard', false],
      ['node-d', 'vxlan', true],
    ],
  );
});

test("a peer with no path in the status is shown as 'wireguard'", (t) => {
  const s = nodeStatus();
  s.paths.blocks = [];
  t.deepEqual(
    peerRows(s).map((r) => r.paths),
    [['wireguard'], ['wireguard']],
  );
});

test('pool encryption state follows the remote blocks’ paths', (t) => {
  const s = nodeStatus();
  t.is(poolEncryptionState(s, 'default', 'WireGuard'), 'encrypted');
  t.is(poolEncryptionState(s, 'plain', 'None'), 'plaintext');
  t.is(poolEncryptionState(s, 'empty', 'WireGuard'), '-');
  s.paths.blocks[1]!.path = 'vxlan';
  t.is(poolEncryptionState(s, 'default', 'WireGuard'), 'plaintext (fallback)');
  s.paths.blocks[2]!.path = 'blocked';
  t.is(poolEncryptionState(s, 'default', 'WireGuard'), 'blocked');
});

test('bytes and ages read as an operator expects', (t) => {
  t.is(formatBytes(0), '0B');
  t.is(formatBytes(1023), '1023B');
  t.is(formatBytes(1536), '1.5KiB');
  t.is(formatBytes(5 * 1024 ** 3), '5.0GiB');
  const now = FIXTURE_NOW_MS;
  t.is(formatAge(0, now), 'never');
  t.is(formatAge(now / 1000 - 5, now), '5s');
  t.is(formatAge(now / 1000 - 125, now), '2m5s');
  t.is(formatAge(now / 1000 - 7260, now), '2h1m');
  t.is(formatAge(now / 1000 - 3 * 86400, now), '3d');
});

test('output formats: json, yaml, wide, table; anything else is refused', (t) => {
  t.is(parseOutputFormat(undefined), 'table');
  t.is(parseOutputFormat('yaml'), 'yaml');
  t.throws(() => parseOutputFormat('xml'), { message: /use -o json, -o yaml or -o wide/ });
});

function node(name: string, ip: string, annotations: Record<string, string>): V1Node {
  return {
    metadata: { name, uid: `uid-${name}`, annotations },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  };
}

function allocations(n: number, base: string, first: number): Map<string, Allocation> {
  const m = new Map<string, Allocation>();
  for (let i = 0; i < n; i++)
    m.set(`wiremesh.c${i}.eth0`, {
      handle: `wiremesh.c${i}.eth0`,
      address: `${base}${first + i}`,
      namespace: 'default',
      pod: `p${i}`,
      containerID: `c${i}`,
      ifName: 'eth0',
      allocatedAt: 0,
    });
  return m;
}

function clusterFixture() {
  const key = (c: string) => `${c.repeat(42)}A=`;
  const nodes = [
    node('node-b', '198.18.0.3', {
      'wiremesh.io/wireguard-public-key': key('B'),
      'wiremesh.io/endpoint': '198.18.0.3:51825',
    }),
    node('node-a', '198.18.0.2', {
      'wiremesh.io/wireguard-public-key': key('Q'),
      'wiremesh.io/endpoint': '198.18.0.2:51825',
      'wiremesh.io/host-encryption': 'true',
    }),
    node('node-c', '198.18.0.4', { 'wiremesh.io/wireguard-public-key': 'not-a-key' }),
  ];
  const pools = [
    {
      metadata: { name: 'default', uid: 'p1' },
      spec: { cidr: '100.64.0.0/16', encryption: 'WireGuard', encryptionMode: 'Required' },
    },
    {
      metadata: { name: 'plain', uid: 'p2' },
      spec: {
        cidr: '100.80.0.0/16',
        encryption: 'None',
        encapsulation: 'VXLAN',
        natOutgoing: true,
      },
    },
    { metadata: { name: 'broken', uid: 'p3' }, spec: { cidr: '100.90.0.1/16' } },
  ];
  const blocks = [
    ipamBlockToK8s({
      cidr: '100.64.0.0/26',
      pool: 'default',
      node: 'node-a',
      allocations: allocations(2, '100.64.0.', 1),
    }),
    ipamBlockToK8s({
      cidr: '100.64.0.64/26',
      pool: 'default',
      node: 'node-b',
      allocations: allocations(3, '100.64.0.', 65),
    }),
    ipamBlockToK8s({
      cidr: '100.80.0.0/26',
      pool: 'plain',
      node: 'node-b',
      allocations: new Map(),
    }),
  ];
  return { nodes, pools, blocks };
}

test('cluster status: every node with its usage; pools with theirs; refused objects named', (t) => {
  const { nodes, pools, blocks } = clusterFixture();
  const c = clusterStatus(nodes, pools, blocks);
  t.deepEqual(
    c.nodes.map((n) => [n.name, n.blocks, n.allocated, n.capacity, n.publicKey !== null]),
    [
      ['node-a', 1, 2, 64, true],
      ['node-b', 2, 3, 128, true],
      ['node-c', 0, 0, 0, false],
    ],
  );
  t.deepEqual(
    c.pools.map((p) => [p.name, p.blocks, p.allocated, p.capacity]),
    [
      ['default', 2, 5, 128],
      ['plain', 1, 0, 64],
    ],
  );
  t.deepEqual(
    c.problems.map((p) => [p.object, p.reason]),
    [['IPPool/broken', 'InvalidCIDR']],
  );
  t.true(c.nodes[0]!.hostEncryption);
  t.regex(c.nodes[2]!.problems.join(), /InvalidPublicKey/);
});

test('cluster status table (golden)', (t) => {
  const { nodes, pools, blocks } = clusterFixture();
  t.snapshot(renderClusterStatus(clusterStatus(nodes, pools, blocks)));
});

test('cluster status -o wide (golden)', (t) => {
  const { nodes, pools, blocks } = clusterFixture();
  t.snapshot(renderClusterStatus(clusterStatus(nodes, pools, blocks), { wide: true }));
});

test('cluster status as YAML reads back as the same data', (t) => {
  const { nodes, pools, blocks } = clusterFixture();
  const c = clusterStatus(nodes, pools, blocks);
  const render = () => 'table';
  t.deepEqual(parseYaml(formatOutput(c, 'yaml', render)), JSON.parse(JSON.stringify(c)));
  t.deepEqual(JSON.parse(formatOutput(c, 'json', render)), JSON.parse(JSON.stringify(c)));
  t.is(
    formatOutput(c, 'wide', (wide) => String(wide)),
    'true',
  );
});
