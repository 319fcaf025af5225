// Nodes racing through one (fake) apiserver: block claims by CREATE, allocation
// updates by resourceVersion. The fake yields before every call, so the nodes'
// requests interleave as they would over a network.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeIpam, type AllocateRequest, type AllocateResult } from './store.ts';
import { FakeBlockApi } from './fake.ts';
import { PoolExhaustedError } from './allocator.ts';
import type { BlockWrite } from './api.ts';
import { blockName } from './cidr.ts';

let root = '';
let count = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wiremesh-ipam-race-'));
});
test.after.always(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});
const freshDir = () => join(root, `n${++count}`, 'ipam');

const req = (node: string, i: number): AllocateRequest => ({
  handle: `wiremesh.${node}-${i}.eth0`,
  namespace: 'default',
  pod: `${node}-${i}`,
  containerID: `${node}-${i}`,
  ifName: 'eth0',
});

function fake(): FakeBlockApi {
  const api = new FakeBlockApi();
  api.putPool('tiny', { cidr: '100.64.0.0/28', blockSize: 30 });
  for (const n of ['n1', 'n2', 'n3']) api.setNodeLabels(n, {});
  return api;
}

async function node(name: string, api: FakeBlockApi): Promise<NodeIpam> {
  const ipam = new NodeIpam({ node: name, stateDir: freshDir(), api });
  await ipam.start();
  return ipam;
}

test('three nodes allocating at once from a 4-block pool: one owner per block, no address twice, a clear error when full', async (t) => {
  for (let round = 0; round < 20; round++) {
    const api = fake();
    const nodes = await Promise.all(['n1', 'n2', 'n3'].map((n) => node(n, api)));
    const results = await Promise.all(
      nodes.flatMap((ipam) =>
        Array.from({ length: 8 }, (_, i) =>
          ipam.allocate(req(ipam.node, i)).then(
            (r): [string, AllocateResult | Error] => [ipam.node, r],
            (e: unknown): [string, AllocateResult | Error] => [ipam.node, e as Error],
          ),
        ),
      ),
    );
    const ok = results.flatMap(([n, r]) => (r instanceof Error ? [] : [{ node: n, ...r }]));
    const failed = results.flatMap(([, r]) => (r instanceof Error ? [r] : []));
    t.is(ok.length, 16, 'every address of the pool is given out');
    t.is(new Set(ok.map((r) => r.address)).size, 16, 'no address twice');
    t.is(failed.length, 8);
    for (const e of failed) {
      t.true(e instanceof PoolExhaustedError, e.message);
      t.regex(e.message, /^IP pool 'tiny' \(100\.64\.0\.0\/28, \/30 blocks\) is exhausted/);
    }
    // Each block has exactly one owner, and only its owner allocates from it.
    const blocks = api.blocks();
    t.is(blocks.length, 4);
    t.is(new Set(blocks.map((b) => b.cidr)).size, 4);
    for (const r of ok) {
      t.is(
        blocks.find((b) => b.cidr === r.block)?.node,
        r.node,
        `${r.address} from ${r.node}'s block`,
      );
    }
    for (const ipam of nodes) {
      const held = ipam.blocks().map((b) => b.cidr);
      t.deepEqual(
        held,
        blocks
          .filter((b) => b.node === ipam.node)
          .map((b) => b.cidr)
          .sort(),
      );
    }
    await Promise.all(nodes.map((n) => n.sync()));
    const inApi = api.blocks().flatMap((b) => [...b.allocations.values()].map((a) => a.address));
    t.is(inApi.length, 16);
    t.is(new Set(inApi).size, 16);
    await Promise.all(nodes.map((n) => n.close()));
  }
});

test('two nodes racing for one block: exactly one create wins, the other takes the next block', async (t) => {
  const api = fake();
  const n1 = await node('n1', api);
  const n2 = await node('n2', api);
  // n2's claim of the block n1 is about to create lands first.
  let raced = '';
  api.beforeCall = async (call, arg) => {
    if (call !== 'createBlock' || raced) return;
    const wanted = (arg as BlockWrite).cidr;
    raced = wanted;
    api.beforeCall = undefined;
    await n2.allocate(req('n2', 0)); // n2 claims from its own offset...
    // ...and if that was another block, plant n2's win on this one the way a faster create would.
    if (!n2.blocks().some((b) => b.cidr === wanted)) {
      api.putRawBlock(blockName(wanted), { cidr: wanted, pool: 'tiny', node: 'n2' });
    }
  };
  const r1 = await n1.allocate(req('n1', 0));
  t.truthy(raced);
  t.not(r1.block, raced, 'n1 lost the race for that block and took another');
  t.is(api.blocks().find((b) => b.cidr === raced)?.node, 'n2');
  t.is(api.blocks().find((b) => b.cidr === r1.block)?.node, 'n1');
  t.true(api.calls.createBlock >= 2);
  await n1.close();
  await n2.close();
});

test('a 409 on an allocation update re-reads the block and retries', async (t) => {
  const api = fake();
  const ipam = await node('n1', api);
  const a = await ipam.allocate(req('n1', 0));
  api.failNext('updateAllocations', 'Conflict', 2);
  t.like(await ipam.sync(), { updated: 1, conflicts: 2 });
  t.is(api.blocks()[0]?.allocations.get(req('n1', 0).handle)?.address, a.address);

  // A real concurrent write (someone else touches the object) between our read and write.
  await ipam.allocate(req('n1', 1));
  let bumped = false;
  api.beforeCall = (call) => {
    if (call === 'updateAllocations' && !bumped) {
      bumped = true;
      const name = api.blocks()[0]?.name ?? '';
      const raw = api.raw(name);
      if (raw) api.putRawBlock(name, raw.spec); // same spec, new resourceVersion
    }
  };
  t.like(await ipam.sync(), { updated: 1, conflicts: 1 });
  t.is(api.blocks()[0]?.allocations.size, 2);
  await ipam.close();
});

test('a block that keeps changing is given up on with a clear error, and the next sync succeeds', async (t) => {
  const api = fake();
  const ipam = await node('n1', api);
  await ipam.allocate(req('n1', 0));
  api.failNext('updateAllocations', 'Conflict', 8);
  await t.throwsAsync(ipam.sync(), {
    message: /kept changing under this node; gave up after 8 attempts/,
  });
  t.like(await ipam.sync(), { updated: 1 });
  await ipam.close();
});

test('a claim that fails for another reason than a lost race is an error, not a skipped block', async (t) => {
  const api = fake();
  const ipam = await node('n1', api);
  api.failNext('createBlock', 'Unavailable');
  await t.throwsAsync(ipam.allocate(req('n1', 0)), {
    message: /cannot claim|injected Unavailable/,
  });
  t.is(api.blocks().length, 0);
  t.truthy(await ipam.allocate(req('n1', 0)));
  await ipam.close();
});
