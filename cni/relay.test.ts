// The real relay binary (cni/relay, built by hack/build-tools.sh) against a stand-in
// agent: a small HTTP server on a temporary unix socket that records what it got.
import test from 'ava';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ProcessRunner, type RunResult } from '../sys/exec.ts';
import { toolPath } from '../sys/host.ts';

const relay = toolPath('wiremesh-cni');
const runner = new ProcessRunner();

interface Received {
  method?: string;
  url?: string;
  body: { env: Record<string, string>; stdin: string };
}

interface FakeAgent {
  socket: string;
  received: Received[];
  close: () => Promise<void>;
}

type Answer = (req: IncomingMessage, res: ServerResponse) => void;

async function fakeAgent(answer: Answer, at?: string): Promise<FakeAgent> {
  const dir = await mkdtemp(join(tmpdir(), 'wm-relay-'));
  const socket = at ?? join(dir, 'cni.sock');
  const received: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as Received['body'];
      received.push({ method: req.method, url: req.url, body });
      answer(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    received,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const replyWith =
  (body: unknown, status = 200): Answer =>
  (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(typeof body === 'string' ? body : JSON.stringify(body));
  };

const cniEnv = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/cni-1234',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
  CNI_PATH: '/opt/cni/bin',
};
const config = '{"cniVersion":"0.4.0","name":"wiremesh","type":"wiremesh"}';

function runRelay(
  socket: string,
  input: string | Buffer,
  extraEnv: Record<string, string> = {},
): Promise<RunResult> {
  return runner.run([relay], {
    input,
    env: { ...cniEnv, WIREMESH_CNI_SOCKET: socket, HOME: '/root', ...extraEnv },
    allowFailure: true,
    timeoutMs: 15_000,
  });
}

interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

test('relays the CNI_ environment and stdin, prints the answer and exits with its code', async (t) => {
  const agent = await fakeAgent(replyWith({ code: 0, stdout: '{"cniVersion":"0.4.0"}\n' }));
  t.teardown(agent.close);
  const input = `${config}\n  \u00e9\u2603 "quoted"\n`;
  const r = await runRelay(agent.socket, input, { CNI_EXTRA: 'x=y;z' });
  t.is(r.code, 0);
  t.is(r.stdout, '{"cniVersion":"0.4.0"}\n');
  t.is(agent.received.length, 1);
  t.like(agent.received[0], { method: 'POST', url: '/cni' });
  t.deepEqual(agent.received[0]?.body, {
    env: { ...cniEnv, CNI_EXTRA: 'x=y;z' },
    stdin: input,
  });
});

test('the exit code and stdout are the agent’s, also for an error', async (t) => {
  const err = '{"cniVersion":"1.1.0","code":7,"msg":"Invalid Configuration"}';
  const agent = await fakeAgent(replyWith({ code: 1, stdout: err }));
  t.teardown(agent.close);
  const r = await runRelay(agent.socket, config, { CNI_COMMAND: 'DEL' });
  t.deepEqual([r.code, r.stdout], [1, err]);
  t.is(agent.received[0]?.body.env.CNI_COMMAND, 'DEL');
});

test('no agent: a CNI error with code 11 in the config’s cniVersion, after waiting for it', async (t) => {
  const socket = join(tmpdir(), `wm-relay-missing-${process.pid}.sock`);
  const start = performance.now();
  const r = await runRelay(socket, config, { WIREMESH_CNI_CONNECT_WAIT: '0.6' });
  const elapsed = performance.now() - start;
  t.true(elapsed >= 550, `waited ${elapsed.toFixed(0)} ms for the agent`);
  t.not(r.code, 0);
  const out = JSON.parse(r.stdout) as CniErrorJson;
  t.like(out, { cniVersion: '0.4.0', code: 11, msg: 'wiremesh agent not reachable' });
  t.is(out.details, `dial unix ${socket}: connect: no such file or directory`);
});

test('no agent and a config that does not parse: cniVersion 1.1.0', async (t) => {
  const r = await runRelay(join(tmpdir(), `wm-relay-missing-${process.pid}.sock`), '{"cniVers', {
    WIREMESH_CNI_CONNECT_WAIT: '0',
  });
  t.not(r.code, 0);
  t.like(JSON.parse(r.stdout), { cniVersion: '1.1.0', code: 11 });
});

test('an agent that starts while the relay waits (a node booting): the request goes through', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-relay-late-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socket = join(dir, 'cni.sock');
  const pending = runRelay(socket, config, { CNI_COMMAND: 'DEL' });
  await new Promise((r) => setTimeout(r, 800));
  const agent = await fakeAgent(replyWith({ code: 0, stdout: '' }), socket);
  t.teardown(agent.close);
  const r = await pending;
  t.deepEqual([r.code, r.stdout], [0, '']);
  t.is(agent.received[0]?.body.env.CNI_COMMAND, 'DEL');
});

test('an agent that never answers: code 11 after WIREMESH_CNI_TIMEOUT', async (t) => {
  const agent = await fakeAgent(() => {}); // reads the request, never replies
  t.teardown(agent.close);
  const start = performance.now();
  const r = await runRelay(agent.socket, config, { WIREMESH_CNI_TIMEOUT: '1' });
  const elapsed = performance.now() - start;
  t.log(`gave up after ${Math.round(elapsed)} ms`);
  t.not(r.code, 0);
  const out = JSON.parse(r.stdout) as CniErrorJson;
  t.like(out, { cniVersion: '0.4.0', code: 11 });
  t.is(out.details, `no answer from ${agent.socket} within 1s`);
  t.true(elapsed < 10_000, 'the timeout applies (generous bound for a loaded machine)');
});

const malformed = [
  ['not JSON', replyWith('<html>')],
  ['no stdout', replyWith({ code: 0 })],
  ['no code', replyWith({ stdout: '' })],
  ['a code beyond 255', replyWith({ code: 256, stdout: '' })],
  ['HTTP 500', replyWith({ code: 0, stdout: '' }, 500)],
] as const;
for (const [what, answer] of malformed) {
  test(`a malformed reply (${what}) is code 11, never success`, async (t) => {
    const agent = await fakeAgent(answer);
    t.teardown(agent.close);
    const r = await runRelay(agent.socket, config);
    t.is(r.code, 1);
    const out = JSON.parse(r.stdout) as CniErrorJson;
    t.like(out, { code: 11, cniVersion: '0.4.0' });
    t.regex(out.details, /malformed reply|HTTP 500/);
  });
}

test('a config over 1 MiB is refused with code 5 before the agent is asked', async (t) => {
  const agent = await fakeAgent(replyWith({ code: 0, stdout: '' }));
  t.teardown(agent.close);
  const r = await runRelay(agent.socket, Buffer.alloc((1 << 20) + 1, 0x20));
  t.is(r.code, 1);
  t.like(JSON.parse(r.stdout), { code: 5, cniVersion: '1.1.0' });
  t.is(agent.received.length, 0);
});

test('round trip time (median of 20)', async (t) => {
  const agent = await fakeAgent(replyWith({ code: 0, stdout: '{}' }));
  t.teardown(agent.close);
  const median = async (run: () => Promise<RunResult>) => {
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      const start = performance.now();
      t.is((await run()).code, 0);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    return ((times[9] ?? 0) + (times[10] ?? 0)) / 2;
  };
  const viaRelay = await median(() => runRelay(agent.socket, config));
  // The cost of starting any program from this test, for scale.
  const bare = await median(() => runner.run(['true']));
  t.log(
    `relay round trip: median ${viaRelay.toFixed(1)} ms (spawning 'true': ${bare.toFixed(1)} ms)`,
  );
});
