// The netlink worker's supervision against a scripted fake process: requests and
// replies, a worker that dies with requests in flight, one that hangs, one that is
// missing or speaks another protocol. (The real worker: podnet.netns.test.ts.)
import test from 'ava';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import { NetlinkWorker, WiringUnavailableError, NETLINKD_PROTOCOL } from './netlinkd.ts';
import { CommandError } from '../sys/index.ts';

/** A fake worker process: what the supervisor writes arrives as parsed requests. */
class FakeProc extends EventEmitter {
  static nextPid = 1000;
  readonly pid = FakeProc.nextPid++;
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly requests: Record<string, unknown>[] = [];
  readonly signals: string[] = [];
  onRequest: (req: Record<string, unknown>) => void = () => {};
  constructor() {
    super();
    createInterface({ input: this.stdin }).on('line', (l) => {
      const req = JSON.parse(l) as Record<string, unknown>;
      this.requests.push(req);
      this.onRequest(req);
    });
    this.stdin.on('finish', () => this.exit(0, null));
  }
  ready(protocol = NETLINKD_PROTOCOL): void {
    this.stdout.write(JSON.stringify({ ready: true, protocol }) + '\n');
  }
  reply(body: Record<string, unknown>): void {
    this.stdout.write(JSON.stringify(body) + '\n');
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.signals.push(signal);
    setImmediate(() => this.exit(null, signal));
    return true;
  }
  exit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.listenerCount('exit')) this.emit('exit', code, signal);
  }
}

function harness(opts: { requestTimeoutMs?: number; autoReady?: boolean; protocol?: number } = {}) {
  const procs: FakeProc[] = [];
  const log: string[] = [];
  const worker = new NetlinkWorker({
    binary: '/nonexistent/wiremesh-netlinkd',
    minBackoffMs: 1,
    maxBackoffMs: 2,
    startTimeoutMs: 2_000,
    requestTimeoutMs: opts.requestTimeoutMs ?? 2_000,
    log: (msg) => log.push(msg),
    spawnWorker: () => {
      const p = new FakeProc();
      procs.push(p);
      if (opts.autoReady !== false) setImmediate(() => p.ready(opts.protocol));
      return p;
    },
  });
  const last = () => {
    const p = procs.at(-1);
    if (!p) throw new Error('no worker was spawned');
    return p;
  };
  return { worker, procs, log, last };
}

const spec = {
  netns: '/run/netns/pod',
  podIfName: 'eth0',
  hostIfName: 'wm0123456789a',
  addresses: ['100.64.0.5'],
  mtu: 1420,
  owner: 'wiremesh.c1.eth0',
};

test('setup sends one request with the chosen MACs and resolves with them on ok', async (t) => {
  const { worker, last } = harness();
  await worker.start();
  last().onRequest = (req) => last().reply({ id: req.id });
  const r = await worker.setup(spec);
  const [req] = last().requests;
  t.like(req, {
    op: 'setup',
    netns: '/run/netns/pod',
    hostIf: 'wm0123456789a',
    podIf: 'eth0',
    addresses: ['100.64.0.5'],
    mtu: 1420,
    owner: 'wiremesh.c1.eth0',
    hostMac: r.hostMac,
    podMac: r.podMac,
  });
  t.not(r.hostMac, r.podMac);
  await worker.stop();
});

test("a worker's error reply fails that request only, with the worker's message", async (t) => {
  const { worker, last } = harness();
  await worker.start();
  last().onRequest = (req) =>
    last().reply(
      req.hostIf === 'bad'
        ? { id: req.id, error: 'creating veth bad: file exists' }
        : { id: req.id },
    );
  const [bad, good] = await Promise.allSettled([
    worker.teardown('bad'),
    worker.teardown('good', 'x'),
  ]);
  t.is(bad.status, 'rejected');
  t.regex(String((bad as PromiseRejectedResult).reason), /creating veth bad: file exists/);
  t.false((bad as PromiseRejectedResult).reason instanceof WiringUnavailableError);
  t.is(good.status, 'fulfilled');
  await worker.stop();
});

test('check turns the reported facts into problems', async (t) => {
  const { worker, last } = harness();
  await worker.start();
  last().onRequest = (req) =>
    last().reply({
      id: req.id,
      facts: {
        hostLink: true,
        netns: true,
        podLink: true,
        podAddrs: [],
        hostRoutes: ['100.64.0.5'],
        podGateway4: '169.254.1.1',
      },
    });
  t.deepEqual(await worker.check(spec), ['address 100.64.0.5 is missing on eth0']);
  await worker.stop();
});

test('a worker dying with requests in flight fails them as unavailable; a new worker serves the next', async (t) => {
  const { worker, procs, log, last } = harness();
  await worker.start();
  const first = last();
  const inFlight = [worker.setup(spec), worker.teardown('wm1')];
  await new Promise((r) => setImmediate(r));
  t.is(first.requests.length, 2);
  first.exit(null, 'SIGKILL');
  for (const p of inFlight) {
    const e = await t.throwsAsync(p);
    t.true(e instanceof WiringUnavailableError);
    t.regex(e?.message ?? '', /exited with signal SIGKILL while .* was in flight/);
  }
  // The next request waits for the restarted worker.
  const next = worker.teardown('wm2');
  await new Promise((r) => setTimeout(r, 20));
  t.is(procs.length, 2);
  last().reply({ id: last().requests[0]?.id });
  await next;
  t.is(worker.restarts, 1);
  t.true(log.includes('netlink worker exited; restarting it'));
  await worker.stop();
});

test('a request the worker never answers fails after the timeout, and the stuck worker is killed and replaced', async (t) => {
  const { worker, procs, last } = harness({ requestTimeoutMs: 30 });
  await worker.start();
  const stuck = last();
  const e = await t.throwsAsync(worker.setup(spec));
  t.true(e instanceof WiringUnavailableError);
  t.regex(e?.message ?? '', /did not finish wiring wm0123456789a within 30 ms/);
  t.deepEqual(stuck.signals, ['SIGKILL']);
  await new Promise((r) => setTimeout(r, 20));
  t.is(procs.length, 2);
  await worker.stop();
});

test('requests during a restart that does not come back fail after startTimeoutMs, never hang', async (t) => {
  const procs: FakeProc[] = [];
  const worker = new NetlinkWorker({
    binary: '/x',
    minBackoffMs: 1,
    startTimeoutMs: 40,
    spawnWorker: () => {
      const p = new FakeProc();
      if (procs.length === 0) setImmediate(() => p.ready());
      procs.push(p);
      return p; // later workers never become ready
    },
  });
  await worker.start();
  procs[0]?.exit(1, null);
  const e = await t.throwsAsync(worker.teardown('wm1'));
  t.true(e instanceof WiringUnavailableError);
  t.regex(
    e?.message ?? '',
    /restarting \(pid \d+ exited with code 1\) and was not back within 40 ms/,
  );
  t.true(procs.length >= 2, 'a restart was attempted');
  await worker.stop();
});

test('start fails naming the binary when it is missing', async (t) => {
  const worker = new NetlinkWorker({ binary: '/nonexistent/wiremesh-netlinkd' });
  const e = await t.throwsAsync(worker.start());
  t.regex(e?.message ?? '', /wiremesh-netlinkd was not found at \/nonexistent\/wiremesh-netlinkd/);
  t.regex(e?.message ?? '', /make deps/);
});

test('start fails when the worker speaks another protocol', async (t) => {
  const { worker } = harness({ protocol: 99 });
  const e = await t.throwsAsync(worker.start());
  t.regex(e?.message ?? '', new RegExp(`speaks protocol 99, not ${NETLINKD_PROTOCOL}`));
});

test('after stop(), requests fail as unavailable at once', async (t) => {
  const { worker } = harness();
  await worker.start();
  await worker.stop();
  const e = await t.throwsAsync(worker.teardown('wm1'));
  t.true(e instanceof WiringUnavailableError);
});

test('run: a command goes to the worker with its env and input; its pid is told before its exit', async (t) => {
  const { worker, last } = harness({ requestTimeoutMs: 30 });
  await worker.start();
  const events: string[] = [];
  last().onRequest = (req) => {
    last().reply({ id: req.id, started: 4242 });
    // Later than the stuck timer of pod requests: a command may take its time.
    setTimeout(
      () => last().reply({ id: req.id, exit: { code: 0, stdout: 'out', stderr: '' } }),
      80,
    );
  };
  const r = await worker.run(['nft', '-f', '-'], {
    input: 'add table inet x',
    env: { PATH: '/usr/sbin', UNSET: undefined },
    timeoutMs: 5_000,
    onSpawn: (pid) => events.push(`spawned ${pid}`),
  });
  events.push('done');
  t.deepEqual(r, { stdout: 'out', stderr: '', code: 0 });
  t.deepEqual(events, ['spawned 4242', 'done']);
  t.like(last().requests[0], {
    op: 'exec',
    argv: ['nft', '-f', '-'],
    env: ['PATH=/usr/sbin'],
    input: 'add table inet x',
    timeoutMs: 5_000,
  });
  t.deepEqual(last().signals, [], 'the worker was not taken for stuck');
  await worker.stop();
});

test('run: exit codes, signals, timeouts and start failures become the same errors a spawn gives', async (t) => {
  const { worker, last } = harness();
  await worker.start();
  const exits: Record<string, Record<string, unknown>> = {
    fail: { exit: { code: 4, stdout: '', stderr: 'bad\n' } },
    killed: { exit: { code: -1, signal: 'SIGTERM', stdout: '', stderr: '' } },
    slow: { exit: { code: -1, signal: 'SIGKILL', stdout: '', stderr: '', timedOut: true } },
    missing: { error: 'exec: "missing": executable file not found in $PATH' },
  };
  last().onRequest = (req) =>
    last().reply({ id: req.id, ...exits[(req.argv as string[])[0] ?? ''] });
  const fail = await t.throwsAsync(worker.run(['fail']), { instanceOf: CommandError });
  t.is(fail?.code, 4);
  t.regex(fail?.message ?? '', /^fail: exit code 4: bad/);
  t.is((await worker.run(['fail'], { allowFailure: true })).code, 4);
  await t.throwsAsync(worker.run(['killed']), { message: /killed by SIGTERM/ });
  await t.throwsAsync(worker.run(['slow'], { timeoutMs: 100 }), {
    message: /timed out after 100 ms/,
  });
  await t.throwsAsync(worker.run(['missing']), { message: /cannot start .*not found/ });
  await worker.stop();
});

test('run: a worker dying while a command runs fails it as a CommandError whose outcome is unknown', async (t) => {
  const { worker, last } = harness();
  await worker.start();
  t.true(worker.running());
  const pending = worker.run(['ip', 'route', 'replace', '10.0.0.0/24', 'dev', 'x']);
  await new Promise((r) => setImmediate(r));
  last().exit(null, 'SIGKILL');
  const e = await t.throwsAsync(pending, { instanceOf: CommandError });
  t.regex(e?.message ?? '', /through the netlink worker: .*SIGKILL.*outcome is unknown/);
  t.false(worker.running(), 'not running until the restart is ready');
  await worker.stop();
});
