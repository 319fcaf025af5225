import test from 'ava';
import {
  admitBlocks,
  blockClaimFromK8s,
  sameBlockClaim,
  trimBlockClaim,
  type BlockAdmissionInput,
  type BlockClaim,
  type BlockRefusalReason,
} from './blocks.ts';
import { blockName } from '../ipam/index.ts';

const pools = [
  { name: 'default-ipv4', cidr: '100.64.0.0/16', blockSize: 26 },
  { name: 'small', cidr: '100.65.0.0/24', blockSize: 28 },
  { name: 'v6', cidr: 'fd00:64::/48', blockSize: 122 },
];

function claim(cidr: string, node: string, extra: Partial<BlockClaim> = {}): BlockClaim {
  return { name: blockName(cidr), cidr, node, pool: 'default-ipv4', createdAt: 1000, ...extra };
}

const input = (blocks: BlockClaim[], extra: Partial<BlockAdmissionInput> = {}) => ({
  self: 'n1',
  blocks,
  pools,
  nodes: ['n1', 'n2', 'n3'],
  localAddresses: ['100.64.0.5'],
  ...extra,
});

test('blocks IPAM could have made are routed, this node’s own included', (t) => {
  const r = admitBlocks(
    input([
      claim('100.64.0.0/26', 'n1'),
      claim('100.64.0.64/26', 'n2'),
      claim('100.65.0.16/28', 'n3', { pool: 'small' }),
      claim('fd00:64::40/122', 'n2', { pool: 'v6' }),
    ]),
  );
  t.deepEqual(r.refused, []);
  t.deepEqual(
    r.blocks.map((b) => [b.cidr, b.node, b.pool]),
    [
      ['100.64.0.0/26', 'n1', 'default-ipv4'],
      ['100.64.0.64/26', 'n2', 'default-ipv4'],
      ['100.65.0.16/28', 'n3', 'small'],
      ['fd00:64::40/122', 'n2', 'v6'],
    ],
  );
});

const refusals: [string, BlockClaim, BlockRefusalReason, RegExp][] = [
  ['a /32 of another node’s pod', claim('100.64.10.128/32', 'n3'), 'WrongBlockSize', /\/26 blocks/],
  ['a range of no pool', claim('10.99.99.99/32', 'n3'), 'OutsidePool', /outside its pool/],
  ['the whole address space', claim('0.0.0.0/0', 'n3'), 'OutsidePool', /outside its pool/],
  [
    'a block of the right size in another pool’s range',
    claim('100.65.0.0/26', 'n3'),
    'OutsidePool',
    /100\.64\.0\.0\/16/,
  ],
  ['an IPv6 block in an IPv4 pool', claim('fd00:64::/122', 'n3'), 'OutsidePool', /outside/],
  [
    'a pool that does not exist',
    claim('100.66.0.0/26', 'n3', { pool: 'nope' }),
    'UnknownPool',
    /nope/,
  ],
  ['a node that does not exist', claim('100.64.1.0/26', 'ghost'), 'UnknownNode', /ghost/],
  [
    'a name not derived from the CIDR',
    claim('100.64.1.0/26', 'n3', { name: 'other' }),
    'InvalidBlockName',
    /100-64-1-0-26/,
  ],
];
for (const [what, block, reason, message] of refusals) {
  test(`refused, with a reason: ${what}`, (t) => {
    const r = admitBlocks(input([claim('100.64.0.64/26', 'n2'), block]));
    t.deepEqual(
      r.blocks.map((b) => b.cidr),
      ['100.64.0.64/26'],
    );
    t.is(r.refused.length, 1);
    t.is(r.refused[0]?.reason, reason);
    t.regex(r.refused[0]?.message ?? '', message);
    t.regex(r.refused[0]?.message ?? '', /it is not routed$/);
  });
}

test('overlapping blocks: the older claim wins on every node, then the name', (t) => {
  // Two pools' blocks can overlap only past the rules (e.g. a pool re-created over
  // another's range with existing blocks); every agent must keep the same one.
  const wide = { name: 'wide', cidr: '100.64.0.0/16', blockSize: 24 };
  const blocks = [
    claim('100.64.0.0/26', 'n2', { createdAt: 2000 }),
    claim('100.64.0.0/24', 'n3', { createdAt: 1000, pool: 'wide' }),
    claim('100.64.0.64/26', 'n1', { createdAt: 3000 }),
    claim('100.64.1.0/26', 'n2', { createdAt: 500 }),
  ];
  // Only a test can hand the planner two pools over one range; poolsFromK8s never does.
  const both = [...pools, wide];
  for (const self of ['n1', 'n2', 'n3']) {
    const r = admitBlocks(input(blocks, { self, pools: both, localAddresses: [] }));
    t.deepEqual(
      r.blocks.map((b) => [b.cidr, b.node]),
      [
        ['100.64.0.0/24', 'n3'],
        ['100.64.1.0/26', 'n2'],
      ],
      self,
    );
    t.deepEqual(
      r.refused.map((x) => [x.cidr, x.reason]),
      [
        ['100.64.0.0/26', 'OverlappingBlock'],
        ['100.64.0.64/26', 'OverlappingBlock'],
      ],
    );
    t.regex(r.refused[0]?.message ?? '', /older IPAMBlock 100-64-0-0-24/);
  }
  // Same age: the name decides.
  const tie = admitBlocks(
    input([claim('100.64.0.0/24', 'n3', { pool: 'wide' }), claim('100.64.0.0/26', 'n2')], {
      pools: both,
      localAddresses: [],
    }),
  );
  t.deepEqual(
    tie.blocks.map((b) => b.cidr),
    ['100.64.0.0/24'],
  );
});

test('another node’s block holding an address of this node’s pods is refused here only', (t) => {
  // n2 claims the range n1's pod lives in (n1's own block object is gone).
  const blocks = [claim('100.64.0.0/26', 'n2')];
  const here = admitBlocks(input(blocks));
  t.deepEqual(here.blocks, []);
  t.is(here.refused[0]?.reason, 'LocalAddressConflict');
  t.regex(here.refused[0]?.message ?? '', /100\.64\.0\.5, an address of a pod on n1/);
  // Other nodes do not know n1's pods and route it as usual.
  const there = admitBlocks(input(blocks, { self: 'n3', localAddresses: ['100.64.0.70'] }));
  t.deepEqual(
    there.blocks.map((b) => b.node),
    ['n2'],
  );
  // This node's own block with its own pods is fine.
  t.deepEqual(admitBlocks(input([claim('100.64.0.0/26', 'n1')])).refused, []);
});

test('the result does not depend on the order of the objects (replay)', (t) => {
  const blocks = [
    claim('100.64.0.0/26', 'n2', { createdAt: 2000 }),
    claim('100.64.0.0/24', 'n3', { createdAt: 1000, pool: 'wide' }),
    claim('100.64.0.64/26', 'n1'),
    claim('10.0.0.0/8', 'n3'),
    claim('100.64.2.0/26', 'n2'),
  ];
  const both = [...pools, { name: 'wide', cidr: '100.64.0.0/16', blockSize: 24 }];
  const want = admitBlocks(input(blocks, { pools: both }));
  for (const order of [
    [...blocks].reverse(),
    [blocks[2], blocks[0], blocks[4], blocks[1], blocks[3]],
  ])
    t.deepEqual(admitBlocks(input(order as BlockClaim[], { pools: both })), want);
});

test('blockClaimFromK8s reads name, CIDR, node, pool and creation time', (t) => {
  t.deepEqual(
    blockClaimFromK8s({
      metadata: { name: '100-64-0-0-26', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec: { cidr: '100.64.0.0/26', node: 'n1', pool: 'default-ipv4' },
    }),
    {
      name: '100-64-0-0-26',
      cidr: '100.64.0.0/26',
      node: 'n1',
      pool: 'default-ipv4',
      createdAt: Date.parse('2026-01-01T00:00:00Z'),
    },
  );
  t.is(blockClaimFromK8s({ metadata: { name: 'x' }, spec: { cidr: 'nonsense' } }), null);
});

test('an IPAMBlock is kept without its allocations: the same claim, and a pod coming or going changes nothing', (t) => {
  const raw = (allocations: Record<string, unknown>, node = 'n2') => ({
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'IPAMBlock',
    metadata: {
      name: '100-64-0-64-26',
      uid: 'u',
      resourceVersion: String(Object.keys(allocations).length),
      creationTimestamp: '2026-01-01T00:00:00Z',
      managedFields: [{ manager: 'wiremesh' }],
    },
    spec: { cidr: '100.64.0.64/26', node, pool: 'default-ipv4', allocations },
  });
  const one = { 'wiremesh.c1.eth0': { address: '100.64.0.64', namespace: 'a', pod: 'p' } };
  const two = { ...one, 'wiremesh.c2.eth0': { address: '100.64.0.65', namespace: 'a', pod: 'q' } };
  const trimmed = trimBlockClaim(raw(one));
  t.deepEqual(blockClaimFromK8s(trimmed), blockClaimFromK8s(raw(one)));
  t.false(JSON.stringify(trimmed).includes('allocations'));
  t.true(sameBlockClaim(trimmed, trimBlockClaim(raw(two))));
  t.false(sameBlockClaim(trimmed, trimBlockClaim(raw(one, 'n3'))));
});
