// The path phase's driver and the agent's pool view against fakes: a plan with a
// VXLAN pool and an encrypted pool ends as a VXLAN device with loose rp_filter,
// routes per path, the encrypt-table rules; a re-apply changes nothing; a pool
// switched to encryption moves its block's route off VXLAN. The plan's nftables
// fragment composes into the agent's table with its jumps; IPPool objects and the
// namespace annotation translate as the agent reads them.
import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import { PathDriver, pathReportChanged, type SysctlWriter } from './pathdriver.ts';
import { planPaths, type PathInput, type PathPool } from './paths.ts';
import { splitPathNft } from './pathnft.ts';
import { composeTable } from './nftable.ts';
import { poolOfNamespace, poolsFromK8s } from './pools.ts';

class FakeSysctl implements SysctlWriter {
  values = new Map<string, string>();
  async set(key: string, value: string) {
    this.values.set(key, value);
  }
}

const POOLS: PathPool[] = [
  {
    name: 'secure',
    cidr: '100.64.0.0/16',
    encryption: 'WireGuard',
    encryptionMode: 'Required',
    encapsulation: 'None',
    natOutgoing: false,
  },
  {
    name: 'plain',
    cidr: '100.65.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLAN',
    natOutgoing: true,
  },
];

function input(pools: PathPool[]): PathInput {
  return {
    self: 'a',
    selfSubnets: ['198.18.0.0/16'],
    nodes: [
      { name: 'a', underlayIPs: ['198.18.0.1'], wireguardPeer: false },
      { name: 'b', underlayIPs: ['198.18.0.2'], wireguardPeer: true },
    ],
    pools,
    blocks: [
      { cidr: '100.64.1.0/26', node: 'b', pool: 'secure' },
      { cidr: '100.65.1.0/26', node: 'b', pool: 'plain' },
      { cidr: '100.65.0.0/26', node: 'a', pool: 'plain' },
    ],
    available: {
      wireguard: { available: true, detail: 'userspace' },
      vxlan: { available: true, detail: 'kernel' },
      ipip: { available: false, detail: 'the kernel has no ipip support' },
    },
    tunnelAddresses: new Map([
      ['a', '100.127.0.1'],
      ['b', '100.127.0.2'],
    ]),
    hostMtu: 1500,
    underlayFamily: 4,
  };
}

function fakeNode(): FakeIp {
  const ip = new FakeIp();
  ip.addLink('eth0', 1500);
  ip.links.get('eth0')?.addrs.add('198.18.0.1/16');
  ip.addLink('wiremesh.wg', 1440, 'wireguard');
  return ip;
}

test('a VXLAN pool and an encrypted pool: device, routes, rules, rp_filter; re-apply is a no-op', async (t) => {
  const ip = fakeNode();
  const sysctl = new FakeSysctl();
  const driver = new PathDriver(ip, sysctl);
  const plan = planPaths(input(POOLS));
  t.deepEqual(plan.wireguardBlocks, ['100.64.1.0/26']);
  const first = await driver.apply(plan, 'eth0');
  t.true(first.vxlan.deviceCreated);
  t.truthy(ip.links.get('wiremesh.vxlan'));
  t.deepEqual(
    ip.routes.filter((r) => r.dev === 'wiremesh.vxlan').map((r) => r.dst),
    ['100.65.1.0/26'],
  );
  t.deepEqual(
    ip.sourceRules.map((r) => r.from),
    ['100.64.0.0/16'],
  );
  t.deepEqual(
    ip.routes.filter((r) => r.table === 51826).map((r) => `${r.dst} ${r.dev}`),
    ['100.64.1.0/26 wiremesh.wg', '100.65.1.0/26 wiremesh.wg', '198.18.0.2/32 wiremesh.wg'],
  );
  t.is(sysctl.values.get('net/ipv4/conf/wiremesh.vxlan/rp_filter'), '2');
  t.is(sysctl.values.get('net/ipv4/conf/wiremesh.wg/rp_filter'), '2');
  t.false(sysctl.values.has('net/ipv4/conf/wiremesh.ipip/rp_filter'));
  t.false(pathReportChanged(await driver.apply(plan, 'eth0')));
});

test('switching the plain pool to encryption takes its block off VXLAN', async (t) => {
  const ip = fakeNode();
  const driver = new PathDriver(ip, new FakeSysctl());
  await driver.apply(planPaths(input(POOLS)), 'eth0');
  const encrypted = POOLS.map((p) =>
    p.name === 'plain' ? { ...p, encryption: 'WireGuard' as const } : p,
  );
  const plan = planPaths(input(encrypted));
  t.deepEqual(plan.wireguardBlocks, ['100.64.1.0/26', '100.65.1.0/26']);
  const report = await driver.apply(plan, 'eth0');
  t.is(report.vxlan.routesRemoved, 1);
  t.deepEqual(
    ip.routes.filter((r) => r.dev === 'wiremesh.vxlan'),
    [],
  );
  // Every pool encrypted now: every block's route is WireGuard's; each pool has a rule
  // for b's node address, which the main table sends over the underlay.
  t.deepEqual(
    ip.sourceRules.map((r) => r.from),
    ['100.64.0.0/16', '100.65.0.0/16'],
  );
  t.is(report.sourceRouting.rulesAdded, 1);
});

test("the plan's nftables fragment composes into the agent's table with its jumps", (t) => {
  const plan = planPaths(input(POOLS));
  const table = composeTable({
    ...splitPathNft(plan.nft),
    policy: { sets: [], maps: [], chains: [] },
  });
  const base = (name: string) => table.chains.find((c) => c.name === name);
  t.deepEqual(base('forward')?.rules, ['jump encrypt-forward']);
  t.deepEqual(base('output')?.rules, ['jump encrypt-output']);
  t.deepEqual(base('postrouting')?.rules, ['jump nat-postrouting']);
  t.is(base('postrouting')?.base?.type, 'nat');
  t.deepEqual(table.sets.find((s) => s.name === 'encrypt-required-v4')?.elements, [
    '100.64.0.0/16',
  ]);
});

test('IPPool objects and the namespace annotation as the agent reads them', (t) => {
  const obj = (name: string, spec: object, created: string) => ({
    metadata: { name, uid: name, creationTimestamp: created },
    spec,
  });
  const r = poolsFromK8s([
    obj('secure', { cidr: '100.64.0.0/16', encryptionMode: 'Required' }, '2024-01-01T00:00:00Z'),
    obj(
      'plain',
      { cidr: '100.65.0.0/16', encryption: 'None', encapsulation: 'VXLAN' },
      '2024-01-01T00:00:01Z',
    ),
    obj('overlap', { cidr: '100.64.0.0/17' }, '2024-01-02T00:00:00Z'),
    obj('bad', { cidr: '100.66.0.0/16', encapsulation: 'GRE' }, '2024-01-02T00:00:00Z'),
  ]);
  t.deepEqual(
    r.pools.map((p) => `${p.name} ${p.encryption} ${p.encryptionMode} ${p.encapsulation}`),
    ['plain None Preferred VXLAN', 'secure WireGuard Required None'],
  );
  t.deepEqual(r.problems.map((p) => `${p.object} ${p.reason}`).sort(), [
    'IPPool/bad InvalidSetting',
    'IPPool/overlap OverlappingPool',
  ]);
  t.is(
    poolOfNamespace({ metadata: { annotations: { 'wiremesh.io/ippool': ' plain ' } } }),
    'plain',
  );
  t.is(poolOfNamespace({ metadata: { annotations: { 'wiremesh.io/ippool': '' } } }), undefined);
  t.is(poolOfNamespace(undefined), undefined);
});

test('policy rules come before a plaintext route and go after it', async (t) => {
  // All pools encrypted, and b's node address routed to no peer (c reports it too): no
  // rule. A plain pool's block then needs one for the encrypted pools' traffic to it,
  // in place before its VXLAN route exists; and back.
  const ip = fakeNode();
  const driver = new PathDriver(ip, new FakeSysctl());
  const input2 = (pools: PathPool[]): PathInput => ({
    ...input(pools),
    nodes: [
      ...input(pools).nodes,
      { name: 'c', underlayIPs: ['198.18.0.2'], wireguardPeer: false },
    ],
  });
  const encrypted = POOLS.map((p) => ({ ...p, encryption: 'WireGuard' as const }));
  await driver.apply(planPaths(input2(encrypted)), 'eth0');
  t.deepEqual(ip.sourceRules, []);
  const seen: string[] = [];
  const routeReplace = ip.routeReplace.bind(ip);
  ip.routeReplace = async (route) => {
    if (route.dev === 'wiremesh.vxlan') seen.push(`route with ${ip.sourceRules.length} rules`);
    await routeReplace(route);
  };
  const routeDel = ip.routeDel.bind(ip);
  ip.routeDel = async (route) => {
    if (route.dev === 'wiremesh.vxlan') seen.push(`del with ${ip.sourceRules.length} rules`);
    await routeDel(route);
  };
  await driver.apply(planPaths(input2(POOLS)), 'eth0');
  t.is(ip.sourceRules.length, 1);
  await driver.apply(planPaths(input2(encrypted)), 'eth0');
  t.deepEqual(ip.sourceRules, []);
  t.deepEqual(seen, ['route with 1 rules', 'del with 1 rules']);
});
