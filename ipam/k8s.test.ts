import test from 'ava';
import { randomBytes } from 'node:crypto';
import { ipPoolFromK8s, ipamBlockFromK8s, ipamBlockToK8s } from './k8s.ts';
import { blockName, parseCanonicalAddress, parseCanonicalCidr } from './cidr.ts';
import type { Allocation, IpamProblemReason } from './types.ts';

const poolObj = (spec: unknown, name = 'p') => ({
  apiVersion: 'wiremesh.io/v1alpha1',
  kind: 'IPPool',
  metadata: { name, uid: 'u1', resourceVersion: '7', creationTimestamp: '2026-01-02T03:04:05Z' },
  spec,
});

test('a well-formed IPPool translates, with defaults applied', (t) => {
  const { pool, problems } = ipPoolFromK8s(poolObj({ cidr: '100.64.0.0/16' }));
  t.deepEqual(problems, []);
  t.deepEqual(pool, {
    name: 'p',
    uid: 'u1',
    createdAt: Date.parse('2026-01-02T03:04:05Z'),
    cidr: '100.64.0.0/16',
    family: 4,
    blockSize: 26,
    nodeSelector: { matchLabels: {}, matchExpressions: [] },
    encryption: 'WireGuard',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
    natOutgoing: false,
    disabled: false,
  });
});

test('an IPv6 pool defaults to /122 blocks; every field is read', (t) => {
  const { pool } = ipPoolFromK8s(
    poolObj({
      cidr: 'fd00:64::/48',
      nodeSelector: {
        matchLabels: { 'kubernetes.io/os': 'linux' },
        matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }],
      },
      encryption: 'None',
      encryptionMode: 'Preferred',
      encapsulation: 'VXLANCrossSubnet',
      natOutgoing: true,
      disabled: true,
    }),
  );
  t.like(pool, {
    family: 6,
    blockSize: 122,
    encryption: 'None',
    encapsulation: 'VXLANCrossSubnet',
    natOutgoing: true,
    disabled: true,
    nodeSelector: {
      matchLabels: { 'kubernetes.io/os': 'linux' },
      matchExpressions: [{ key: 'zone', operator: 'In', values: ['a'] }],
    },
  });
  t.is(ipPoolFromK8s(poolObj({ cidr: 'fd00:64::/120', blockSize: 128 })).pool?.blockSize, 128);
});

const refusedPool = test.macro((t, spec: unknown, reason: IpamProblemReason, pattern: RegExp) => {
  const { pool, problems } = ipPoolFromK8s(poolObj(spec));
  t.is(pool, null);
  t.true(
    problems.some((p) => p.reason === reason && pattern.test(p.message) && p.object === 'IPPool/p'),
    JSON.stringify(problems),
  );
});

test('no spec', refusedPool, undefined, 'InvalidCIDR', /is not a CIDR/);
test('not a CIDR', refusedPool, { cidr: 'nope' }, 'InvalidCIDR', /'nope' is not a CIDR/);
test(
  'host bits set',
  refusedPool,
  { cidr: '100.64.0.1/16' },
  'InvalidCIDR',
  /host bits set; the network is 100\.64\.0\.0\/16/,
);
test(
  'not canonical (v6)',
  refusedPool,
  { cidr: 'fd00:64:0::/48' },
  'InvalidCIDR',
  /write fd00:64::\/48/,
);
test(
  'octal-looking v4',
  refusedPool,
  { cidr: '100.064.0.0/16' },
  'InvalidCIDR',
  /not a CIDR in dotted-decimal form/,
);
test(
  'blockSize 40 for IPv4',
  refusedPool,
  { cidr: '100.64.0.0/16', blockSize: 40 },
  'InvalidBlockSize',
  /out of range for IPv4 \(20 to 32\)/,
);
test(
  'blockSize 19 for IPv4',
  refusedPool,
  { cidr: '100.64.0.0/16', blockSize: 19 },
  'InvalidBlockSize',
  /out of range/,
);
test(
  'blockSize 100 for IPv6',
  refusedPool,
  { cidr: 'fd00::/48', blockSize: 100 },
  'InvalidBlockSize',
  /IPv6 \(116 to 128\)/,
);
test(
  'blockSize not an integer',
  refusedPool,
  { cidr: '100.64.0.0/16', blockSize: 26.5 },
  'InvalidBlockSize',
  /out of range/,
);
test(
  'blockSize a string',
  refusedPool,
  { cidr: '100.64.0.0/16', blockSize: '26' },
  'InvalidBlockSize',
  /out of range/,
);
test(
  'block larger than the pool',
  refusedPool,
  { cidr: '100.64.0.0/28', blockSize: 26 },
  'InvalidBlockSize',
  /larger than the pool/,
);
test(
  'pool smaller than the default block',
  refusedPool,
  { cidr: '100.64.0.0/28' },
  'InvalidBlockSize',
  /set spec\.blockSize/,
);
test(
  'unknown encryption',
  refusedPool,
  { cidr: '100.64.0.0/16', encryption: 'IPsec' },
  'InvalidSetting',
  /encryption must be one of WireGuard, None/,
);
test(
  'unknown encryptionMode',
  refusedPool,
  { cidr: '100.64.0.0/16', encryptionMode: 'Maybe' },
  'InvalidSetting',
  /encryptionMode/,
);
test(
  'unknown encapsulation',
  refusedPool,
  { cidr: '100.64.0.0/16', encapsulation: 'GRE' },
  'InvalidSetting',
  /encapsulation/,
);
test(
  'Required without encryption',
  refusedPool,
  { cidr: '100.64.0.0/16', encryption: 'None', encryptionMode: 'Required' },
  'InvalidSetting',
  /Required needs/,
);
test(
  'natOutgoing not a boolean',
  refusedPool,
  { cidr: '100.64.0.0/16', natOutgoing: 'yes' },
  'InvalidSetting',
  /natOutgoing must be true or false/,
);
test(
  'selector: In without values',
  refusedPool,
  { cidr: '100.64.0.0/16', nodeSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } },
  'InvalidNodeSelector',
  /need values/,
);
test(
  'selector: Exists with values',
  refusedPool,
  {
    cidr: '100.64.0.0/16',
    nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] },
  },
  'InvalidNodeSelector',
  /take none/,
);
test(
  'selector: unknown operator',
  refusedPool,
  {
    cidr: '100.64.0.0/16',
    nodeSelector: { matchExpressions: [{ key: 'a', operator: 'Gt', values: ['1'] }] },
  },
  'InvalidNodeSelector',
  /operator must be one of/,
);
test(
  'selector: matchLabels not strings',
  refusedPool,
  { cidr: '100.64.0.0/16', nodeSelector: { matchLabels: { a: 1 } } },
  'InvalidNodeSelector',
  /must be a string/,
);

const blockObj = (name: string, spec: unknown) => ({
  apiVersion: 'wiremesh.io/v1alpha1',
  kind: 'IPAMBlock',
  metadata: { name, uid: 'ub', resourceVersion: '42' },
  spec,
});

test('block names are derived from the CIDR, one-to-one, and valid object names', (t) => {
  t.is(blockName('100.64.0.0/26'), '100-64-0-0-26');
  t.is(blockName('fd00:64::/122'), 'fd00-64---122');
  t.is(blockName('fd00:64::40/122'), 'fd00-64--40-122');
  t.is(blockName('::100/122'), '0--100-122');
  t.is(blockName('2001:db8:0:1::/122'), '2001-db8-0-1---122');
  for (const c of ['100.64.0.0/26', 'fd00:64::/122', '::100/122', 'ff::/128']) {
    t.regex(blockName(c), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  }
});

test('a well-formed IPAMBlock translates and round-trips', (t) => {
  const a: Allocation = {
    handle: 'wiremesh.c1.eth0',
    address: '100.64.0.5',
    namespace: 'default',
    pod: 'p1',
    containerID: 'c1',
    ifName: 'eth0',
    podUID: '0b9e7e2c-2f5c-4d0a-9a0b-6f1f8c1d2e3f',
    allocatedAt: 0,
  };
  const written = ipamBlockToK8s({
    cidr: '100.64.0.0/26',
    pool: 'default',
    node: 'n1',
    allocations: new Map([[a.handle, a]]),
  });
  t.deepEqual(written, {
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'IPAMBlock',
    metadata: { name: '100-64-0-0-26' },
    spec: {
      cidr: '100.64.0.0/26',
      pool: 'default',
      node: 'n1',
      allocations: {
        'wiremesh.c1.eth0': {
          address: '100.64.0.5',
          namespace: 'default',
          pod: 'p1',
          containerID: 'c1',
          ifName: 'eth0',
          podUID: '0b9e7e2c-2f5c-4d0a-9a0b-6f1f8c1d2e3f',
        },
      },
    },
  });
  // With the node's uid, the Node owns the object (Kubernetes' garbage collector deletes it with the Node).
  t.deepEqual(
    (
      ipamBlockToK8s(
        { cidr: '100.64.0.0/26', pool: 'default', node: 'n1', allocations: new Map() },
        'u1',
      ).metadata as Record<string, unknown>
    ).ownerReferences,
    [{ apiVersion: 'v1', kind: 'Node', name: 'n1', uid: 'u1' }],
  );
  const { block, problems } = ipamBlockFromK8s({
    ...written,
    metadata: { name: '100-64-0-0-26', uid: 'ub', resourceVersion: '42' },
  });
  t.deepEqual(problems, []);
  t.deepEqual(block, {
    name: '100-64-0-0-26',
    cidr: '100.64.0.0/26',
    family: 4,
    pool: 'default',
    node: 'n1',
    allocations: new Map([[a.handle, a]]),
    resourceVersion: '42',
    uid: 'ub',
    problems: [],
  });
});

test('a block keeps its range despite faults, and every address in it that anyone may use', (t) => {
  const { block, problems } = ipamBlockFromK8s(
    blockObj('wrong-name', {
      cidr: 'fd00:64::/122',
      pool: 'p',
      node: 'n1',
      allocations: {
        a: { address: 'fd00:64::1', pod: 7 },
        b: { address: 'fd00:64::1' },
        outside: { address: 'fd00:65::1' },
        v4: { address: '100.64.0.1' },
        junk: 'x',
        noncanon: { address: 'fd00:64:0::2' },
      },
    }),
  );
  t.truthy(block);
  t.deepEqual([...(block?.allocations.keys() ?? [])], ['a', 'b']);
  t.is(block?.allocations.get('a')?.pod, '');
  t.deepEqual(
    problems.map((p) => p.reason),
    [
      'InvalidName',
      'InvalidAllocation', // a.pod
      'DuplicateAddress',
      'InvalidAllocation', // junk
      'InvalidAllocation', // noncanon
      'InvalidAllocation', // outside
      'InvalidAllocation', // v4
    ],
  );
  t.regex(problems[0]?.message ?? '', /must be fd00-64---122/);
});

test('a block without a usable CIDR, pool or node is refused', (t) => {
  for (const spec of [
    { cidr: 'x', pool: 'p', node: 'n' },
    { cidr: '100.64.0.1/26', pool: 'p', node: 'n' },
    { cidr: '100.64.0.0/26', pool: 'p' },
    { cidr: '100.64.0.0/26', node: 'n', pool: 5 },
    undefined,
  ]) {
    const r = ipamBlockFromK8s(blockObj('b', spec));
    t.is(r.block, null, JSON.stringify(spec));
    t.true(r.problems.length > 0);
  }
});

test('strict parsing: one spelling per address', (t) => {
  t.true(parseCanonicalAddress('100.64.0.1').ok);
  t.true(parseCanonicalAddress('fd00::1').ok);
  for (const bad of ['100.064.0.1', '0x64.1', '100.64.1', 'FD00::1', 'fd00:0::1', '', ' 1.2.3.4']) {
    t.false(parseCanonicalAddress(bad).ok, bad);
  }
  t.false(parseCanonicalCidr('100.64.0.0').ok);
  t.false(parseCanonicalCidr('100.64.0.0/33').ok);
});

test('fuzz: random objects never throw, and refused pools always say why', (t) => {
  const pick = <T>(xs: T[]): T => xs[randomBytes(1)[0]! % xs.length]!;
  const junk = (): unknown =>
    pick([
      undefined,
      null,
      0,
      -1,
      26.5,
      '',
      'x',
      '100.64.0.0/16',
      'fd00::/48',
      '100.64.0.1/33',
      true,
      [],
      {},
      [1, 'a'],
      { matchLabels: { a: pick([1, 'b', null]) } },
      {
        matchExpressions: [
          {
            key: pick(['', 'k', 1]),
            operator: pick(['In', 'Exists', 'x']),
            values: pick([[], ['a'], 'a']),
          },
        ],
      },
      randomBytes(4).toString('hex'),
    ]);
  for (let i = 0; i < 2000; i++) {
    const spec = Object.fromEntries(
      [
        'cidr',
        'blockSize',
        'nodeSelector',
        'encryption',
        'encryptionMode',
        'encapsulation',
        'natOutgoing',
        'disabled',
        'pool',
        'node',
        'allocations',
      ].map((k) => [k, junk()]),
    );
    const r = ipPoolFromK8s(pick([poolObj(spec), junk(), { metadata: junk(), spec: junk() }]));
    t.true(r.pool !== null || r.problems.length > 0);
    const b = ipamBlockFromK8s(pick([blockObj('b', spec), junk(), { metadata: junk(), spec }]));
    t.true(b.block !== null || b.problems.length > 0);
  }
});
