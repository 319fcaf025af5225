// The path planner as tables: for each source pool and each remote block, which path
// the traffic takes and why; the driver states, policy routing, nftables fragment and
// MTU that follow; the events an operator hears; and that the plan does not depend on
// the order of its input.
import test from 'ava';
import { composeTable } from './nftable.ts';
import {
  effectivePath,
  planMtu,
  planPaths,
  type Path,
  type PathInput,
  type PathPool,
} from './paths.ts';

type PoolSpec = Omit<PathPool, 'natOutgoing'> & { natOutgoing?: boolean };
const pool = (p: PoolSpec): PathPool => ({ natOutgoing: false, ...p });

// a: this node. b: a WireGuard peer on a's subnet. c: no usable key, another subnet.
const POOLS: PathPool[] = [
  pool({
    name: 'enc',
    cidr: '100.64.0.0/16',
    encryption: 'WireGuard',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLAN',
  }),
  pool({
    name: 'req',
    cidr: '100.65.0.0/16',
    encryption: 'WireGuard',
    encryptionMode: 'Required',
    encapsulation: 'None',
  }),
  pool({
    name: 'plain',
    cidr: '100.66.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLAN',
    natOutgoing: true,
  }),
  pool({
    name: 'ipip',
    cidr: '100.67.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'IPIP',
  }),
  pool({
    name: 'cross',
    cidr: '100.68.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLANCrossSubnet',
  }),
  pool({
    name: 'native',
    cidr: '100.69.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
  }),
];
const NODE_INDEX = { a: 1, b: 2, c: 3 } as const;
const blockOf = (p: string, node: keyof typeof NODE_INDEX) => {
  const third = POOLS.findIndex((x) => x.name === p) + 64;
  return `100.${third}.${NODE_INDEX[node]}.0/26`;
};

function input(overrides: Partial<PathInput> = {}): PathInput {
  return {
    self: 'a',
    selfSubnets: ['198.18.0.0/24'],
    nodes: [
      { name: 'a', underlayIPs: ['198.18.0.1'], wireguardPeer: false },
      { name: 'b', underlayIPs: ['198.18.0.2'], wireguardPeer: true },
      { name: 'c', underlayIPs: ['198.18.1.3'], wireguardPeer: false },
    ],
    pools: POOLS,
    blocks: POOLS.flatMap((p) =>
      (['a', 'b', 'c'] as const).map((node) => ({
        cidr: blockOf(p.name, node),
        node,
        pool: p.name,
      })),
    ),
    available: {
      wireguard: { available: true, detail: 'kernel' },
      vxlan: { available: true, detail: 'kernel' },
      ipip: { available: false, detail: 'the kernel has no ipip support (module missing)' },
    },
    tunnelAddresses: new Map([
      ['a', '100.127.0.1'],
      ['b', '100.127.0.2'],
      ['c', '100.127.0.3'],
    ]),
    hostMtu: 1500,
    underlayFamily: 4,
    ...overrides,
  };
}

// Rows: destination pool; columns: the path from a pod of each source pool (on a).
// '.' = the same as the destination's own path (the main-table route).
const MATRIX: Record<'b' | 'c', Record<string, [Path, Record<string, Path | '.'>]>> = {
  b: {
    enc: ['wireguard', { enc: '.', req: '.', plain: '.', native: '.' }],
    req: ['wireguard', { enc: '.', req: '.', plain: '.', native: '.' }],
    plain: ['vxlan', { enc: 'wireguard', req: 'wireguard', plain: '.', native: '.' }],
    ipip: ['wireguard', { enc: '.', req: '.', plain: '.', native: '.' }],
    cross: ['native', { enc: 'wireguard', req: 'wireguard', plain: '.', native: '.' }],
    native: ['native', { enc: 'wireguard', req: 'wireguard', plain: '.', native: '.' }],
  },
  c: {
    enc: ['vxlan', { enc: '.', req: 'blocked', plain: '.', native: '.' }],
    req: ['blocked', { enc: '.', req: '.', plain: '.', native: '.' }],
    plain: ['vxlan', { enc: '.', req: 'blocked', plain: '.', native: '.' }],
    ipip: ['native', { enc: '.', req: 'blocked', plain: '.', native: '.' }],
    cross: ['vxlan', { enc: '.', req: 'blocked', plain: '.', native: '.' }],
    native: ['native', { enc: '.', req: 'blocked', plain: '.', native: '.' }],
  },
};

const matrix = test.macro({
  exec(t, node: 'b' | 'c', dest: string) {
    const plan = planPaths(input());
    const cidr = blockOf(dest, node);
    const [own, fromPools] = MATRIX[node][dest]!;
    const block = plan.blocks.find((b) => b.cidr === cidr);
    t.is(block?.path, own, block?.reason);
    for (const [source, expected] of Object.entries(fromPools)) {
      const got = effectivePath(plan, source, cidr);
      t.is(got?.path, expected === '.' ? own : expected, `from ${source}: ${got?.reason}`);
    }
  },
  title: (_, node: 'b' | 'c', dest: string) => `pool ${dest} on ${node}: ${MATRIX[node][dest]![0]}`,
});

for (const node of ['b', 'c'] as const)
  for (const dest of Object.keys(MATRIX[node])) test(matrix, node, dest);

test('reasons say why, in words an operator can act on', (t) => {
  const plan = planPaths(input());
  const reason = (p: string, n: 'b' | 'c') =>
    plan.blocks.find((b) => b.cidr === blockOf(p, n))?.reason;
  t.is(reason('enc', 'b'), 'pool enc asks for encryption');
  t.regex(
    reason('enc', 'c') ?? '',
    /^pool enc prefers encryption but c has no usable WireGuard key: falls back to vxlan/,
  );
  t.regex(
    reason('req', 'c') ?? '',
    /pool req requires encryption and c has no usable WireGuard key/,
  );
  t.regex(reason('ipip', 'b') ?? '', /IP-in-IP, unavailable \(the kernel has no ipip support/);
  t.regex(
    reason('native', 'c') ?? '',
    /c is not on this node's subnet, so the underlay must route it/,
  );
  t.is(plan.blocks.find((b) => b.cidr === blockOf('cross', 'b'))?.gateway, '198.18.0.2');
  t.is(plan.blocks.find((b) => b.cidr === blockOf('native', 'c'))?.gateway, null);
});

test('events: one per pool, node and reason, for a log line and an Event', (t) => {
  const plan = planPaths(input());
  t.deepEqual(
    plan.events.map((e) => `${e.node} ${e.pool} ${e.reason}`),
    [
      'b ipip EncapsulationUnavailable',
      'c enc EncryptionFallback',
      'c ipip EncapsulationUnavailable',
      'c req EncryptionRequiredBlocked',
    ],
  );
  t.regex(plan.events[2]!.message, /using native routing$/);
});

test("this node's own blocks are not planned; the WireGuard blocks are listed for the mesh", (t) => {
  const plan = planPaths(input());
  t.false(plan.blocks.some((b) => b.node === 'a'));
  t.deepEqual(plan.wireguardBlocks, [
    blockOf('enc', 'b'),
    blockOf('req', 'b'),
    blockOf('ipip', 'b'),
  ]);
});

test('driver states: VXLAN knows every node, routes only its blocks; native only on the subnet', (t) => {
  const plan = planPaths(input());
  t.deepEqual(plan.vxlan, {
    localUnderlayIP: '198.18.0.1',
    vtepIP: '100.127.0.1',
    mtu: 1450,
    peers: [
      {
        node: 'b',
        underlayIP: '198.18.0.2',
        vtepIP: '100.127.0.2',
        blocks: [blockOf('plain', 'b')],
      },
      {
        node: 'c',
        underlayIP: '198.18.1.3',
        vtepIP: '100.127.0.3',
        blocks: [blockOf('enc', 'c'), blockOf('plain', 'c'), blockOf('cross', 'c')],
      },
    ],
  });
  t.is(plan.ipip, null, 'no IP-in-IP device on a kernel without the module');
  t.deepEqual(plan.native.peers, [
    {
      node: 'b',
      underlayIP: '198.18.0.2',
      vtepIP: '100.127.0.2',
      blocks: [blockOf('cross', 'b'), blockOf('native', 'b')],
    },
  ]);
});

test('IP-in-IP on a kernel that has it: its device and routes', (t) => {
  const plan = planPaths(
    input({
      available: {
        wireguard: { available: true, detail: 'kernel' },
        vxlan: { available: true, detail: 'kernel' },
        ipip: { available: true, detail: 'kernel' },
      },
    }),
  );
  t.deepEqual(
    plan.ipip?.peers.map((p) => `${p.node} ${p.blocks.join(',')}`),
    [`b ${blockOf('ipip', 'b')}`, `c ${blockOf('ipip', 'c')}`],
  );
  t.is(plan.ipip?.mtu, 1480);
  t.deepEqual(
    plan.events.map((e) => e.reason).filter((r) => r === 'EncapsulationUnavailable'),
    [],
  );
});

test('no pool asks for VXLAN or IP-in-IP: no devices', (t) => {
  const pools = POOLS.filter((p) => ['req', 'native'].includes(p.name));
  const plan = planPaths(
    input({ pools, blocks: input().blocks.filter((b) => ['req', 'native'].includes(b.pool)) }),
  );
  t.is(plan.vxlan, null);
  t.is(plan.ipip, null);
});

test("policy routing: encrypted pools look up the encrypt table; it holds the WireGuard peers' blocks and node addresses", (t) => {
  const plan = planPaths(input());
  t.deepEqual(plan.encryptRules, [
    { family: 4, priority: 5183, from: '100.64.0.0/16', table: 51826 },
    { family: 4, priority: 5183, from: '100.65.0.0/16', table: 51826 },
  ]);
  t.deepEqual(
    plan.encryptRoutes.map((r) => `${r.dst} ${r.dev} ${r.src} ${r.table}`),
    [
      ...POOLS.map((p) => `${blockOf(p.name, 'b')} wiremesh.wg 100.127.0.1 51826`),
      '198.18.0.2/32 wiremesh.wg 100.127.0.1 51826',
    ],
  );
  const none = planPaths(input({ pools: POOLS.filter((p) => p.encryption === 'None') }));
  t.deepEqual([none.encryptRules, none.encryptRoutes], [[], []]);
});

test("other nodes' own addresses: an encrypted pool reaches them through WireGuard, or not at all if Required", (t) => {
  const plan = planPaths(input());
  const of = (node: string) => plan.nodeAddresses.find((a) => a.node === node);
  // b is a WireGuard peer: every encrypted pool's traffic to its address is encrypted.
  t.is(of('b')?.address, '198.18.0.2');
  t.deepEqual(
    Object.entries(of('b')?.fromPools ?? {}).map(([pool, d]) => `${pool} ${d.path}`),
    ['enc wireguard', 'req wireguard'],
  );
  // c has no usable key: Required drops (the nftables guard), Preferred goes plain, both said.
  const c = of('c')?.fromPools ?? {};
  t.is(c.req?.path, 'blocked');
  t.regex(c.req?.reason ?? '', /pool req requires encryption and c has no usable WireGuard key/);
  t.is(c.enc?.path, 'native');
  t.regex(c.enc?.reason ?? '', /crosses the underlay in plaintext$/);
  t.false(plan.encryptRoutes.some((r) => r.dst === '198.18.1.3/32'));
  t.true(plan.events.some((e) => e.node === 'c' && e.reason === 'EncryptionRequiredBlocked'));
  // Pools without encryption take the underlay as before: nothing planned for them.
  t.is(c.plain, undefined);
  t.false(
    plan.nodeAddresses.some((a) => a.node === 'a'),
    'not this node',
  );
});

test('all pools encrypted: the rule is still there for the node addresses; no encrypted pool, no rule', (t) => {
  const encrypted = POOLS.filter((p) => p.encryption === 'WireGuard');
  const blocks = input().blocks.filter((b) => encrypted.some((p) => p.name === b.pool));
  const plan = planPaths(input({ pools: encrypted, blocks }));
  t.deepEqual(
    plan.blocks.filter((b) => Object.keys(b.fromPools).length).map((b) => b.cidr),
    [blockOf('enc', 'c')],
    'only the Required pool towards c diverges among the blocks',
  );
  t.deepEqual(
    plan.encryptRules.map((r) => r.from),
    ['100.64.0.0/16', '100.65.0.0/16'],
  );
  t.true(plan.encryptRoutes.some((r) => r.dst === '198.18.0.2/32'));
  // A WireGuard peer without an address of the pools' family: nothing to route, no rule.
  const v6only = planPaths(
    input({
      pools: encrypted,
      blocks: blocks.filter((b) => b.node !== 'c'),
      nodes: [
        { name: 'a', underlayIPs: ['198.18.0.1'], wireguardPeer: false },
        { name: 'b', underlayIPs: ['fd00:18::2'], wireguardPeer: true },
      ],
      available: { wireguard: { available: true, detail: 'kernel' } },
    }),
  );
  t.deepEqual([v6only.encryptRules, v6only.nodeAddresses], [[], []]);
});

test('node addresses reported twice or inside a pod range are not routed, but stay in the fail-closed set', (t) => {
  const plan = planPaths(
    input({
      nodes: [
        { name: 'a', underlayIPs: ['198.18.0.1'], wireguardPeer: false },
        { name: 'b', underlayIPs: ['198.18.0.2', '198.18.0.9'], wireguardPeer: true },
        { name: 'c', underlayIPs: ['198.18.1.3', '198.18.0.9'], wireguardPeer: false },
        { name: 'd', underlayIPs: ['198.18.0.4', '100.65.3.3', '198.18.0.1'], wireguardPeer: true },
      ],
    }),
  );
  t.deepEqual(
    plan.nodeAddresses.map((a) => `${a.node} ${a.address}`),
    ['b 198.18.0.2', 'c 198.18.1.3', 'd 198.18.0.4'],
  );
  t.deepEqual(
    plan.encryptRoutes.filter((r) => r.dst.startsWith('198.')).map((r) => r.dst),
    ['198.18.0.2/32', '198.18.0.4/32'],
  );
  const remote = plan.nft.sets.find((s) => s.name === 'encrypt-remote-v4')?.elements ?? [];
  t.true(remote.includes('198.18.0.9/32'), 'a Required pod never reaches it in plaintext');
  t.false(remote.includes('198.18.0.1/32'), "this node's own address is not remote");
});

test('dual-stack nodes: IPv6 node addresses are routed for IPv6 encrypted pools, from the IPv6 tunnel address', (t) => {
  const pools = [
    ...POOLS.filter((p) => p.name === 'enc'),
    pool({
      name: 'enc6',
      cidr: 'fd00:64::/48',
      encryption: 'WireGuard',
      encryptionMode: 'Required',
      encapsulation: 'None',
    }),
  ];
  const plan = planPaths(
    input({
      pools,
      blocks: [
        { cidr: blockOf('enc', 'b'), node: 'b', pool: 'enc' },
        { cidr: 'fd00:64::40/122', node: 'b', pool: 'enc6' },
      ],
      nodes: [
        { name: 'a', underlayIPs: ['198.18.0.1', 'fd00:18::1'], wireguardPeer: false },
        { name: 'b', underlayIPs: ['198.18.0.2', 'fd00:18::2'], wireguardPeer: true },
      ],
    }),
  );
  t.deepEqual(
    plan.nodeAddresses.map((a) => `${a.address} ${Object.keys(a.fromPools).join(',')}`),
    ['198.18.0.2 enc', 'fd00:18::2 enc6'],
  );
  t.deepEqual(
    plan.encryptRoutes.filter((r) => r.dst.startsWith('198.') || r.dst.startsWith('fd00:18')),
    [
      { dst: '198.18.0.2/32', dev: 'wiremesh.wg', src: '100.127.0.1', table: 51826 },
      {
        dst: 'fd00:18::2/128',
        dev: 'wiremesh.wg',
        src: 'fd5e:7a11:3c8b:ffff::647f:1',
        table: 51826,
      },
    ],
  );
  t.deepEqual(
    plan.encryptRules.map((r) => `${r.family} ${r.from}`),
    ['4 100.64.0.0/16', '6 fd00:64::/48'],
  );
  t.true(
    plan.nft.sets.find((s) => s.name === 'encrypt-remote-v6')?.elements.includes('fd00:18::2/128'),
  );
});

test('other clusters and Peers (meshRanges) are never masqueraded and stay in the fail-closed set', (t) => {
  const { nft } = planPaths(input({ meshRanges: ['100.80.0.0/26', '10.9.0.0/24'] }));
  const set = (name: string) => nft.sets.find((s) => s.name === name)?.elements ?? [];
  t.deepEqual(
    set('nat-pools-v4').filter((c) => !POOLS.some((p) => p.cidr === c)),
    ['10.9.0.0/24', '100.80.0.0/26'],
  );
  t.true(set('encrypt-remote-v4').includes('100.80.0.0/26'));
  t.true(set('encrypt-remote-v4').includes('10.9.0.0/24'));
});

test('nftables: Required pools never leave but through WireGuard; natOutgoing masquerades', (t) => {
  const { nft } = planPaths(input());
  const set = (name: string) => nft.sets.find((s) => s.name === name)?.elements;
  t.deepEqual(set('encrypt-required-v4'), ['100.65.0.0/16']);
  t.deepEqual(set('encrypt-required-v6'), []);
  t.is(set('encrypt-remote-v4')?.length, 14, "the remote blocks and the other nodes' addresses");
  t.true(set('encrypt-remote-v4')?.includes('198.18.1.3/32'), 'a node without a usable key too');
  t.false(set('encrypt-remote-v4')?.includes('198.18.0.1/32'), "this node's own address");
  t.false(set('encrypt-remote-v4')?.includes(blockOf('req', 'a')), 'local blocks are not remote');
  t.deepEqual(set('nat-outgoing-v4'), ['100.66.0.0/16']);
  t.deepEqual(
    set('nat-pools-v4'),
    POOLS.map((p) => p.cidr),
  );
  t.true(nft.sets.every((s) => s.flags?.includes('interval') && s.name.match(/^(encrypt|nat)-/)));
  t.deepEqual(
    nft.chains.map((c) => c.name),
    ['encrypt-forward', 'encrypt-output', 'nat-postrouting'],
  );
  // Rules only for the families that have a Required pool / a natOutgoing pool.
  // A few Required ranges are compared inline (cheaper than a set lookup per packet).
  t.deepEqual(nft.chains[0]!.rules, [
    'ip saddr 100.65.0.0/16 oifname != "wiremesh.wg" ip daddr @encrypt-remote-v4 counter drop comment "wm-encrypt 100.65.0.0/16"',
    'ip daddr 100.65.0.0/16 oifname != "wiremesh.wg" ip daddr @encrypt-remote-v4 counter drop comment "wm-encrypt 100.65.0.0/16"',
  ]);
  t.deepEqual(nft.chains[1]!.rules, nft.chains[0]!.rules);
  t.deepEqual(nft.chains[2]!.rules, [
    'ip saddr @nat-outgoing-v4 ip daddr != @nat-pools-v4 masquerade',
  ]);
  t.true(
    nft.chains.every((c) => c.base === undefined),
    "base chains are the agent's",
  );
});

test('nftables: no NAT chain without a natOutgoing pool, no encryption rules without a Required one', (t) => {
  // A NAT hook (and with it conntrack) costs every packet of the node: none unless asked.
  const pools = POOLS.map((p) => ({
    ...p,
    natOutgoing: false,
    encryptionMode: 'Preferred' as const,
  }));
  const { nft } = planPaths(input({ pools }));
  t.deepEqual(
    nft.chains.map((c) => c.name),
    ['encrypt-forward', 'encrypt-output'],
  );
  t.deepEqual(nft.chains[0]!.rules, []);
  t.deepEqual(nft.chains[1]!.rules, []);
  // No base chain jumps to an empty chain (nor exists only for that).
  t.deepEqual(
    composeTable({ encrypt: nft }).chains.map((c) => c.name),
    ['encrypt-forward', 'encrypt-output'],
  );
});

test('nftables sets hold no overlapping elements (an interval set refuses them)', (t) => {
  const pools = [
    pool({
      name: 'wide',
      cidr: '100.64.0.0/10',
      encryption: 'WireGuard',
      encryptionMode: 'Required',
      encapsulation: 'None',
      natOutgoing: true,
    }),
    pool({
      name: 'inner',
      cidr: '100.66.0.0/16',
      encryption: 'WireGuard',
      encryptionMode: 'Required',
      encapsulation: 'None',
      natOutgoing: true,
    }),
    pool({
      name: 'v6',
      cidr: 'fd00:64::/48',
      encryption: 'WireGuard',
      encryptionMode: 'Required',
      encapsulation: 'None',
    }),
  ];
  const { nft } = planPaths(input({ pools, blocks: [] }));
  t.deepEqual(nft.sets.find((s) => s.name === 'encrypt-required-v4')?.elements, ['100.64.0.0/10']);
  t.deepEqual(nft.sets.find((s) => s.name === 'nat-outgoing-v4')?.elements, ['100.64.0.0/10']);
  t.deepEqual(nft.sets.find((s) => s.name === 'encrypt-required-v6')?.elements, ['fd00:64::/48']);
  t.deepEqual(
    nft.chains[0]?.rules.filter((r) => r.startsWith('ip saddr')),
    [
      'ip saddr 100.64.0.0/10 oifname != "wiremesh.wg" ip daddr @encrypt-remote-v4 counter drop comment "wm-encrypt 100.64.0.0/10"',
    ],
    'merged ranges, inline',
  );
});

test('many Required ranges are matched through their set', (t) => {
  const pools = Array.from({ length: 6 }, (_, i) =>
    pool({
      name: `r${i}`,
      cidr: `100.${70 + 2 * i}.0.0/16`,
      encryption: 'WireGuard',
      encryptionMode: 'Required',
      encapsulation: 'None',
    }),
  );
  const { nft } = planPaths(input({ pools, blocks: [] }));
  t.deepEqual(nft.chains[0]?.rules, [
    'ip saddr @encrypt-required-v4 oifname != "wiremesh.wg" ip daddr @encrypt-remote-v4 counter drop comment "wm-encrypt *"',
    'ip daddr @encrypt-required-v4 oifname != "wiremesh.wg" ip daddr @encrypt-remote-v4 counter drop comment "wm-encrypt *"',
  ]);
  t.is(nft.sets.find((s) => s.name === 'encrypt-required-v4')?.elements.length, 6);
});

test('WireGuard unavailable on this node: Required pools blocked everywhere, Preferred fall back', (t) => {
  const plan = planPaths(
    input({
      available: {
        wireguard: {
          available: false,
          detail: 'the kernel has no wireguard support (module missing)',
        },
        vxlan: { available: true, detail: 'kernel' },
      },
    }),
  );
  const path = (p: string, n: 'b' | 'c') => plan.blocks.find((b) => b.cidr === blockOf(p, n));
  t.is(path('req', 'b')?.path, 'blocked');
  t.regex(
    path('req', 'b')?.reason ?? '',
    /WireGuard is unavailable on this node \(the kernel has no wireguard/,
  );
  t.is(path('enc', 'b')?.path, 'vxlan');
  t.deepEqual(plan.encryptRoutes, [], 'no route into a device that cannot exist');
  t.deepEqual(plan.wireguardBlocks, []);
  t.deepEqual(
    plan.nodeAddresses.map((a) => `${a.node} ${a.fromPools.req?.path} ${a.fromPools.enc?.path}`),
    ['b blocked native', 'c blocked native'],
  );
});

test('a pool that asks for an encapsulation nobody has: WireGuard if the peer has it, else native', (t) => {
  const plan = planPaths(
    input({ available: { wireguard: { available: true, detail: 'kernel' } } }),
  );
  const path = (p: string, n: 'b' | 'c') => plan.blocks.find((b) => b.cidr === blockOf(p, n))?.path;
  t.is(path('plain', 'b'), 'wireguard');
  t.is(path('plain', 'c'), 'native');
  t.is(plan.vxlan, null);
});

const V6_POOLS = [
  pool({
    name: 'vx6',
    cidr: 'fd00:64::/48',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLAN',
  }),
  pool({
    name: 'ip6',
    cidr: 'fd00:65::/48',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'IPIP',
  }),
];
const ALL_KERNEL: PathInput['available'] = {
  wireguard: { available: true, detail: 'kernel' },
  vxlan: { available: true, detail: 'kernel' },
  ipip: { available: true, detail: 'kernel' },
};
const v6input = (overrides: Partial<PathInput> = {}) =>
  input({
    pools: V6_POOLS,
    blocks: [
      { cidr: 'fd00:64:0:2::/122', node: 'b', pool: 'vx6' },
      { cidr: 'fd00:65:0:2::/122', node: 'b', pool: 'ip6' },
    ],
    available: ALL_KERNEL,
    ...overrides,
  });

test('IPv6 blocks take VXLAN via the IPv6 VTEPs; IP-in-IP never carries them', (t) => {
  const plan = planPaths(v6input());
  t.deepEqual(
    plan.blocks.map((b) => `${b.cidr} ${b.path}`),
    ['fd00:64:0:2::/122 vxlan', 'fd00:65:0:2::/122 wireguard'],
  );
  t.regex(plan.blocks[0]!.reason, /pool vx6 asks for VXLAN/);
  t.regex(plan.blocks[1]!.reason, /ipip cannot carry IPv6 over an IPv4 underlay/);
  // The IPv6 VTEP is the IPv6 tunnel address (the IPv4 one inside fd5e:7a11:3c8b:ffff::/96);
  // the FDB still points at the IPv4 underlay.
  t.like(plan.vxlan, {
    localUnderlayIP: '198.18.0.1',
    vtepIP: '100.127.0.1',
    vtepIP6: 'fd5e:7a11:3c8b:ffff::647f:1',
    mtu: 1450,
  });
  t.deepEqual(plan.vxlan?.peers[0], {
    node: 'b',
    underlayIP: '198.18.0.2',
    vtepIP: '100.127.0.2',
    vtepIP6: 'fd5e:7a11:3c8b:ffff::647f:2',
    blocks: ['fd00:64:0:2::/122'],
  });
  t.false(
    plan.events.some((e) => e.pool === 'vx6'),
    'no EncapsulationUnavailable event for the VXLAN pool',
  );
});

test('IPv6 blocks over an IPv6 underlay: VXLAN bound to it, FDB to IPv6, overhead 70', (t) => {
  const plan = planPaths(
    v6input({
      selfSubnets: ['2001:db8:1::/64'],
      nodes: [
        { name: 'a', underlayIPs: ['2001:db8:1::1'], wireguardPeer: false },
        { name: 'b', underlayIPs: ['2001:db8:1::2'], wireguardPeer: true },
      ],
      underlayFamily: 6,
      pools: V6_POOLS.slice(0, 1),
      blocks: [{ cidr: 'fd00:64:0:2::/122', node: 'b', pool: 'vx6' }],
    }),
  );
  t.is(plan.blocks[0]?.path, 'vxlan', plan.blocks[0]?.reason);
  t.like(plan.vxlan, { localUnderlayIP: '2001:db8:1::1', mtu: 1430 });
  t.like(plan.vxlan?.peers[0], {
    underlayIP: '2001:db8:1::2',
    vtepIP6: 'fd5e:7a11:3c8b:ffff::647f:2',
  });
  t.is(plan.mtu.devices.vxlan, 1430);
  t.is(plan.mtu.byPool['vx6'], 1430);
});

test('without an IPv6 VTEP at both ends an IPv6 block falls back, saying why', (t) => {
  // IPv4 blocks with IPv6 tunnel addresses: no IPv4 VTEP, the fallback and its reason.
  const plan = planPaths(
    input({
      tunnelAddresses: new Map([
        ['a', 'fd00:7f::1'],
        ['b', 'fd00:7f::2'],
        ['c', 'fd00:7f::3'],
      ]),
    }),
  );
  const b = plan.blocks.find((x) => x.cidr === blockOf('plain', 'b'));
  t.is(b?.path, 'wireguard');
  t.regex(b?.reason ?? '', /no IPv4 VTEP address \(the tunnel addresses are IPv6\)/);
  t.true(plan.events.some((e) => e.reason === 'EncapsulationUnavailable' && e.pool === 'plain'));
  // A remote node without a tunnel address: no VTEP at its end.
  const noVtep = planPaths(
    v6input({
      tunnelAddresses: new Map([['a', '100.127.0.1']]),
    }),
  );
  t.is(noVtep.blocks[0]?.path, 'wireguard');
  t.regex(noVtep.blocks[0]!.reason, /b has no VTEP \(tunnel\) address/);
});

test('a block of a deleted pool gets the CRD defaults; a block of an unknown node is not routed', (t) => {
  const plan = planPaths(
    input({
      blocks: [
        { cidr: '100.70.2.0/26', node: 'b', pool: 'gone' },
        { cidr: '100.70.9.0/26', node: 'z', pool: 'gone' },
      ],
    }),
  );
  t.is(plan.blocks[0]!.path, 'wireguard');
  t.regex(plan.blocks[0]!.reason, /pool gone not found: the CRD defaults/);
  t.is(plan.blocks[1]!.path, 'blocked');
  t.true(plan.events.some((e) => e.reason === 'UnknownNode' && e.node === 'z'));
  t.false(plan.native.peers.some((p) => p.blocks.includes('100.70.9.0/26')));
});

test("switching a pool's encryption at runtime is a re-plan: its blocks move to WireGuard and back", (t) => {
  const flipped = POOLS.map((p) =>
    p.name === 'plain' ? { ...p, encryption: 'WireGuard' as const } : p,
  );
  const before = planPaths(input());
  const after = planPaths(input({ pools: flipped }));
  const cidr = blockOf('plain', 'b');
  t.is(before.blocks.find((b) => b.cidr === cidr)?.path, 'vxlan');
  t.is(after.blocks.find((b) => b.cidr === cidr)?.path, 'wireguard');
  t.true(after.wireguardBlocks.includes(cidr));
  t.false(after.vxlan?.peers.some((p) => p.blocks.includes(cidr)));
  t.true(after.encryptRules.some((r) => r.from === '100.66.0.0/16'));
  t.deepEqual(planPaths(input({ pools: POOLS })), before);
});

test('the plan does not depend on the order of its input', (t) => {
  const base = input();
  const reversed = input({
    nodes: [...base.nodes].reverse(),
    pools: [...base.pools].reverse(),
    blocks: [...base.blocks].reverse(),
  });
  t.deepEqual(planPaths(reversed), planPaths(base));
});

test('input this node cannot plan from fails with what is wrong', (t) => {
  t.throws(() => planPaths(input({ self: 'x' })), { message: /node x is not among the nodes/ });
  t.throws(() => planPaths(input({ tunnelAddresses: new Map() })), {
    message: /no tunnel address for a/,
  });
  t.throws(() => planPaths(input({ underlayFamily: 6 })), {
    message: /node a has no IPv6 address/,
  });
});

const mtuCase = test.macro({
  exec(t, pools: PathPool[], available: PathInput['available'], expected: Record<string, number>) {
    const mtu = planMtu({ pools, available, hostMtu: 1500, underlayFamily: 4 });
    t.deepEqual(mtu.byPool, expected);
    t.is(mtu.pod, Math.min(1500, ...Object.values(expected)));
  },
  title: (title = '') => `pod MTU: ${title}`,
});
const ALL = {
  wireguard: { available: true, detail: 'kernel' },
  vxlan: { available: true, detail: 'kernel' },
  ipip: { available: true, detail: 'kernel' },
};
const byName = (...names: string[]) => POOLS.filter((p) => names.includes(p.name));
test('native only', mtuCase, byName('native'), ALL, { native: 1500 });
test('VXLAN only', mtuCase, byName('plain'), ALL, { plain: 1450 });
test('IP-in-IP only', mtuCase, byName('ipip'), ALL, { ipip: 1480 });
test('CrossSubnet: the encapsulated half counts', mtuCase, byName('cross'), ALL, { cross: 1450 });
test(
  'an encrypted pool in the cluster: every pool can reach it through WireGuard',
  mtuCase,
  byName('req', 'native'),
  ALL,
  { req: 1440, native: 1440 },
);
test('Preferred with a VXLAN fallback: the smaller of the two', mtuCase, byName('enc'), ALL, {
  enc: 1440,
});
test(
  'no WireGuard on this node: a Required pool reaches no remote pod, so its pods keep the host MTU',
  mtuCase,
  byName('req', 'plain'),
  { vxlan: ALL.vxlan },
  { req: 1500, plain: 1450 },
);
test('devices', (t) => {
  t.deepEqual(planPaths(input()).mtu.devices, { wireguard: 1440, vxlan: 1450, ipip: 1480 });
});
