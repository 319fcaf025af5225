import test from 'ava';
import {
  allocateFromBlocks,
  blockCount,
  blockOccupies,
  checkPoolOverlaps,
  chooseFreeBlock,
  lowestFreeAddress,
  planGarbageCollection,
  planRelease,
  poolsForNode,
  PoolExhaustedError,
  EMPTY_GC_STATE,
  livePodsOf,
  podIsLive,
  type GcState,
  type LivePods,
} from './allocator.ts';
import { EVERY_NODE } from './selector.ts';
import { blockName } from './cidr.ts';
import type { Allocation, IpamBlock, IpPool, LabelSelector } from './types.ts';

function pool(name: string, cidr: string, over: Partial<IpPool> = {}): IpPool {
  const family = cidr.includes(':') ? 6 : 4;
  return {
    name,
    uid: `uid-${name}`,
    createdAt: 1000,
    cidr,
    family,
    blockSize: family === 4 ? 26 : 122,
    nodeSelector: EVERY_NODE,
    encryption: 'WireGuard',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
    natOutgoing: false,
    disabled: false,
    ...over,
  };
}

function alloc(handle: string, address: string, over: Partial<Allocation> = {}): Allocation {
  return {
    handle,
    address,
    namespace: 'default',
    pod: handle,
    containerID: `c-${handle}`,
    ifName: 'eth0',
    allocatedAt: 0,
    ...over,
  };
}

function block(
  cidr: string,
  allocations: Allocation[] = [],
  over: Partial<IpamBlock> = {},
): IpamBlock {
  return {
    name: blockName(cidr),
    cidr,
    family: cidr.includes(':') ? 6 : 4,
    pool: 'p',
    node: 'n1',
    allocations: new Map(allocations.map((a) => [a.handle, a])),
    resourceVersion: '',
    uid: '',
    problems: [],
    ...over,
  };
}

const attrs = (id: string) => ({
  namespace: 'default',
  pod: id,
  containerID: `c-${id}`,
  ifName: 'eth0',
});

// --- pools for a node ---------------------------------------------------------------

const selects = test.macro(
  (t, selector: LabelSelector, labels: Record<string, string>, expected: boolean) => {
    const got = poolsForNode([pool('p', '100.64.0.0/16', { nodeSelector: selector })], labels);
    t.is(got.length === 1, expected);
  },
);
const sel = (s: Partial<LabelSelector>): LabelSelector => ({ ...EVERY_NODE, ...s });
test('empty selector selects every node', selects, EVERY_NODE, {}, true);
test(
  'matchLabels: all pairs must match',
  selects,
  sel({ matchLabels: { a: '1', b: '2' } }),
  { a: '1', b: '2', c: '3' },
  true,
);
test(
  'matchLabels: a different value does not match',
  selects,
  sel({ matchLabels: { a: '1' } }),
  { a: '2' },
  false,
);
test(
  'matchLabels: a missing key does not match',
  selects,
  sel({ matchLabels: { a: '1' } }),
  {},
  false,
);
const expr = (operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', values: string[] = []) =>
  sel({ matchExpressions: [{ key: 'zone', operator, values }] });
test('In: value listed', selects, expr('In', ['a', 'b']), { zone: 'b' }, true);
test('In: value not listed', selects, expr('In', ['a']), { zone: 'b' }, false);
test('In: key absent', selects, expr('In', ['a']), {}, false);
test('NotIn: value not listed', selects, expr('NotIn', ['a']), { zone: 'b' }, true);
test('NotIn: value listed', selects, expr('NotIn', ['a']), { zone: 'a' }, false);
test('NotIn: key absent matches', selects, expr('NotIn', ['a']), {}, true);
test('Exists: present (even empty)', selects, expr('Exists'), { zone: '' }, true);
test('Exists: absent', selects, expr('Exists'), {}, false);
test('DoesNotExist: absent', selects, expr('DoesNotExist'), {}, true);
test('DoesNotExist: present', selects, expr('DoesNotExist'), { zone: 'a' }, false);
test(
  'labels and expressions must all hold',
  selects,
  sel({
    matchLabels: { a: '1' },
    matchExpressions: [{ key: 'zone', operator: 'Exists', values: [] }],
  }),
  { a: '1' },
  false,
);

test('poolsForNode drops disabled pools and sorts by family, then name', (t) => {
  const pools = [
    pool('zeta', '100.65.0.0/16'),
    pool('v6', 'fd00:64::/48'),
    pool('alpha', '100.64.0.0/16'),
    pool('off', '100.66.0.0/16', { disabled: true }),
  ];
  t.deepEqual(
    poolsForNode(pools, {}).map((p) => p.name),
    ['alpha', 'zeta', 'v6'],
  );
});

test('overlapping pools: the older wins, the younger is refused, on every node alike', (t) => {
  const older = pool('older', '100.64.0.0/16', { createdAt: 5 });
  const younger = pool('younger', '100.64.128.0/17', { createdAt: 9 });
  const sameAgeB = pool('b', '10.0.0.0/8', { createdAt: 1 });
  const sameAgeA = pool('a', '10.1.0.0/16', { createdAt: 1 });
  const r = checkPoolOverlaps([younger, older, sameAgeB, sameAgeA]);
  t.deepEqual(
    r.pools.map((p) => p.name),
    ['a', 'older'],
  );
  t.deepEqual(
    r.problems.map((p) => [p.object, p.reason]),
    [
      ['IPPool/b', 'OverlappingPool'],
      ['IPPool/younger', 'OverlappingPool'],
    ],
  );
  t.regex(r.problems[1]?.message ?? '', /overlaps the older pool 'older'/);
  // A disabled older pool still holds its range.
  t.deepEqual(
    poolsForNode([{ ...older, disabled: true }, younger], {}).map((p) => p.name),
    [],
  );
});

// --- block choice ----------------------------------------------------------------------

test('chooseFreeBlock: first free block, family-agnostic', (t) => {
  const v4 = pool('p', '100.64.0.0/24');
  t.is(blockCount(v4), 4n);
  t.is(chooseFreeBlock(v4, []), '100.64.0.0/26');
  t.is(chooseFreeBlock(v4, [block('100.64.0.0/26')]), '100.64.0.64/26');
  t.is(chooseFreeBlock(v4, [block('100.64.0.0/26'), block('100.64.0.128/26')]), '100.64.0.64/26');
  const v6 = pool('p6', 'fd00:64::/48');
  t.is(blockCount(v6), 1n << 74n);
  t.is(chooseFreeBlock(v6, []), 'fd00:64::/122');
  t.is(chooseFreeBlock(v6, [block('fd00:64::/122')]), 'fd00:64::40/122');
});

test('chooseFreeBlock: starts at the preferred offset and wraps round', (t) => {
  const p = pool('p', '100.64.0.0/24');
  t.is(chooseFreeBlock(p, [], 2n), '100.64.0.128/26');
  t.is(chooseFreeBlock(p, [], 6n), '100.64.0.128/26', 'offset modulo the block count');
  t.is(
    chooseFreeBlock(p, [block('100.64.0.128/26'), block('100.64.0.192/26')], 2n),
    '100.64.0.0/26',
  );
  const v6 = pool('p6', 'fd00:64::/48');
  const far = (1n << 73n) + 1n;
  t.is(chooseFreeBlock(v6, [], far), 'fd00:64:0:8000::40/122');
});

test('chooseFreeBlock: null when every block is taken', (t) => {
  const p = pool('p', '100.64.0.0/28', { blockSize: 30 });
  const all = ['100.64.0.0/30', '100.64.0.4/30', '100.64.0.8/30', '100.64.0.12/30'].map((c) =>
    block(c),
  );
  t.is(chooseFreeBlock(p, all), null);
  t.is(chooseFreeBlock(p, all.slice(1)), '100.64.0.0/30');
});

test('chooseFreeBlock: never claims over an existing block of any pool or size', (t) => {
  const p = pool('p', '100.64.0.0/24');
  // A /25 from some other pool covers blocks 0 and 1; a stray /28 sits in block 3.
  const existing = [
    block('100.64.0.0/25'),
    block('100.64.0.192/28'),
    block('10.0.0.0/26'),
    block('fd00::/122'),
  ];
  t.is(chooseFreeBlock(p, existing), '100.64.0.128/26');
  t.is(chooseFreeBlock(p, [...existing, block('100.64.0.128/26')]), null);
  // A block larger than the whole pool takes it all.
  t.is(chooseFreeBlock(p, [block('100.64.0.0/16')]), null);
});

// --- allocation ------------------------------------------------------------------------

test('allocateFromBlocks: the lowest free address, the network and last address included', (t) => {
  const b = block('100.64.0.0/30');
  const d1 = allocateFromBlocks([b], 'h1', attrs('h1'), 7);
  t.like(d1, {
    kind: 'new',
    allocation: { address: '100.64.0.0', handle: 'h1', allocatedAt: 7, pod: 'h1' },
  });
  const full = block('100.64.0.0/30', [
    alloc('a', '100.64.0.0'),
    alloc('b', '100.64.0.1'),
    alloc('c', '100.64.0.2'),
  ]);
  t.like(allocateFromBlocks([full], 'h', attrs('h'), 0), {
    kind: 'new',
    allocation: { address: '100.64.0.3' },
  });
  // A hole is filled first.
  const holey = block('100.64.0.0/30', [alloc('a', '100.64.0.0'), alloc('c', '100.64.0.2')]);
  t.like(allocateFromBlocks([holey], 'h', attrs('h'), 0), {
    kind: 'new',
    allocation: { address: '100.64.0.1' },
  });
});

test('allocateFromBlocks: IPv6', (t) => {
  const b = block('fd00:64::/126', [alloc('a', 'fd00:64::')]);
  t.like(allocateFromBlocks([b], 'h', attrs('h'), 0), {
    kind: 'new',
    block: { cidr: 'fd00:64::/126' },
    allocation: { address: 'fd00:64::1' },
  });
  t.is(lowestFreeAddress(block('fd00:64::/128', [alloc('a', 'fd00:64::')])), null);
});

test('allocateFromBlocks: the next block when the first is full; full when all are', (t) => {
  const b1 = block('100.64.0.0/31', [alloc('a', '100.64.0.0'), alloc('b', '100.64.0.1')]);
  const b2 = block('100.64.0.8/31', [alloc('c', '100.64.0.8')]);
  t.like(allocateFromBlocks([b1, b2], 'h', attrs('h'), 0), {
    kind: 'new',
    block: { cidr: '100.64.0.8/31' },
    allocation: { address: '100.64.0.9' },
  });
  const b2full = block('100.64.0.8/31', [alloc('c', '100.64.0.8'), alloc('d', '100.64.0.9')]);
  t.deepEqual(allocateFromBlocks([b1, b2full], 'h', attrs('h'), 0), { kind: 'full' });
  t.deepEqual(allocateFromBlocks([], 'h', attrs('h'), 0), { kind: 'full' });
});

test('allocateFromBlocks: the same handle gets the same address, even in a full block', (t) => {
  const b = block('100.64.0.0/31', [alloc('a', '100.64.0.0'), alloc('h', '100.64.0.1')]);
  const d = allocateFromBlocks([b], 'h', attrs('h'), 0);
  t.like(d, { kind: 'existing', allocation: { address: '100.64.0.1' } });
});

test('allocateFromBlocks: a handle held by another container is an error, not a shared address', (t) => {
  const b = block('100.64.0.0/30', [alloc('h', '100.64.0.0', { containerID: 'other' })]);
  t.throws(() => allocateFromBlocks([b], 'h', attrs('h'), 0), {
    message: /already holds 100\.64\.0\.0 for container other/,
  });
});

test('planRelease finds the handle or says there is nothing to release', (t) => {
  const b = block('100.64.0.0/30', [alloc('h', '100.64.0.2')]);
  t.like(planRelease([b], 'h'), {
    block: { cidr: '100.64.0.0/30' },
    allocation: { address: '100.64.0.2' },
  });
  t.is(planRelease([b], 'nope'), null);
});

test('PoolExhaustedError names the pool, its range and block size', (t) => {
  const e = new PoolExhaustedError([pool('tiny', '100.64.0.0/28', { blockSize: 30 })], 'n1');
  t.is(
    e.message,
    "IP pool 'tiny' (100.64.0.0/28, /30 blocks) is exhausted: node n1 has no free address in its blocks and every block of the pool is claimed",
  );
  t.deepEqual(e.pools, ['tiny']);
});

// --- garbage collection ----------------------------------------------------------------

const GRACE = 60_000;
/** Live pods by name only (allocations without a pod UID are compared so). */
const named = (...names: string[]): LivePods => ({ uids: new Set(), names: new Set(names) });

test('GC: an orphan is released only after the grace period from its first sighting', (t) => {
  const blocks = [
    block('100.64.0.0/26', [
      alloc('live', '100.64.0.0', { pod: 'live' }),
      alloc('gone', '100.64.0.1', { pod: 'gone' }),
      alloc('nopod', '100.64.0.2', { pod: '' }),
    ]),
  ];
  const livePods = named('default/live');
  const first = planGarbageCollection({
    blocks,
    livePods,
    activePools: null,
    now: 1_000_000,
    graceMs: GRACE,
    state: EMPTY_GC_STATE,
  });
  t.deepEqual(first.releaseHandles, []);
  t.deepEqual([...first.state.orphanSince], [['gone', 1_000_000]]);
  const early = planGarbageCollection({
    blocks,
    livePods,
    activePools: null,
    now: 1_000_000 + GRACE - 1,
    graceMs: GRACE,
    state: first.state,
  });
  t.deepEqual(early.releaseHandles, []);
  const late = planGarbageCollection({
    blocks,
    livePods,
    activePools: null,
    now: 1_000_000 + GRACE,
    graceMs: GRACE,
    state: early.state,
  });
  t.deepEqual(late.releaseHandles, ['gone']);
  t.deepEqual([...late.state.orphanSince], []);
});

test('GC: a pod that comes back is no longer an orphan; its clock restarts', (t) => {
  const blocks = [block('100.64.0.0/26', [alloc('x', '100.64.0.0', { pod: 'x' })])];
  const s1 = planGarbageCollection({
    blocks,
    livePods: named(),
    activePools: null,
    now: 0,
    graceMs: GRACE,
    state: EMPTY_GC_STATE,
  });
  const s2 = planGarbageCollection({
    blocks,
    livePods: named('default/x'),
    activePools: null,
    now: 10,
    graceMs: GRACE,
    state: s1.state,
  });
  t.is(s2.state.orphanSince.size, 0);
  const s3 = planGarbageCollection({
    blocks,
    livePods: named(),
    activePools: null,
    now: GRACE + 5,
    graceMs: GRACE,
    state: s2.state,
  });
  t.deepEqual(s3.releaseHandles, []);
});

test('GC: a young allocation is never collected, even if its pod is not listed yet', (t) => {
  const blocks = [block('100.64.0.0/26', [alloc('new', '100.64.0.0', { allocatedAt: 5_000 })])];
  const state: GcState = { orphanSince: new Map([['new', 0]]), emptySince: new Map() };
  const r = planGarbageCollection({
    blocks,
    livePods: named(),
    activePools: null,
    now: 5_000 + GRACE - 1,
    graceMs: GRACE,
    state,
  });
  t.deepEqual(r.releaseHandles, []);
});

test('GC: empty blocks go after the grace period; one is kept per pool still in use', (t) => {
  const blocks = [
    block('100.64.0.64/26', [], { pool: 'p' }),
    block('100.64.0.0/26', [], { pool: 'p' }),
    block('100.65.0.0/26', [alloc('a', '100.65.0.0')], { pool: 'q' }),
    block('100.65.0.64/26', [], { pool: 'q' }),
    block('100.66.0.0/26', [], { pool: 'gone' }),
  ];
  const livePods = named('default/a');
  const activePools = new Set(['p', 'q']);
  const first = planGarbageCollection({
    blocks,
    livePods,
    activePools,
    now: 0,
    graceMs: GRACE,
    state: EMPTY_GC_STATE,
  });
  t.deepEqual(first.releaseBlocks, []);
  const later = planGarbageCollection({
    blocks,
    livePods,
    activePools,
    now: GRACE,
    graceMs: GRACE,
    state: first.state,
  });
  // p keeps its lowest block; q keeps the one with a pod; 'gone' no longer selects the node.
  t.deepEqual(later.releaseBlocks, ['100.64.0.64/26', '100.65.0.64/26', '100.66.0.0/26']);
  t.deepEqual([...later.state.emptySince.keys()], ['100.64.0.0/26']);
});

test('GC: with grace 0 an orphan and the block it empties go in one run (all pools unknown: keep one)', (t) => {
  const blocks = [
    block('100.64.0.0/26', [alloc('x', '100.64.0.0')]),
    block('100.64.0.64/26', [alloc('y', '100.64.0.64')]),
  ];
  const r = planGarbageCollection({
    blocks,
    livePods: named(),
    activePools: null,
    now: 100,
    graceMs: 0,
    state: EMPTY_GC_STATE,
  });
  t.deepEqual(r.releaseHandles, ['x', 'y']);
  t.deepEqual(r.releaseBlocks, ['100.64.0.64/26']);
  const disabled = planGarbageCollection({
    blocks,
    livePods: named(),
    activePools: new Set(),
    now: 100,
    graceMs: 0,
    state: EMPTY_GC_STATE,
  });
  t.deepEqual(disabled.releaseBlocks, ['100.64.0.0/26', '100.64.0.64/26']);
});

test('blockOccupies: only blocks an IPAM could have made hold their range', (t) => {
  const pools = [pool('p', '100.64.0.0/16'), pool('v6', 'fd00:64::/48')];
  const cases: [string, string, boolean][] = [
    ['100.64.1.0/26', 'p', true],
    ['fd00:64::40/122', 'v6', true],
    ['100.64.1.5/32', 'p', false],
    ['0.0.0.0/0', 'p', false],
    ['100.65.0.0/26', 'p', false],
    ['fd00:64::/122', 'p', false],
    // A pool since deleted: its blocks may still hold pods' addresses.
    ['100.66.0.0/26', 'gone', true],
    ['100.66.0.0/20', 'gone', true],
    ['0.0.0.0/0', 'gone', false],
    ['::/0', 'gone', false],
  ];
  for (const [cidr, p, want] of cases)
    t.is(blockOccupies({ cidr, pool: p }, pools), want, `${cidr} of ${p}`);
});

// --- which pod is gone: by UID, by name, never for attachments without Kubernetes ----------

const gcOnce = (blocks: IpamBlock[], livePods: LivePods) =>
  planGarbageCollection({
    blocks,
    livePods,
    activePools: null,
    now: 10 * GRACE,
    graceMs: GRACE,
    state: {
      orphanSince: new Map(blocks.flatMap((b) => [...b.allocations.keys()].map((h) => [h, 0]))),
      emptySince: new Map(),
    },
  }).releaseHandles;

test("GC: a pod re-created under the same name does not keep the old pod's address", (t) => {
  const blocks = [
    block('100.64.0.0/26', [
      alloc('old', '100.64.0.0', { pod: 'web-0', podUID: 'uid-old' }),
      alloc('new', '100.64.0.1', { pod: 'web-0', podUID: 'uid-new' }),
    ]),
  ];
  const live = livePodsOf([{ namespace: 'default', name: 'web-0', uid: 'uid-new' }]);
  t.deepEqual(gcOnce(blocks, live), ['old']);
});

test('GC: an allocation without a pod UID (an older runtime or record) is compared by name', (t) => {
  const blocks = [
    block('100.64.0.0/26', [
      alloc('kept', '100.64.0.0', { pod: 'web-0' }),
      alloc('gone', '100.64.0.1', { pod: 'web-1' }),
    ]),
  ];
  const live = livePodsOf([{ namespace: 'default', name: 'web-0', uid: 'uid-1' }]);
  t.deepEqual(gcOnce(blocks, live), ['gone']);
});

test('GC: attachments made without Kubernetes arguments are never collected by the pod check', (t) => {
  const blocks = [
    block('100.64.0.0/26', [
      // cnitool: no pod; podman: its container's name, no namespace; earlier versions
      // recorded the container id as the name of a pod in 'default'.
      alloc('cnitool', '100.64.0.0', { namespace: '', pod: '', containerID: 'c1' }),
      alloc('podman', '100.64.0.2', { namespace: '', pod: 'web-0', containerID: 'c3' }),
      alloc('legacy', '100.64.0.1', { namespace: 'default', pod: 'c2', containerID: 'c2' }),
    ]),
  ];
  t.deepEqual(gcOnce(blocks, livePodsOf([])), []);
  // Not even when a Kubernetes pod of that name is gone from the node.
  t.deepEqual(gcOnce(blocks, livePodsOf([{ namespace: 'default', name: 'web-1', uid: 'u' }])), []);
  t.true(podIsLive({ namespace: '', pod: '', containerID: 'c1', ifName: 'eth0' }, livePodsOf([])));
});

test("GC: a pod in a terminal phase is gone; a static pod is live under its mirror's config UID", (t) => {
  const blocks = [
    block('100.64.0.0/26', [
      alloc('done', '100.64.0.0', { pod: 'job-x', podUID: 'uid-job' }),
      alloc('static', '100.64.0.1', { pod: 'static-n1', podUID: 'hash-of-manifest' }),
      alloc('running', '100.64.0.2', { pod: 'web-0', podUID: 'uid-web' }),
    ]),
  ];
  const live = livePodsOf([
    { namespace: 'default', name: 'job-x', uid: 'uid-job', phase: 'Succeeded' },
    { namespace: 'default', name: 'static-n1', uid: 'mirror-uid', mirrorOf: 'hash-of-manifest' },
    { namespace: 'default', name: 'web-0', uid: 'uid-web', phase: 'Running' },
  ]);
  t.deepEqual(gcOnce(blocks, live), ['done']);
});
