import test from 'ava';
import { ReconcileLanes, Reconciler } from './reconciler.ts';
import { silentLogger } from './log.ts';

function manualTimers() {
  const timers: { fn: () => void; ms: number }[] = [];
  return {
    timers,
    setTimer: (fn: () => void, ms: number) => {
      const t = { fn, ms };
      timers.push(t);
      return t;
    },
    clearTimer: (h: unknown) => {
      const i = timers.indexOf(h as { fn: () => void; ms: number });
      if (i >= 0) timers.splice(i, 1);
    },
  };
}

test('nothing runs before start', async (t) => {
  let passes = 0;
  const r = new Reconciler(async () => void passes++, {
    resyncMs: 1000,
    log: silentLogger,
    ...manualTimers(),
  });
  r.schedule('event');
  await r.idle();
  t.is(passes, 0);
});

test('events during a pass coalesce into one more pass', async (t) => {
  let passes = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const r = new Reconciler(
    async () => {
      passes++;
      if (passes === 1) await gate;
    },
    { resyncMs: 1000, log: silentLogger, ...manualTimers() },
  );
  r.start();
  for (let i = 0; i < 50; i++) r.schedule('event');
  release();
  await new Promise((res) => setImmediate(res));
  await r.idle();
  t.is(passes, 2);
});

test('a failed pass is retried with growing backoff, then resync resumes', async (t) => {
  const timers = manualTimers();
  let fail = 2;
  const r = new Reconciler(
    async () => {
      if (fail-- > 0) throw new Error('boom');
    },
    { resyncMs: 30_000, minBackoffMs: 100, maxBackoffMs: 1000, log: silentLogger, ...timers },
  );
  r.start();
  await r.idle();
  t.is(r.stats.lastError, 'boom');
  t.deepEqual(
    timers.timers.map((x) => x.ms),
    [100],
  );
  timers.timers[0]?.fn();
  await r.idle();
  t.deepEqual(
    timers.timers.map((x) => x.ms),
    [200],
  );
  timers.timers[0]?.fn();
  await r.idle();
  t.is(r.stats.lastError, null);
  t.is(r.stats.failures, 2);
  t.deepEqual(
    timers.timers.map((x) => x.ms),
    [30_000],
  );
});

test('stop cancels the resync timer', async (t) => {
  const timers = manualTimers();
  const r = new Reconciler(async () => {}, { resyncMs: 1000, log: silentLogger, ...timers });
  r.start();
  await r.idle();
  t.is(timers.timers.length, 1);
  r.stop();
  t.is(timers.timers.length, 0);
});

test('a pass runs only the phases asked for; start, resync and retries run all', async (t) => {
  const seen: string[] = [];
  let fail = false;
  const timers = manualTimers();
  const r = new Reconciler(
    async (dirty) => {
      seen.push(dirty.all ? 'all' : [...dirty].sort().join('+'));
      if (fail) throw new Error('boom');
    },
    { resyncMs: 1000, log: silentLogger, ...timers },
  );
  r.start();
  await r.idle();
  r.schedule('label changed', 'policy');
  await r.idle();
  r.schedule('node changed', 'mesh');
  r.schedule('policy changed', 'policy');
  await r.idle();
  fail = true;
  r.schedule('label changed', 'policy');
  await r.idle();
  fail = false;
  timers.timers.at(-1)?.fn();
  await r.idle();
  // The mesh schedule starts a pass at once; the policy one, arriving during it, runs next.
  t.deepEqual(seen, ['all', 'policy', 'mesh', 'policy', 'policy', 'all']);
});

test('progress: the running pass, the last end, and successes of full passes only', async (t) => {
  let clock = 1000;
  let release!: () => void;
  let fail = true;
  const seen: (number | null)[] = [];
  const r = new Reconciler(
    async (dirty) => {
      seen.push(r.progress.passStartedAt);
      if (!dirty.all) await new Promise<void>((res) => (release = res));
      if (fail) throw new Error('boom');
    },
    {
      resyncMs: 30_000,
      maxBackoffMs: 60_000,
      log: silentLogger,
      now: () => clock,
      ...manualTimers(),
    },
  );
  t.like(r.progress, { running: false, passStartedAt: null, longestIdleMs: 60_000 });
  r.start();
  await r.idle();
  t.like(r.progress, { running: true, lastPassEndedAt: 1000, lastFullSuccessAt: null });
  clock = 2000;
  fail = false;
  r.schedule('retry'); // a retry runs every phase
  await r.idle();
  t.like(r.progress, { passStartedAt: null, lastPassEndedAt: 2000, lastFullSuccessAt: 2000 });
  clock = 3000;
  r.schedule('pod label', 'policy');
  t.is(r.progress.passStartedAt, 3000);
  clock = 4000;
  release();
  await r.idle();
  // A pass of one phase does not count as a full one.
  t.like(r.progress, { passStartedAt: null, lastPassEndedAt: 4000, lastFullSuccessAt: 2000 });
  t.deepEqual(seen, [1000, 2000, 3000]);
  r.stop();
  t.false(r.progress.running);
});

test('lanes: a policy change never waits behind a long mesh pass', async (t) => {
  const seen: string[] = [];
  let releaseMesh!: () => void;
  const meshGate = new Promise<void>((r) => (releaseMesh = r));
  const lanes = new ReconcileLanes(
    [
      {
        name: 'dataplane',
        phases: ['routes', 'mesh'],
        pass: async (dirty) => {
          seen.push(`dataplane:${dirty.all ? 'all' : [...dirty].sort().join('+')}`);
          await meshGate;
        },
      },
      {
        name: 'policy',
        phases: ['policy', 'nftables'],
        pass: async (dirty) => void seen.push(`policy:${dirty.all ? 'all' : [...dirty].join('+')}`),
      },
    ],
    { resyncMs: 1000, log: silentLogger, ...manualTimers() },
  );
  const observed: string[] = [];
  lanes.observe((phases, _ms, _error, loop) => observed.push(`${loop}:${phases.join('+')}`));
  lanes.start();
  await new Promise((r) => setImmediate(r));
  lanes.schedule('label changed', 'policy');
  await new Promise((r) => setImmediate(r));
  // The mesh's full pass still runs; the policy loop has done its own and the change.
  t.deepEqual(seen, ['dataplane:all', 'policy:all', 'policy:policy']);
  t.not(lanes.progress.passStartedAt, null, 'the running mesh pass shows in progress');
  t.is(lanes.progress.lastFullSuccessAt, null, 'not every loop has succeeded a full pass');
  releaseMesh();
  await lanes.idle();
  t.deepEqual(observed.sort(), ['dataplane:all', 'policy:all', 'policy:policy']);
  t.not(lanes.progress.lastFullSuccessAt, null);
  t.is(lanes.stats.passes, 3);
  t.throws(() => lanes.schedule('typo', 'polcy'), { message: /no reconcile loop owns/ });
  lanes.stop();
});

test('lanes: a schedule without a phase runs every loop; a failure is the stats lastError until its loop recovers', async (t) => {
  const timers = manualTimers();
  let failPolicy = true;
  const runs = { dataplane: 0, policy: 0 };
  const lanes = new ReconcileLanes(
    [
      { name: 'dataplane', phases: ['mesh'], pass: async () => void runs.dataplane++ },
      {
        name: 'policy',
        phases: ['policy'],
        pass: async () => {
          runs.policy++;
          if (failPolicy) throw new Error('nft failed');
        },
      },
    ],
    { resyncMs: 30_000, minBackoffMs: 100, log: silentLogger, ...timers },
  );
  lanes.start();
  await lanes.idle();
  t.is(lanes.stats.lastError, 'nft failed');
  t.is(lanes.stats.failures, 1);
  t.is(lanes.progress.lastFullSuccessAt, null, 'the policy loop has not succeeded');
  lanes.schedule('mesh changed', 'mesh');
  await lanes.idle();
  t.is(lanes.stats.lastError, 'nft failed', 'a later success of another loop does not hide it');
  failPolicy = false;
  lanes.schedule('resync requested');
  await lanes.idle();
  t.deepEqual(runs, { dataplane: 3, policy: 2 });
  t.is(lanes.stats.lastError, null);
  t.not(lanes.progress.lastFullSuccessAt, null);
  lanes.stop();
  t.is(timers.timers.length, 0, 'stop cancels every loop timer');
});

test('lanes: one phase in two loops is refused', (t) => {
  const pass = async () => {};
  t.throws(
    () =>
      new ReconcileLanes(
        [
          { name: 'a', phases: ['mesh'], pass },
          { name: 'b', phases: ['mesh'], pass },
        ],
        { resyncMs: 1000, log: silentLogger },
      ),
    { message: /two loops/ },
  );
});
