import test from 'ava';
import { Reconciler } from './reconciler.ts';
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
