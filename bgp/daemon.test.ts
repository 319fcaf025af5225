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

function setup(replies: Record<string, Partial<RunResult>> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'wmb-unit-'));
  const calls: string[] = [];
  const state = { rejectCheck: false };
  const runner: Runner = {
    async run(argv: readonly string[], options?: RunOptions) {
      if (argv[1] === '-p' && state.rejectCheck)
        return { stdout: '', stderr: 'bird: x.conf:3:1 syntax error\n', code: 1 };
      const cmd = argv.slice(argv[1] === '-s' ? 3 : 1).join(' ');
      calls.push(`${argv[0]?.split('/').pop()} ${cmd}`);
      const reply: RunResult = { stdout: '', stderr: '', code: 0, ...replies[cmd] };
      if (cmd === 'show status') reply.stdout = 'BIRD 2.0.12 ready.\nDaemon is up and running\n';
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
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: true, started: true });
  t.is(s.calls[0]?.replace(/-c \S+/, '-c TMP'), 'bird -p -c TMP');
  t.deepEqual(s.spawned[0]?.slice(0, 6), ['ip', 'netns', 'exec', 'ns1', '/usr/sbin/bird', '-f']);
  t.is(s.daemon.pid, 4242);
  t.deepEqual(await s.daemon.apply(GOLDEN.mesh), { changed: false, started: false });
  t.false(s.calls.includes('birdc configure'));
  t.deepEqual(await s.daemon.apply({ ...GOLDEN.mesh, kernelMetric: 2048 }), {
    changed: true,
    started: false,
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
