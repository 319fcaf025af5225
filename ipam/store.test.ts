import test from 'ava';
import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeIpam, type AllocateRequest, type NodeIpamOptions } from './store.ts';
import { FakeBlockApi } from './fake.ts';
import type { BlockApi } from './api.ts';
import { mustParseCidr, parseCanonicalAddress, cidrContainsValue } from './cidr.ts';
import { JOURNAL_FILE } from './journal.ts';
import { PoolExhaustedError, NoPoolError } from './allocator.ts';
import type { IpamBlock } from './types.ts';

let root = '';
let count = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wiremesh-ipam-'));
});
test.after.always(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});
export const freshDir = () => join(root, `n${++count}`, 'ipam');

function fakeApi(pools: Record<string, Record<string, unknown>> = {}): FakeBlockApi {
  const api = new FakeBlockApi();
  for (const [name, spec] of Object.entries(pools)) api.putPool(name, spec);
  for (const n of ['n1', 'n2', 'n3']) {
    api.setNodeLabels(n, { 'kubernetes.io/os': 'linux', 'kubernetes.io/hostname': n });
  }
  return api;
}

async function started(opts: Partial<NodeIpamOptions> & { api: BlockApi }): Promise<NodeIpam> {
  const ipam = new NodeIpam({ node: 'n1', stateDir: freshDir(), ...opts });
  await ipam.start();
  return ipam;
}

const req = (id: string, over: Partial<AllocateRequest> = {}): AllocateRequest => ({
  handle: `wiremesh.${id}.eth0`,
  namespace: 'default',
  pod: `pod-${id}`,
  containerID: id,
  ifName: 'eth0',
  ...over,
});
const h = (id: string) => `wiremesh.${id}.eth0`;

function inCidr(address: string, cidr: string): boolean {
  const a = parseCanonicalAddress(address);
  return a.ok && cidrContainsValue(mustParseCidr(cidr), a.value.family, a.value.value);
}

/** address -> handle over blocks; a duplicate address fails the test. */
function addressesOf(t: { fail(m: string): void }, blocks: IpamBlock[]): Map<string, string> {
  const seen = new Map<string, string>();
  for (const b of blocks) {
    for (const a of b.allocations.values()) {
      const other = seen.get(a.address);
      if (other) t.fail(`${a.address} is allocated to both ${other} and ${a.handle}`);
      seen.set(a.address, a.handle);
    }
  }
  return seen;
}

// --- the basics ---------------------------------------------------------------------------

test('allocate claims a block, gives its lowest address, and the API shows it after sync', async (t) => {
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api });
  const r = await ipam.allocate(req('a'));
  t.like(r, { pool: 'p', family: 4, prefix: 32 });
  t.true(inCidr(r.address, r.block));
  t.is(`${r.address}/26`, r.block, 'the first address of the block');
  t.is(api.blocks().length, 1);
  t.like(api.blocks()[0], { node: 'n1', pool: 'p', cidr: r.block });
  t.is(api.blocks()[0]?.allocations.size, 0, 'not pushed until sync');
  t.like(await ipam.sync(), { updated: 1, lost: [] });
  t.deepEqual(
    [...(api.blocks()[0]?.allocations.values() ?? [])].map((a) => [a.handle, a.address, a.pod]),
    [[h('a'), r.address, 'pod-a']],
  );
  t.like(await ipam.sync(), { updated: 0, unchanged: 1 });
  t.like(ipam.usage(), { node: 'n1', capacity: 64, allocated: 1, pools: ['p'] });
  await ipam.close();
});

test('blocks no IPAM could have made do not stop a claim; a gone pool’s blocks still do', async (t) => {
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  // Another node's objects: the whole address space and a /32 in the pool (wrong
  // size), both naming the pool; and a block of a pool since deleted, still in use.
  api.putRawBlock('0-0-0-0-0', { cidr: '0.0.0.0/0', pool: 'p', node: 'n2' });
  api.putRawBlock('100-64-0-5-32', { cidr: '100.64.0.5/32', pool: 'p', node: 'n2' });
  api.putRawBlock('100-64-0-0-26', { cidr: '100.64.0.0/26', pool: 'gone', node: 'n3' });
  const ipam = await started({ api });
  const r = await ipam.allocate(req('a'));
  t.not(r.block, '100.64.0.0/26', 'the gone pool’s block is not claimed over');
  t.true(inCidr(r.address, '100.64.0.0/24'));
  await ipam.close();
});

test('the same handle gets the same address; another attachment under it is refused', async (t) => {
  const ipam = await started({ api: fakeApi({ p: { cidr: '100.64.0.0/24' } }) });
  const a = await ipam.allocate(req('a'));
  t.deepEqual(await ipam.allocate(req('a')), a);
  const both = await Promise.all([ipam.allocate(req('b')), ipam.allocate(req('b'))]);
  t.deepEqual(both[0], both[1]);
  await t.throwsAsync(ipam.allocate(req('a', { containerID: 'other' })), {
    message: /already holds/,
  });
  await ipam.close();
});

test('release frees the address for the next allocation and is idempotent', async (t) => {
  const ipam = await started({ api: fakeApi({ p: { cidr: '100.64.0.0/24' } }) });
  const a = await ipam.allocate(req('a'));
  const b = await ipam.allocate(req('b'));
  t.true(await ipam.release(h('a')));
  t.false(await ipam.release(h('a')));
  t.false(await ipam.release('never.seen.eth0'));
  const c = await ipam.allocate(req('c'));
  t.is(c.address, a.address, 'the lowest free address is reused');
  t.not(c.address, b.address);
  t.is(ipam.find(h('c'))?.address, c.address);
  t.is(ipam.find(h('a')), null);
  await ipam.close();
});

test('100 concurrent allocations: distinct addresses, new blocks as needed, few fsyncs', async (t) => {
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api });
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) => ipam.allocate(req(`c${i}`))),
  );
  t.is(new Set(results.map((r) => r.address)).size, 100);
  t.is(api.blocks().length, 2);
  await ipam.sync();
  t.is(addressesOf(t, api.blocks()).size, 100);
  const text = await readFile(join(ipam.stateDir, JOURNAL_FILE), 'utf8');
  const batches = new Set(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { b: number }).b),
  );
  t.true(batches.size < 40, `${batches.size} fsynced batches for 100 allocations`);
  await ipam.close();
});

test('IPv6 and family or pool requests', async (t) => {
  const api = fakeApi({
    v4: { cidr: '100.64.0.0/24' },
    v6: { cidr: 'fd00:64::/120', blockSize: 124 },
  });
  const ipam = await started({ api });
  const six = await ipam.allocate(req('a', { family: 6 }));
  t.like(six, { pool: 'v6', family: 6, prefix: 128 });
  t.true(inCidr(six.address, 'fd00:64::/120'));
  t.true(six.block.endsWith('/124'));
  const four = await ipam.allocate(req('b'));
  t.like(four, { pool: 'v4', family: 4 });
  t.like(await ipam.allocate(req('c', { pool: 'v6' })), { pool: 'v6' });
  await t.throwsAsync(ipam.allocate(req('d', { pool: 'nope' })), {
    instanceOf: NoPoolError,
    message: "IP pool 'nope' is missing, disabled, refused or does not select node n1",
  });
  await ipam.close();
});

test('an IPv6 pool created after start is found by name, not guessed to be IPv4', async (t) => {
  const api = fakeApi({ v4: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api });
  t.like(await ipam.allocate(req('a')), { pool: 'v4', family: 4 });
  api.putPool('late6', { cidr: 'fd00:65::/120', blockSize: 124 });
  t.like(await ipam.allocate(req('b', { pool: 'late6' })), { pool: 'late6', family: 6 });
  await ipam.close();
});

test('pools: nodeSelector and disabled are honoured; refused pools are reported', async (t) => {
  const api = fakeApi({
    other: {
      cidr: '100.64.0.0/24',
      nodeSelector: { matchLabels: { 'kubernetes.io/hostname': 'n2' } },
    },
    broken: { cidr: '100.65.0.1/24' },
  });
  const ipam = await started({ api });
  await t.throwsAsync(ipam.allocate(req('a')), { message: 'no enabled IP pool selects node n1' });
  t.deepEqual(
    ipam.usage().problems.map((p) => [p.object, p.reason]),
    [['IPPool/broken', 'InvalidCIDR']],
  );
  api.putPool('mine', { cidr: '100.66.0.0/24' });
  const a = await ipam.allocate(req('a'));
  t.is(a.pool, 'mine');
  // Disabled: no new address from it, not even from the block already held.
  api.putPool('mine', { cidr: '100.66.0.0/24', disabled: true });
  await ipam.refresh();
  await t.throwsAsync(ipam.allocate(req('b')), { instanceOf: NoPoolError });
  t.deepEqual(await ipam.allocate(req('a')), a, 'an existing handle still answers');
  await ipam.close();
});

test('a namespace naming no pool never lands in a plaintext pool while an encrypted one serves the node', async (t) => {
  // The plaintext pool sorts first by name, is newer, and already has a block with
  // room on the node (claimed for a namespace that named it).
  const api = fakeApi({
    secure: { cidr: '100.64.0.0/30', blockSize: 30, encryptionMode: 'Required' },
  });
  const ipam = await started({ api });
  api.putPool('a-plain', { cidr: '100.65.0.0/24', encryption: 'None' });
  t.like(await ipam.allocate(req('named', { pool: 'a-plain' })), { pool: 'a-plain' });
  t.like(await ipam.allocate(req('unnamed')), { pool: 'secure' });
  // Of two encrypted pools, Required before Preferred.
  api.putPool('b-preferred', { cidr: '100.66.0.0/24' });
  await ipam.refresh();
  t.like(await ipam.allocate(req('again')), { pool: 'secure' });
  // The strongest pools full: an error, not an address from a weaker pool.
  for (const id of ['x', 'y']) t.like(await ipam.allocate(req(id)), { pool: 'secure' });
  await t.throwsAsync(ipam.allocate(req('z')), { instanceOf: PoolExhaustedError });
  // A namespace naming a weaker pool still gets it.
  t.like(await ipam.allocate(req('z', { pool: 'b-preferred' })), { pool: 'b-preferred' });
  await ipam.close();
  // Without an encrypted pool for the node, the plaintext pool serves everyone.
  const plainOnly = await started({
    api: fakeApi({ plain: { cidr: '100.67.0.0/24', encryption: 'None' } }),
  });
  t.like(await plainOnly.allocate(req('p')), { pool: 'plain' });
  await plainOnly.close();
});

test('a full pool is a clear error naming it; release makes room again', async (t) => {
  const api = fakeApi({ tiny: { cidr: '100.64.0.0/29', blockSize: 30 } });
  const ipam = await started({ api });
  const got = await Promise.all(Array.from({ length: 8 }, (_, i) => ipam.allocate(req(`x${i}`))));
  t.is(new Set(got.map((g) => g.address)).size, 8);
  const err = await t.throwsAsync(ipam.allocate(req('y')), { instanceOf: PoolExhaustedError });
  t.is(
    err?.message,
    "IP pool 'tiny' (100.64.0.0/29, /30 blocks) is exhausted: node n1 has no free address in its blocks and every block of the pool is claimed",
  );
  await ipam.release(h('x3'));
  t.is<string | undefined, string | undefined>(
    (await ipam.allocate(req('y'))).address,
    got[3]?.address,
  );
  await ipam.close();
});

test('CNI GC: releaseExcept keeps the valid attachments of the network only', async (t) => {
  const ipam = await started({ api: fakeApi({ p: { cidr: '100.64.0.0/24' } }) });
  await ipam.allocate(req('a'));
  await ipam.allocate(req('b'));
  await ipam.allocate(req('c', { handle: 'othernet.c.eth0' }));
  const released = await ipam.releaseExcept('wiremesh', [{ containerID: 'a', ifName: 'eth0' }]);
  t.deepEqual(released, [h('b')]);
  t.truthy(ipam.find(h('a')));
  t.truthy(ipam.find('othernet.c.eth0'));
  await ipam.close();
});

test('bad requests are refused before anything is written', async (t) => {
  const ipam = await started({ api: fakeApi({ p: { cidr: '100.64.0.0/24' } }) });
  for (const bad of [
    req('a', { handle: '' }),
    req('a', { containerID: '' }),
    req('a', { ifName: '' }),
    req('a', { family: 5 as 4 }),
    { ...req('a'), pod: undefined as unknown as string },
  ]) {
    await t.throwsAsync(ipam.allocate(bad), { message: /invalid IPAM request/ });
  }
  t.is(ipam.usage().allocated, 0);
  await ipam.close();
});

// --- the apiserver away -----------------------------------------------------------------

test('with the apiserver down, held blocks keep serving; claiming says why it cannot', async (t) => {
  const api = fakeApi({ tiny: { cidr: '100.64.0.0/29', blockSize: 30 } });
  const dir = freshDir();
  const first = new NodeIpam({ node: 'n1', stateDir: dir, api });
  await first.start();
  await first.allocate(req('a'));
  await first.close();

  api.unreachable = true;
  const ipam = new NodeIpam({ node: 'n1', stateDir: dir, api });
  await ipam.start(); // succeeds offline
  const more = await Promise.all([
    ipam.allocate(req('b')),
    ipam.allocate(req('c')),
    ipam.allocate(req('d')),
  ]);
  t.is(new Set(more.map((m) => m.address)).size, 3);
  t.true(await ipam.release(h('b')));
  t.is(
    (await ipam.allocate(req('e'))).address,
    more[0]?.address,
    'a released address serves again',
  );
  await t.throwsAsync(ipam.allocate(req('f')), {
    message:
      /^node n1 has no free address in its IPAM blocks and cannot claim a new block: .*ECONNREFUSED/,
  });
  await t.throwsAsync(ipam.sync(), { message: /IPAM sync of node n1 failed/ });

  api.unreachable = false;
  await ipam.sync();
  const inApi = addressesOf(t, api.blocks());
  t.deepEqual([...inApi.values()].sort(), [h('a'), h('c'), h('d'), h('e')].sort());
  await ipam.close();
});

// --- garbage collection -------------------------------------------------------------------

test('collectGarbage waits out the grace period, then frees orphans and spare empty blocks', async (t) => {
  const api = fakeApi({ tiny: { cidr: '100.64.0.0/29', blockSize: 30 } });
  let now = 1_000_000;
  const ipam = await started({ api, now: () => now });
  for (const id of ['a', 'b', 'c', 'd', 'e']) await ipam.allocate(req(id));
  t.is(ipam.blocks().length, 2);
  await ipam.sync();
  const live = new Set(['default/pod-a', 'default/pod-b']);
  const GRACE = 5 * 60_000;
  t.deepEqual(await ipam.collectGarbage({ uids: new Set(), names: live }, GRACE), {
    releasedHandles: [],
    releasedBlocks: [],
  });
  now += GRACE - 1;
  t.deepEqual(await ipam.collectGarbage({ uids: new Set(), names: live }, GRACE), {
    releasedHandles: [],
    releasedBlocks: [],
  });
  now += 1;
  const gc = await ipam.collectGarbage({ uids: new Set(), names: live }, GRACE);
  t.deepEqual(gc.releasedHandles, [h('c'), h('d'), h('e')]);
  t.deepEqual(gc.releasedBlocks, [], 'the emptied block waits its own grace period');
  now += GRACE;
  const second = await ipam.collectGarbage({ uids: new Set(), names: live }, GRACE);
  t.is(second.releasedBlocks.length, 1);
  t.is(ipam.blocks().length, 1);
  t.like(
    ipam.usage().blocks.find((b) => b.state === 'releasing'),
    { cidr: second.releasedBlocks[0] },
  );
  t.like(await ipam.sync(), { deleted: 1 });
  t.is(api.blocks().length, 1);
  t.deepEqual([...(api.blocks()[0]?.allocations.keys() ?? [])].sort(), [h('a'), h('b')]);
  t.is(ipam.usage().blocks.length, 1, 'the released block is forgotten once its object is gone');
  await ipam.close();
});

test('dual-stack: one handle holds one address per family; release frees both', async (t) => {
  const api = fakeApi({
    v4: { cidr: '100.64.0.0/24' },
    v6: { cidr: 'fd00:64::/120', blockSize: 124 },
  });
  const ipam = await started({ api });
  const four = await ipam.allocate(req('a', { family: 4 }));
  const six = await ipam.allocate(req('a', { family: 6 }));
  t.is(four.family, 4);
  t.is(six.family, 6);
  t.deepEqual(await ipam.allocate(req('a', { family: 6 })), six);
  t.deepEqual(await ipam.allocate(req('a')), four, 'no family: the IPv4 pool comes first');
  t.is(ipam.find(h('a'))?.address, four.address);
  t.is(ipam.find(h('a'), 6)?.address, six.address);
  await ipam.sync();
  t.is(api.blocks().filter((b) => b.allocations.has(h('a'))).length, 2);
  t.true(await ipam.release(h('a')));
  t.is(ipam.find(h('a')), null);
  t.is(ipam.find(h('a'), 6), null);
  await ipam.close();
  // The journal replays both families the same way.
  const again = new NodeIpam({ node: 'n1', stateDir: ipam.stateDir, api });
  await again.start();
  t.is(again.find(h('a')), null);
  const b4 = await again.allocate(req('b', { family: 4 }));
  const b6 = await again.allocate(req('b', { family: 6 }));
  await again.close();
  const third = new NodeIpam({ node: 'n1', stateDir: ipam.stateDir, api });
  await third.start();
  t.is(third.find(h('b'), 4)?.address, b4.address);
  t.is(third.find(h('b'), 6)?.address, b6.address);
  await third.close();
});

test('autoSyncMs pushes changes to the API shortly after they happen', async (t) => {
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api, autoSyncMs: 5 });
  const a = await ipam.allocate(req('a'));
  for (let i = 0; i < 100 && api.blocks()[0]?.allocations.size !== 1; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  t.is(api.blocks()[0]?.allocations.get(h('a'))?.address, a.address);
  await ipam.close();
});

test('servedFamilies: one per family of the pools serving the node; IPv6 blocks default to /122', async (t) => {
  const api = fakeApi({
    v4: { cidr: '100.64.0.0/16' },
    v6: { cidr: 'fd00:64::/48' },
    elsewhere: {
      cidr: 'fd00:65::/48',
      nodeSelector: { matchLabels: { 'kubernetes.io/hostname': 'n2' } },
    },
  });
  const ipam = await started({ api });
  t.deepEqual(ipam.servedFamilies(), [4, 6]);
  t.is(ipam.poolFamily('v6'), 6);
  t.is(ipam.poolFamily('v4'), 4);
  t.is(ipam.poolFamily('nope'), undefined);
  const six = await ipam.allocate(req('a', { family: 6 }));
  t.true(six.block.endsWith('/122'), six.block);
  t.true(inCidr(six.address, 'fd00:64::/48'));
  await ipam.close();

  const v4only = await started({ api: fakeApi({ v4: { cidr: '100.64.0.0/16' } }) });
  t.deepEqual(v4only.servedFamilies(), [4], 'an IPv4-only cluster stays single-stack');
  await v4only.close();
  const v6only = await started({ api: fakeApi({ v6: { cidr: 'fd00:64::/48' } }) });
  t.deepEqual(v6only.servedFamilies(), [6]);
  t.like(await v6only.allocate(req('b')), { family: 6, prefix: 128 });
  await v6only.close();
});

// A pod's sandbox replaced (a node rebooted): the same pod UID, another container.
const sandbox = (pod: string, container: string, over: Partial<AllocateRequest> = {}) =>
  req(container, { pod, podUID: `uid-${pod}`, ...over });

test("a pod's new sandbox takes the address its dead predecessor still holds (its DEL never came)", async (t) => {
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api });
  const a = await ipam.allocate(sandbox('a', 'c1'));
  const b = await ipam.allocate(sandbox('b', 'c2'));
  const again = await ipam.allocate(sandbox('a', 'c3'));
  t.is(again.address, a.address);
  t.is(ipam.find(h('c1')), null, "the dead sandbox's handle holds nothing");
  t.is(ipam.find(h('c3'))?.address, a.address);
  t.false(await ipam.release(h('c1')), "the old sandbox's late DEL frees nothing");
  t.is(ipam.find(h('c3'))?.address, a.address);
  // Another interface, another network or no pod UID: no takeover.
  const eth1 = await ipam.allocate(
    sandbox('b', 'c4', { handle: 'wiremesh.c4.eth1', ifName: 'eth1' }),
  );
  t.not(eth1.address, b.address);
  const other = await ipam.allocate(sandbox('b', 'c5', { handle: 'other.c5.eth0' }));
  t.not(other.address, b.address);
  const plain = await ipam.allocate(req('c6', { pod: 'b' }));
  t.not(plain.address, b.address);
  t.is(ipam.find(h('c2'))?.address, b.address);
  await ipam.close();
});

test('pods whose sandboxes were torn down and re-made get their own addresses back, in any order', async (t) => {
  let now = 1_000_000;
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api, now: () => now });
  const before = new Map<string, string>();
  for (const pod of ['a', 'b', 'c'])
    before.set(pod, (await ipam.allocate(sandbox(pod, `${pod}1`))).address);
  // The rebooted node's kubelet: every old sandbox DELeted, then new ones ADDed, last pod first.
  for (const pod of ['a', 'b', 'c']) t.true(await ipam.release(h(`${pod}1`)));
  for (const pod of ['c', 'a', 'b'])
    t.is((await ipam.allocate(sandbox(pod, `${pod}2`))).address, before.get(pod) ?? 'none', pod);
  // A pod's remembered address taken by another meanwhile: the lowest free instead.
  t.true(await ipam.release(h('a2')));
  t.is(
    (await ipam.allocate(req('x'))).address,
    before.get('a') ?? 'none',
    'a stranger takes the lowest free',
  );
  t.not((await ipam.allocate(sandbox('a', 'a3'))).address, before.get('a') ?? 'none');
  // The memory lasts 10 minutes.
  t.true(await ipam.release(h('b2')));
  t.true(await ipam.release(h('c2')));
  now += 11 * 60_000;
  t.is(
    (await ipam.allocate(sandbox('c', 'c3'))).address,
    before.get('b') ?? 'none',
    'the lowest free',
  );
  await ipam.close();
});

test("an allocation's pod UID survives the journal's replay and reaches the API", async (t) => {
  const api = fakeApi({ p: { cidr: '100.64.0.0/24' } });
  const ipam = await started({ api });
  await ipam.allocate(req('a', { podUID: 'uid-a' }));
  await ipam.allocate(req('b', { namespace: '', pod: '' }));
  await ipam.sync();
  const pushed = api.blocks()[0]?.allocations;
  t.is(pushed?.get(h('a'))?.podUID, 'uid-a');
  t.like(pushed?.get(h('b')), { namespace: '', pod: '' });
  t.false('podUID' in (pushed?.get(h('b')) ?? {}));
  await ipam.close();
  const again = new NodeIpam({ node: 'n1', stateDir: ipam.stateDir, api });
  await again.start();
  t.is(again.find(h('a'))?.podUID, 'uid-a');
  await again.close();
});
