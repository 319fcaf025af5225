import test from 'ava';
import { EventEmitter, once } from 'node:events';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  WireguardGoSupervisor,
  type Readiness,
  type WireguardGoOptions,
  type WireguardGoProcess,
} from './userspace.ts';

/** A stand-in for a wireguard-go child: exits when killed, unless told to ignore SIGTERM. */
class FakeProcess extends EventEmitter implements WireguardGoProcess {
  readonly pid: number;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly signals: NodeJS.Signals[] = [];
  ignoreTerm = false;
  constructor(pid: number) {
    super();
    this.pid = pid;
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.signals.push(signal);
    if (signal === 'SIGTERM' && this.ignoreTerm) return true;
    setImmediate(() => this.die(null, signal));
    return true;
  }
  die(code: number | null, signal: NodeJS.Signals | null = null): void {
    this.emit('exit', code, signal);
  }
}

interface Harness {
  supervisor: WireguardGoSupervisor;
  spawned: { argv: string[]; env: NodeJS.ProcessEnv; proc: FakeProcess }[];
  lines: string[];
  ready: Set<number>;
  clock: { now: number };
  /** Called with every new process, e.g. to make it crash at once. */
  onSpawn?: (proc: FakeProcess) => void;
}

/** A supervisor whose processes are fakes; a pid is ready once it is in `ready`. */
function harness(options: Partial<WireguardGoOptions> = {}, readyAtOnce = true): Harness {
  let nextPid = 100;
  const h: Harness = {
    spawned: [],
    lines: [],
    ready: new Set(),
    clock: { now: 1_000_000 },
    supervisor: new WireguardGoSupervisor({
      binary: '/opt/wireguard-go',
      iface: 'wiremesh.wg',
      log: (l) => h.lines.push(l),
      minBackoffMs: 5,
      maxBackoffMs: 20,
      startTimeoutMs: 300,
      stopGraceMs: 50,
      now: () => h.clock.now,
      spawnProcess: (argv, env) => {
        const proc = new FakeProcess(nextPid++);
        if (readyAtOnce) h.ready.add(proc.pid);
        h.spawned.push({ argv: [...argv], env, proc });
        h.onSpawn?.(proc);
        return proc;
      },
      probe: async (pid): Promise<Readiness> => ({
        socket: h.ready.has(pid),
        link: h.ready.has(pid),
      }),
      ...options,
    }),
  };
  return h;
}

const backoffDelays = (h: Harness) =>
  h.lines.flatMap((l) => {
    const m = /restarting in (\d+) ms/.exec(l);
    return m ? [Number(m[1])] : [];
  });

const last = <T>(xs: T[]): T => {
  const x = xs[xs.length - 1];
  if (x === undefined) throw new Error('empty');
  return x;
};

test('start spawns `wireguard-go -f IFACE` behind the prefix, in the foreground', async (t) => {
  const h = harness({ argvPrefix: ['ip', 'netns', 'exec', 'n1'], logLevel: 'verbose' });
  const started = once(h.supervisor, 'started');
  await h.supervisor.start();
  t.deepEqual(await started, [100]);
  t.is(h.supervisor.pid, 100);
  t.deepEqual(h.spawned[0]?.argv, [
    'ip',
    'netns',
    'exec',
    'n1',
    '/opt/wireguard-go',
    '-f',
    'wiremesh.wg',
  ]);
  t.is(h.spawned[0]?.env.WG_PROCESS_FOREGROUND, '1');
  t.is(h.spawned[0]?.env.LOG_LEVEL, 'verbose');
  await t.throwsAsync(h.supervisor.start(), { message: /already supervised/ });
  await h.supervisor.stop();
});

test('output goes to the log callback line by line', async (t) => {
  const h = harness();
  await h.supervisor.start();
  const proc = last(h.spawned).proc;
  proc.stderr.write('ERROR: (wiremesh.wg) one\nERROR: (wire');
  proc.stderr.write('mesh.wg) two\n');
  proc.stdout.write('DEBUG: three\n');
  await sleep(10);
  t.deepEqual(h.lines, ['ERROR: (wiremesh.wg) one', 'ERROR: (wiremesh.wg) two', 'DEBUG: three']);
  await h.supervisor.stop();
});

test('start waits for readiness and fails clearly when wireguard-go exits first', async (t) => {
  // A generous deadline: the exit must end the wait, not the clock (a loaded machine
  // may not run the sleeps below within a short one).
  const h = harness({ startTimeoutMs: 30_000 }, false);
  const starting = h.supervisor.start();
  await sleep(30);
  const proc = last(h.spawned).proc;
  proc.stderr.write('ERROR: (wiremesh.wg) Failed to create TUN device: device or resource busy\n');
  await sleep(5);
  proc.die(1);
  await t.throwsAsync(starting, {
    message:
      /wiremesh\.wg .*exited before it was ready \(exit code 1\); its last output: .*Failed to create TUN device: device or resource busy/,
  });
  t.is(h.supervisor.pid, undefined);
  await sleep(30);
  t.is(h.spawned.length, 1, 'a failed start is not retried');
});

test('start times out naming what is missing, and kills the process', async (t) => {
  const h = harness({ startTimeoutMs: 60 }, false);
  await t.throwsAsync(h.supervisor.start(), {
    message:
      /not ready within 60 ms: UAPI socket \/var\/run\/wireguard\/wiremesh\.wg\.sock does not answer, link wiremesh\.wg missing/,
  });
  t.deepEqual(last(h.spawned).proc.signals, ['SIGKILL']);
});

test('an unexpected exit is restarted and reported', async (t) => {
  const h = harness();
  const events: unknown[][] = [];
  h.supervisor.on('exited', (...a: unknown[]) => events.push(['exited', ...a]));
  h.supervisor.on('restarted', (...a: unknown[]) => events.push(['restarted', ...a]));
  await h.supervisor.start();
  const restarted = once(h.supervisor, 'restarted');
  last(h.spawned).proc.die(null, 'SIGKILL');
  t.deepEqual(await restarted, [101]);
  t.is(h.supervisor.pid, 101);
  t.is(h.supervisor.restarts, 1);
  t.deepEqual(events, [
    ['exited', null, 'SIGKILL'],
    ['restarted', 101],
  ]);
  await h.supervisor.stop();
});

test('restarts back off exponentially up to the maximum, and reset after a stable run', async (t) => {
  const h = harness();
  await h.supervisor.start();
  h.onSpawn = (proc) => {
    h.ready.delete(proc.pid); // every respawn dies at once, before it is ready
    setImmediate(() => proc.die(2));
  };
  last(h.spawned).proc.die(1);
  while (backoffDelays(h).length < 5) await sleep(2);
  await h.supervisor.stop();
  t.deepEqual(backoffDelays(h).slice(0, 5), [5, 10, 20, 20, 20]);
  t.true(
    h.lines.some((l) => /restarting wireguard-go for wiremesh.wg failed: .*exit code 2/.test(l)),
  );

  // A process that ran for stableAfterMs brings the backoff back to the minimum.
  const s = harness({ stableAfterMs: 30_000 });
  await s.supervisor.start();
  for (const ranFor of [1000, 1000, 31_000]) {
    s.clock.now += ranFor;
    const restarted = once(s.supervisor, 'restarted');
    last(s.spawned).proc.die(1);
    await restarted;
  }
  t.deepEqual(backoffDelays(s), [5, 10, 5]);
  t.is(s.supervisor.restarts, 3);
  await s.supervisor.stop();
});

test('stop sends SIGTERM, and nothing is restarted afterwards', async (t) => {
  const h = harness();
  await h.supervisor.start();
  const exited = once(h.supervisor, 'exited');
  await h.supervisor.stop();
  t.deepEqual(await exited, [null, 'SIGTERM']);
  t.deepEqual(h.spawned[0]?.proc.signals, ['SIGTERM']);
  await sleep(30);
  t.is(h.spawned.length, 1);
  t.is(h.supervisor.pid, undefined);
  t.is(h.supervisor.restarts, 0);
});

test('stop escalates to SIGKILL when SIGTERM is ignored', async (t) => {
  const h = harness();
  await h.supervisor.start();
  last(h.spawned).proc.ignoreTerm = true;
  await h.supervisor.stop();
  t.deepEqual(last(h.spawned).proc.signals, ['SIGTERM', 'SIGKILL']);
  t.true(h.lines.some((l) => /ignored SIGTERM; killing it/.test(l)));
});

test('stop during a restart backoff cancels the restart', async (t) => {
  const h = harness({ minBackoffMs: 50 });
  await h.supervisor.start();
  last(h.spawned).proc.die(1);
  await sleep(5);
  await h.supervisor.stop();
  await sleep(80);
  t.is(h.spawned.length, 1);
  t.is(h.supervisor.restarts, 0);
});

test('a supervisor can be started again after stop', async (t) => {
  const h = harness();
  await h.supervisor.start();
  await h.supervisor.stop();
  await h.supervisor.start();
  t.is(h.supervisor.pid, 101);
  await h.supervisor.stop();
});

test('a missing binary is named before anything is spawned', async (t) => {
  const s = new WireguardGoSupervisor({ binary: '/nonexistent/wireguard-go', iface: 'wg0' });
  await t.throwsAsync(s.start(), {
    message: 'wireguard-go binary not found at /nonexistent/wireguard-go',
  });
  t.throws(() => new WireguardGoSupervisor({ binary: 'x', iface: 'bad name' }), {
    message: /invalid interface name/,
  });
});
