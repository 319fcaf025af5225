// BirdDaemon against a scripted runner and a fake process: which commands it runs
// when, that a text BIRD rejects never replaces bird.conf, and that BIRD's own words
// reach the error. The real BIRD is in bird.netns.test.ts.
import test from 'ava';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunOptions, RunResult, Runner } from '../sys/index.ts';
import { BirdDaemon } from './daemon.ts';
import { GOLDEN } from './golden.ts';

class FakeBird extends EventEmitter {
  readonly pid = 4242;
  readonly stdout = null;
  readonly stderr = null;
  kill(): boolean {
    setImmediate(() => this.emit('exit', 0, null));
    return true;
  }
}

function setup(replies: Record<string, Partial<RunResult>> = {}, external = false) {
  const dir = mkdtempSync(join(tmpdir(), 'wmb-unit-'));
  const calls: string[] = [];
  const state = { rejectCheck: false, down: false };
  const runner: Runner = {
    async run(argv: readonly string[], options?: RunOptions) {
      if (argv[1] === '-p' && state.rejectCheck)
        return { stdout: '', stderr: 'bird: x.conf:3:1 syntax error\n', code: 1 };
      const cmd = argv.slice(argv[1] === '-s' ? 3 : 1).join(' ');
      calls.push(`${argv[0]?.split('/').pop()} ${cmd}`);
      const reply: RunResult = { stdout: '', stderr: '', code: 0, ...replies[cmd] };
      if (cmd === 'show status' && state.down)
        Object.assign(reply, { code: 1, stderr: 'Unable to connect to server control socket' });
      else if (cmd === 'show status')
        reply.stdout = 'BIRD 2.0.12 ready.\nDaemon is up and running\n';
      if (reply.code !== 0 && !options?.allowFailure) throw new Error(`${cmd} failed`);
      return reply;
    },
  };
  const spawned: string[][] = [];
  const daemon = new BirdDaemon({
    configPath: join(dir, 'bird.conf'),
    socketPath: join(dir, 'bird.ctl'),
    runner,
    netns: 'ns1',
    external,
    spawnProcess: (argv) => {
      spawned.push([...argv]);
      return new FakeBird();
    },
  });
  return { dir, calls, spawned, daemon, state, cleanup: () => rmSync(dir, { recursive: true }) };
}

test('first apply checks, writes and starts; the same plan again does nothing', async (t) => {
  const s = setup({ configure: { stdout: 'BIRD 2.0.12 ready.\nReconfigured\n' } });
  t.teardown(s.cleanup);
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: true, started: true, running: true });
  t.is(s.calls[0]?.replace(/-c \S+/, '-c TMP'), 'bird -p -c TMP');
  t.deepEqual(s.spawned[0]?.slice(0, 6), ['ip', 'netns', 'exec', 'ns1', '/usr/sbin/bird', '-f']);
  t.is(s.daemon.pid, 4242);
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: false, started: false, running: true });
  t.false(s.calls.includes('birdc configure'));
  t.deepEqual(await s.daemon.apply({ ...GOLDEN.mesh, kernelMetric: 2048 }), {
    changed: true,
    started: false,
    running: true,
  });
  t.is(s.calls.at(-1), 'birdc configure');
  t.regex(readFileSync(join(s.dir, 'bird.conf'), 'utf8'), /metric 2048;/);
  await s.daemon.stop();
  t.is(s.daemon.pid, undefined);
});

test('a text BIRD rejects never replaces bird.conf', async (t) => {
  const s = setup();
  t.teardown(s.cleanup);
  await s.daemon.apply(GOLDEN.mesh);
  const before = readFileSync(join(s.dir, 'bird.conf'), 'utf8');
  s.state.rejectCheck = true;
  await t.throwsAsync(s.daemon.apply({ ...GOLDEN.mesh, kernelMetric: 7 }), {
    message: /BIRD rejects the configuration .*: bird: x\.conf:3:1 syntax error/,
  });
  t.is(readFileSync(join(s.dir, 'bird.conf'), 'utf8'), before);
  t.false(existsSync(join(s.dir, `bird.conf.${process.pid}.tmp`)));
  await s.daemon.stop();
});

test("a refused reconfiguration throws with BIRD's message", async (t) => {
  const s = setup({
    configure: {
      stdout: 'BIRD 2.0.12 ready.\nReading configuration from bird.conf\n',
      stderr: 'bird.conf:148:10 syntax error, unexpected CF_SYM_UNDEFINED\n',
      code: 1,
    },
  });
  t.teardown(s.cleanup);
  await s.daemon.apply(GOLDEN.mesh);
  await t.throwsAsync(s.daemon.apply(GOLDEN.client), {
    message: /birdc -s \S+ configure: BIRD did not reconfigure: bird\.conf:148:10 syntax error/,
  });
  await s.daemon.stop();
});

test('an invalid plan fails before anything runs', async (t) => {
  const s = setup();
  t.teardown(s.cleanup);
  await t.throwsAsync(s.daemon.apply({ ...GOLDEN.mesh, localAS: 0, neighbors: [] }), {
    message: /^invalid BGP plan: localAS 0/,
  });
  t.deepEqual(s.calls, []);
});

const RECONFIGURED = { configure: { stdout: 'BIRD 2.0.12 ready.\nReconfigured\n' } };

test('external: writes the file for the BIRD another process runs, never starts or ends it', async (t) => {
  const s = setup(RECONFIGURED, true);
  t.teardown(s.cleanup);
  s.state.down = true;
  // Not running yet: the file is there for it to start on, and the caller is told.
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: true, started: false, running: false });
  t.true(existsSync(join(s.dir, 'bird.conf')));
  t.deepEqual(s.spawned, []);
  t.false(s.calls.includes('birdc configure'));
  s.state.down = false;
  // Now it runs: the same text is handed to it once (it may have started on an older file).
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: false, started: false, running: true });
  t.is(s.calls.filter((c) => c === 'birdc configure').length, 1);
  await s.daemon.apply(GOLDEN.mesh);
  t.is(s.calls.filter((c) => c === 'birdc configure').length, 1);
  await s.daemon.stop();
  t.deepEqual(s.spawned, []);
  await t.throwsAsync(s.daemon.ensureRunning(), { message: /another process/ });
  // BGP turned off: the file goes, which is what stops the other process's BIRD.
  t.true(await s.daemon.removeConfig());
  t.false(existsSync(join(s.dir, 'bird.conf')));
  t.false(await s.daemon.removeConfig());
});

test('a BIRD left by an earlier agent on the same text is still told to reload once', async (t) => {
  const s = setup(RECONFIGURED, true);
  t.teardown(s.cleanup);
  const first = new BirdDaemon({
    configPath: join(s.dir, 'bird.conf'),
    socketPath: join(s.dir, 'bird.ctl'),
    runner: { run: async () => ({ stdout: '', stderr: '', code: 0 }) },
    external: true,
  });
  await first.apply(GOLDEN.mesh);
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: false, started: false, running: true });
  t.deepEqual(
    s.calls.filter((c) => c === 'birdc configure'),
    ['birdc configure'],
  );
});

test('a reload that failed is asked for again on the next apply of the same text', async (t) => {
  const s = setup({ configure: { stdout: 'BIRD 2.0.12 ready.\n', stderr: 'timeout', code: 1 } });
  t.teardown(s.cleanup);
  await s.daemon.apply(GOLDEN.mesh);
  await t.throwsAsync(s.daemon.apply({ ...GOLDEN.mesh, kernelMetric: 7 }), {
    message: /did not reconfigure/,
  });
  const configures = () => s.calls.filter((c) => c === 'birdc configure').length;
  t.is(configures(), 1);
  await t.throwsAsync(s.daemon.apply({ ...GOLDEN.mesh, kernelMetric: 7 }));
  t.is(configures(), 2);
  await s.daemon.stop();
});

test('ensureRunning starts BIRD on the file as it is, once', async (t) => {
  const s = setup();
  t.teardown(s.cleanup);
  await s.daemon.apply(GOLDEN.mesh);
  await s.daemon.stop();
  t.is(s.daemon.pid, undefined);
  t.true(await s.daemon.ensureRunning());
  t.false(await s.daemon.ensureRunning());
  t.is(s.spawned.length, 2);
  await s.daemon.stop();
});
