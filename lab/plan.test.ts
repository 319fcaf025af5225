import test from 'ava';
import {
  chooseLabIndex,
  planLab,
  validateIpFamily,
  LAB_POOL_V6,
  validateLabName,
  validateNodeCount,
  podNetnsName,
  nodePrivateDir,
} from './plan.ts';

test('two labs get disjoint underlays, bridges and namespaces', (t) => {
  const a = planLab('lab', chooseLabIndex([]), 3);
  const b = planLab('other', chooseLabIndex([a.index]), 3);
  t.is(a.gatewayIP, '198.18.0.1');
  t.is(b.gatewayIP, '198.18.1.1');
  t.not(a.bridge, b.bridge);
  const names = (p: typeof a) =>
    p.nodes.flatMap((n) => [n.netns, n.hostVeth, n.underlayIP, n.bridgePodCIDR]);
  t.deepEqual(
    names(a).filter((x) => names(b).includes(x)),
    [],
  );
});

test('node addresses, names and link names follow the plan', (t) => {
  const p = planLab('lab', 2, 3);
  t.deepEqual(
    p.nodes.map((n) => [n.name, n.underlayIP, n.netns, n.hostVeth, n.bridgePodCIDR]),
    [
      ['lab-node1', '198.18.2.11', 'wml-lab-node1', 'wml-lab-1', '100.64.33.0/24'],
      ['lab-node2', '198.18.2.12', 'wml-lab-node2', 'wml-lab-2', '100.64.34.0/24'],
      ['lab-node3', '198.18.2.13', 'wml-lab-node3', 'wml-lab-3', '100.64.35.0/24'],
    ],
  );
  t.is(p.apiserverURL, 'https://198.18.2.1:6443');
});

test('every link name fits the kernel limit of 15 characters at the longest lab name and node count', (t) => {
  const p = planLab('abcdefgh', 15, 15);
  for (const name of [p.bridge, ...p.nodes.map((n) => n.hostVeth)]) t.true(name.length <= 15, name);
});

test('lab names, node counts and indexes are validated with clear errors', (t) => {
  t.is(validateLabName('lab2'), 'lab2');
  for (const bad of ['', 'Lab', '2lab', 'toolongname', 'a-b', 'a/b']) {
    t.throws(() => validateLabName(bad), { message: /invalid lab name/ });
  }
  t.throws(() => validateNodeCount(0), { message: /1 to 15/ });
  t.throws(() => validateNodeCount(16), { message: /1 to 15/ });
  t.throws(() => validateNodeCount(1.5), { message: /invalid node count/ });
  t.throws(() => planLab('lab', 16, 1), { message: /out of range/ });
});

test('chooseLabIndex takes the lowest free slot and fails when all are used', (t) => {
  t.is(chooseLabIndex([0, 1, 3]), 2);
  t.throws(() => chooseLabIndex(Array.from({ length: 16 }, (_, i) => i)), { message: /in use/ });
});

test('pod namespaces and node-private directories are unique per lab', (t) => {
  t.is(podNetnsName('lab', 'default', 'web'), 'wmp-lab-default-web');
  const p = planLab('lab', 0, 2);
  const [n1, n2] = p.nodes;
  if (!n1 || !n2) throw new Error('plan has two nodes');
  t.is(
    nodePrivateDir(p, n1, '/etc/cni/net.d'),
    '/var/lib/wiremesh-lab/lab/nodes/lab-node1/etc_cni_net.d',
  );
  t.not(nodePrivateDir(p, n1, '/var/lib/wiremesh'), nodePrivateDir(p, n2, '/var/lib/wiremesh'));
});

test('IPv6 underlay: 2001:db8:<lab hex>::/64, canonical, apart from the IPv6 pool', (t) => {
  const p = planLab('dual', 11, 2);
  t.is(p.gatewayIP6, '2001:db8:b::1');
  t.deepEqual(
    p.nodes.map((n) => n.underlayIP6),
    ['2001:db8:b::11', '2001:db8:b::12'],
  );
  t.is(planLab('lab', 0, 1).nodes[0]?.underlayIP6, '2001:db8::11');
  t.is(LAB_POOL_V6, '2001:db8:64::/48', 'hex 64 is beyond every lab index (0 to f)');
  t.is(validateIpFamily('dual'), 'dual');
  t.throws(() => validateIpFamily('ipv5'), { message: /ipv4, dual, ipv6/ });
});
