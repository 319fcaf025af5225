// The health endpoints: the liveness and readiness rules as tables over the loop's
// facts, then the HTTP listener the kubelet probes and the agent socket's paths.
import test from 'ava';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkLiveness,
  checkReadiness,
  getHealth,
  healthResponse,
  serveHealth,
  type HealthFacts,
} from './health.ts';
import { serveAgentApi } from './server.ts';
import type { Agent } from './agent.ts';

const NOW = 1_700_000_000_000;
const MIN = 60_000;

function facts(over: Partial<HealthFacts['reconcile']> = {}, synced = true): HealthFacts {
  return {
    synced,
    lastError: null,
    reconcile: {
      running: true,
      passStartedAt: null,
      lastPassEndedAt: NOW - 10_000,
      lastFullSuccessAt: NOW - 40_000,
      longestIdleMs: 30_000,
      ...over,
    },
  };
}

const starting: HealthFacts = {
  ...facts({ running: false, lastPassEndedAt: null, lastFullSuccessAt: null }, false),
};

const live = test.macro({
  exec(t, f: HealthFacts, ok: boolean, reason: RegExp) {
    const v = checkLiveness(f, NOW);
    t.is(v.ok, ok);
    t.regex(v.reason, reason);
  },
  title: (title) => `liveness: ${title ?? ''}`,
});

test('starting, waiting for the lists', live, starting, true, /waiting for the first full lists/);
test('between passes', live, facts(), true, /^alive$/);
test('a pass running for a minute', live, facts({ passStartedAt: NOW - MIN }), true, /reconciling/);
test(
  'a pass running for six minutes is stuck',
  live,
  facts({ passStartedAt: NOW - 6 * MIN }),
  false,
  /a reconcile pass has been running for 360 s \(limit 300 s\)/,
);
test(
  'no pass for longer than resync or backoff, plus a minute',
  live,
  facts({ lastPassEndedAt: NOW - 91_000 }),
  false,
  /no reconcile pass for 91 s, though one is due at least every 30 s/,
);
test(
  'a pass a little late is still alive',
  live,
  facts({ lastPassEndedAt: NOW - 89_000 }),
  true,
  /alive/,
);

const ready = test.macro({
  exec(t, f: HealthFacts, ok: boolean, reason: RegExp) {
    const v = checkReadiness(f, NOW);
    t.is(v.ok, ok);
    t.regex(v.reason, reason);
  },
  title: (title) => `readiness: ${title ?? ''}`,
});

test('starting', ready, starting, false, /waiting for the first full lists from the API/);
test(
  'synced, first pass still running',
  ready,
  facts({ passStartedAt: NOW - 1000, lastPassEndedAt: null, lastFullSuccessAt: null }),
  false,
  /the first full reconcile pass has not finished yet/,
);
test(
  'the first pass failed',
  ready,
  { ...facts({ lastFullSuccessAt: null }), lastError: 'no Node object yet' },
  false,
  /has not succeeded yet: no Node object yet/,
);
test('the dataplane applied', ready, facts(), true, /ready: the dataplane is applied/);
test('later failures keep it ready', ready, { ...facts(), lastError: 'nft: busy' }, true, /ready/);
test(
  'a stuck loop is not ready either',
  ready,
  facts({ passStartedAt: NOW - 10 * MIN }),
  false,
  /has been running/,
);

test('healthResponse: 200 or 503 with the reason and the loop’s times', (t) => {
  const r = healthResponse('/readyz', facts({ passStartedAt: NOW - 2000 }), NOW);
  t.is(r.code, 200);
  t.deepEqual(r.body, {
    ok: true,
    reason: 'ready: the dataplane is applied',
    synced: true,
    passRunningForMs: 2000,
    lastPassEndedAt: new Date(NOW - 10_000).toISOString(),
    lastFullSuccessAt: new Date(NOW - 40_000).toISOString(),
    lastError: null,
  });
  t.is(healthResponse('/readyz', starting, NOW).code, 503);
  t.is(healthResponse('/healthz', starting, NOW).code, 200);
});

test('the HTTP endpoints answer from the agent’s facts as they change', async (t) => {
  let current = starting;
  const server = await serveHealth(
    { health: () => current },
    { host: '127.0.0.1', port: 0 },
    { now: () => NOW },
  );
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const at = { host: '127.0.0.1', port };
  t.like(await getHealth(at, '/healthz'), { code: 200, body: { ok: true } });
  t.like(await getHealth(at, '/readyz'), {
    code: 503,
    body: { ok: false, reason: 'waiting for the first full lists from the API' },
  });
  current = facts();
  t.like(await getHealth(at, '/readyz'), { code: 200, body: { ok: true } });
  current = facts({ passStartedAt: NOW - 10 * MIN });
  t.like(await getHealth(at, '/healthz'), { code: 503, body: { ok: false } });

  const base = `http://127.0.0.1:${port}`;
  const head = await fetch(`${base}/readyz`, { method: 'HEAD' });
  t.is(head.status, 503);
  t.is(await head.text(), '');
  t.is((await fetch(`${base}/readyz?verbose`)).status, 503);
  t.is((await fetch(`${base}/metrics`)).status, 404);
  t.is((await fetch(`${base}/healthz`, { method: 'POST' })).status, 405);
});

test('a taken port is an error naming the setting', async (t) => {
  const first = await serveHealth({ health: () => facts() }, { host: '127.0.0.1', port: 0 });
  t.teardown(() => first.close());
  const { port } = first.address() as AddressInfo;
  await t.throwsAsync(serveHealth({ health: () => facts() }, { host: '127.0.0.1', port }), {
    message: new RegExp(
      `cannot serve health on 127\\.0\\.0\\.1:${port}: .*\\(setting health-address\\)`,
    ),
  });
});

test('nothing listening: a clear error', async (t) => {
  const server = await serveHealth({ health: () => facts() }, { host: '127.0.0.1', port: 0 });
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  await t.throwsAsync(getHealth({ host: '127.0.0.1', port }, '/healthz'), {
    message: `no wiremesh agent answers at 127.0.0.1:${port}`,
  });
});

test('the agent socket answers /healthz and /readyz with the same checks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-health-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The socket checks against the real clock.
  let current = facts({ lastPassEndedAt: Date.now(), lastFullSuccessAt: null });
  const agent = { health: () => current } as unknown as Agent;
  const server = await serveAgentApi(agent, join(dir, 'agent.sock'));
  t.teardown(() => server.close());
  const socketPath = join(dir, 'agent.sock');
  t.like(await getHealth({ socketPath }, '/healthz'), { code: 200 });
  t.like(await getHealth({ socketPath }, '/readyz'), {
    code: 503,
    body: { reason: 'the first full reconcile pass has not finished yet' },
  });
  current = facts({ lastPassEndedAt: Date.now() });
  t.like(await getHealth({ socketPath }, '/readyz'), { code: 200, body: { ok: true } });
});
