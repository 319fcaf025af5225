// NodeIpam across crashes. A "process" here is a NodeIpam whose fault hook throws
// at a chosen point and whose apiserver connection dies with it; the next process
// starts on the same state directory and the same (fake) apiserver. The journal's
// unsynced last write is, after a crash, kept, lost, or torn: all three are tried.
import test from 'ava';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeIpam, type AllocateRequest } from './store.ts';
import { FakeBlockApi } from './fake.ts';
import { IpamApiError, type BlockApi } from './api.ts';
import { JOURNAL_FILE } from './journal.ts';
import type { IpamBlock } from './types.ts';

let root = '';
let count = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wiremesh-ipam-crash-'));
});
test.after.always(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});
const freshDir = () => join(root, `n${++count}`, 'ipam');

class Crash extends Error {}

/** One run of the agent: dies at the `crashAt`-th fault point, taking its API connection along. */
class Process {
  dead = false;
  calls = 0;
  crashedAt = '';
  readonly points: string[] = [];
  private journalSizeBeforeWrite = 0;
  private journalSizeBeforeSync = 0;
  readonly dir: string;
  private readonly crashAt: number;
  constructor(dir: string, crashAt = Infinity) {
    this.dir = dir;
    this.crashAt = crashAt;
  }

  fault = (point: string): void => {
    if (this.dead) throw new Crash('dead');
    this.points.push(point);
    const file = join(this.dir, JOURNAL_FILE);
    if (point === 'journal.before-write') this.journalSizeBeforeWrite = statSync(file).size;
    if (point === 'journal.before-sync') this.journalSizeBeforeSync = statSync(file).size;
    if (++this.calls === this.crashAt) {
      this.dead = true;
      this.crashedAt = point;
      throw new Crash(`crash at ${point}`);
    }
  };

  api(shared: BlockApi): BlockApi {
    const guard = <A extends unknown[], R>(f: (...a: A) => Promise<R>) => {
      return async (...a: A): Promise<R> => {
        if (this.dead) throw new IpamApiError('Unavailable', 'process dead');
        return f(...a);
      };
    };
    return {
      listPools: guard(() => shared.listPools()),
      listBlocks: guard(() => shared.listBlocks()),
      getBlock: guard((n) => shared.getBlock(n)),
      createBlock: guard((b) => shared.createBlock(b)),
      updateAllocations: guard((n, a, rv) => shared.updateAllocations(n, a, rv)),
      deleteBlock: guard((n, p) => shared.deleteBlock(n, p)),
      nodeLabels: guard((n) => shared.nodeLabels(n)),
    };
  }

  /** What the disk holds after the crash, if the last write was not fsynced. */
  async loseUnsyncedWrite(how: 'lost' | 'torn'): Promise<void> {
    if (this.crashedAt !== 'journal.before-sync') return;
    const file = join(this.dir, JOURNAL_FILE);
    const before = this.journalSizeBeforeWrite;
    const written = this.journalSizeBeforeSync - before;
    await truncate(file, how === 'lost' ? before : before + Math.max(1, Math.floor(written / 2)));
  }
}

function sharedApi(): FakeBlockApi {
  const api = new FakeBlockApi();
  api.putPool('tiny', { cidr: '100.64.0.0/28', blockSize: 30 });
  api.setNodeLabels('n1', {});
  api.setNodeLabels('n2', {});
  return api;
}

const req = (id: string): AllocateRequest => ({
  handle: `wiremesh.${id}.eth0`,
  namespace: 'default',
  pod: `pod-${id}`,
  containerID: id,
  ifName: 'eth0',
});
const h = (id: string) => `wiremesh.${id}.eth0`;

interface Acks {
  /** handle -> address, for allocations whose allocate() resolved (and not released since). */
  held: Map<string, string>;
  /** Handles whose release resolved. */
  released: Set<string>;
}

/** A workload with concurrency, releases, GC, syncs and (with a small threshold) compactions. */
async function workload(ipam: NodeIpam, acks: Acks): Promise<void> {
  const allocate = async (ids: string[]) => {
    const results = await Promise.allSettled(
      ids.map(async (id) => {
        const r = await ipam.allocate(req(id));
        acks.held.set(h(id), r.address);
      }),
    );
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  const release = async (ids: string[]) => {
    for (const id of ids) {
      acks.held.delete(h(id)); // in flight: it may or may not happen if we crash now
      await ipam.release(h(id));
      acks.held.delete(h(id));
      acks.released.add(h(id));
    }
  };
  await allocate(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
  await release(['a1', 'a2']);
  await ipam.sync();
  await allocate(['a6', 'a7', 'a8', 'a9']);
  const live = new Set(['a0', 'a3', 'a5', 'a6', 'a7', 'a8', 'a9'].map((p) => `default/pod-${p}`));
  for (const handle of acks.held.keys()) {
    if (!live.has(`default/pod-${handle.split('.')[1]}`)) acks.held.delete(handle); // GC may take it
  }
  const gc = await ipam.collectGarbage({ uids: new Set(), names: live }, 0);
  for (const handle of gc.releasedHandles) {
    acks.held.delete(handle);
    acks.released.add(handle);
  }
  await ipam.sync();
  await release(['a5', 'a6', 'a7', 'a8', 'a9']);
  await ipam.collectGarbage({ uids: new Set(), names: live }, 0);
  await ipam.sync();
}

function checkNoDuplicates(t: { fail(m: string): void }, blocks: IpamBlock[], where: string): void {
  const seen = new Map<string, string>();
  for (const b of blocks) {
    for (const a of b.allocations.values()) {
      const other = seen.get(a.address);
      if (other && other !== a.handle)
        t.fail(`${where}: ${a.address} held by ${other} and ${a.handle}`);
      seen.set(a.address, a.handle);
    }
  }
}

function summary(blocks: IpamBlock[]): Record<string, Record<string, string>> {
  return Object.fromEntries(
    blocks.map((b) => [
      b.cidr,
      Object.fromEntries([...b.allocations.values()].map((a) => [a.handle, a.address])),
    ]),
  );
}

test('a crash at every step, with the unsynced write kept, lost or torn: nothing promised is forgotten, no address is doubled', async (t) => {
  // Count the fault points of an undisturbed run.
  const dry = new Process(freshDir());
  const dryApi = sharedApi();
  const ipam0 = new NodeIpam({
    node: 'n1',
    stateDir: dry.dir,
    api: dry.api(dryApi),
    fault: dry.fault,
    compactAfterLines: 3,
  });
  await ipam0.start();
  await workload(ipam0, { held: new Map(), released: new Set() });
  await ipam0.close();
  const total = dry.calls;
  t.true(total > 40, `${total} fault points`);
  t.true(dry.points.includes('compact.renamed') && dry.points.includes('claim.created'));
  t.true(dry.points.includes('sync.deleted'), 'the workload gives a block back');

  let runs = 0;
  for (let k = 1; k <= total; k++) {
    for (const how of ['kept', 'lost', 'torn'] as const) {
      const api = sharedApi();
      const proc = new Process(freshDir(), k);
      if (how !== 'kept' && dry.points[k - 1] !== 'journal.before-sync') continue;
      runs++;
      const where = `crash ${k} at ${dry.points[k - 1]} (${how})`;
      const acks: Acks = { held: new Map(), released: new Set() };
      const ipam = new NodeIpam({
        node: 'n1',
        stateDir: proc.dir,
        api: proc.api(api),
        fault: proc.fault,
        compactAfterLines: 3,
      });
      try {
        await ipam.start();
        await workload(ipam, acks);
        t.fail(`${where}: the workload finished without crashing`);
      } catch (e) {
        if (!proc.dead) throw e;
      }
      await ipam.close().catch(() => {});
      if (how !== 'kept') await proc.loseUnsyncedWrite(how);

      // The next process.
      const next = new NodeIpam({ node: 'n1', stateDir: proc.dir, api, compactAfterLines: 3 });
      await next.start();
      for (const [handle, address] of acks.held) {
        t.is(next.find(handle)?.address, address, `${where}: ${handle} keeps ${address}`);
      }
      for (const handle of acks.released)
        t.is(next.find(handle), null, `${where}: ${handle} stays released`);
      checkNoDuplicates(t, next.blocks(), where);
      await next.sync();
      const mine = api.blocks().filter((b) => b.node === 'n1');
      t.deepEqual(summary(mine), summary(next.blocks()), `${where}: the API mirrors the journal`);

      // It finishes the work, and the end state is consistent too.
      await workload(next, acks);
      checkNoDuplicates(t, next.blocks(), `${where}, finished`);
      t.deepEqual(
        summary(api.blocks()),
        summary(next.blocks()),
        `${where}, finished: API = journal`,
      );
      await next.close();
    }
  }
  t.log(`${total} crash points, ${runs} crash runs`);
});

// --- the named moments ----------------------------------------------------------------------

async function run(dir: string, api: BlockApi, fault?: (p: string) => void): Promise<NodeIpam> {
  const ipam = new NodeIpam({ node: 'n1', stateDir: dir, api, ...(fault ? { fault } : {}) });
  await ipam.start();
  return ipam;
}

test('journal written, API not yet synced: the restart replays it and pushes it', async (t) => {
  const api = sharedApi();
  const dir = freshDir();
  const first = await run(dir, api);
  const a = await first.allocate(req('a'));
  const b = await first.allocate(req('b'));
  // The process dies here: no sync, no close.
  t.deepEqual(summary(api.blocks()), { [a.block]: {} });
  const second = await run(dir, api); // start() replays and syncs
  t.is(second.find(h('a'))?.address, a.address);
  t.is(second.find(h('b'))?.address, b.address);
  t.deepEqual(summary(api.blocks()), { [a.block]: { [h('a')]: a.address, [h('b')]: b.address } });
  const c = await second.allocate(req('c'));
  t.false([a.address, b.address].includes(c.address));
  await second.close();
  await first.close();
});

test('API synced, died before compaction: the restart finds the same state and nothing to push', async (t) => {
  const api = sharedApi();
  const dir = freshDir();
  const first = await run(dir, api);
  for (let i = 0; i < 10; i++) {
    await first.allocate(req(`x${i}`));
    if (i % 2) await first.release(h(`x${i}`));
  }
  await first.sync();
  const before = summary(first.blocks());
  const second = new NodeIpam({ node: 'n1', stateDir: dir, api });
  await second.start();
  t.deepEqual(summary(second.blocks()), before);
  t.like(await second.sync(), { updated: 0, created: 0, deleted: 0 });
  await second.close();
  await first.close();
});

test('died after creating a block, before journaling the claim: the restart adopts it, no second claim', async (t) => {
  const api = sharedApi();
  const dir = freshDir();
  const proc = new Process(dir);
  const first = await run(dir, proc.api(api), (p) => {
    if (p === 'claim.created') {
      proc.dead = true;
      throw new Crash(p);
    }
  });
  await t.throwsAsync(first.allocate(req('a')), { instanceOf: Crash });
  await first.close();
  t.is(api.blocks().length, 1, 'the object was created');
  const second = await run(dir, api);
  t.is(second.blocks().length, 1, 'adopted');
  const a = await second.allocate(req('a'));
  t.is(api.blocks().length, 1, 'no second block claimed');
  t.is(a.block, api.blocks()[0]?.cidr ?? '');
  await second.close();
});

test('block given back, died before deleting its object: the restart never allocates from it and deletes it', async (t) => {
  const api = sharedApi();
  const dir = freshDir();
  const first = await run(dir, api);
  const got = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => first.allocate(req(id))));
  const blocks = [...new Set(got.map((g) => g.block))];
  t.is(blocks.length, 2);
  await first.sync();
  // e is alone in the second block; its pod goes; GC gives the block back, then the process dies.
  const live = new Set(['a', 'b', 'c', 'd'].map((p) => `default/pod-${p}`));
  const gc = await first.collectGarbage({ uids: new Set(), names: live }, 0);
  t.deepEqual(gc, { releasedHandles: [h('e')], releasedBlocks: [blocks[1] ?? ''] });
  t.is(api.blocks().length, 2, 'the object is still there');

  const second = await run(dir, api); // start() syncs, which finishes the delete
  t.deepEqual(
    api.blocks().map((b) => b.cidr),
    [blocks[0]],
  );
  await second.release(h('a'));
  const next = await second.allocate(req('f'));
  t.is(next.block, blocks[0] ?? '');
  await second.close();
  await first.close();
});

test('a lost journal: the API copy is adopted, and its addresses are not handed out again', async (t) => {
  const api = sharedApi();
  const dir = freshDir();
  const first = await run(dir, api);
  const a = await first.allocate(req('a'));
  const b = await first.allocate(req('b'));
  await first.sync();
  await first.close();
  await rm(dir, { recursive: true, force: true });
  const second = await run(dir, api);
  t.is(second.find(h('a'))?.address, a.address);
  t.is(second.find(h('b'))?.address, b.address);
  const c = await second.allocate(req('c'));
  t.false([a.address, b.address].includes(c.address));
  await second.close();
});

test("a held block deleted behind the node's back is re-created with its allocations", async (t) => {
  const api = sharedApi();
  const ipam = await run(freshDir(), api);
  const a = await ipam.allocate(req('a'));
  await ipam.sync();
  api.removeBlock(api.blocks()[0]?.name ?? '');
  t.like(await ipam.sync(), { created: 1 });
  t.deepEqual(summary(api.blocks()), { [a.block]: { [h('a')]: a.address } });
  await ipam.close();
});

test('a held block now held by another node is marked lost and never allocated from again', async (t) => {
  const api = sharedApi();
  const ipam = await run(freshDir(), api);
  const a = await ipam.allocate(req('a'));
  await ipam.sync();
  const name = api.blocks()[0]?.name ?? '';
  api.removeBlock(name);
  api.putRawBlock(name, { cidr: a.block, pool: 'tiny', node: 'n2', allocations: {} });
  t.like(await ipam.sync(), { lost: [a.block] });
  t.like(ipam.usage().blocks, [{ cidr: a.block, state: 'lost' }]);
  const b = await ipam.allocate(req('b'));
  t.not(b.block, a.block);
  await ipam.close();
});
