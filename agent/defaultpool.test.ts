// The default pool the agents create on a cluster without any: its spec is
// deploy/default-pool.yaml's, it is created only when no pool exists, agents racing
// on a new cluster make exactly one, and a failed create is retried, not fatal.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import { ipPoolFromK8s } from '../ipam/index.ts';
import { DEPLOY_DIR } from '../install/manifest.ts';
import { DEFAULT_AGENT_SETTINGS, resolveAgentSettings, configSource } from '../install/settings.ts';
import { DefaultPools, defaultPoolObjects, ensureDefaultPools } from './defaultpool.ts';
import type { Logger } from './log.ts';

const POOLS = '/apis/wiremesh.io/v1alpha1/ippools';

/** An apiserver's IPPool collection: a create of an existing name is 409 AlreadyExists. */
function fakeApi(fail: () => Error | undefined = () => undefined) {
  const pools = new Map<string, unknown>();
  const calls: string[] = [];
  const kube = {
    server: 'https://fake',
    list: () => Promise.reject(new Error('no list is made here')),
    request: async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      calls.push(`${method} ${path}`);
      // Let every racing agent reach the apiserver before any create lands.
      await new Promise((r) => setImmediate(r));
      const e = fail();
      if (e) throw e;
      const name = (body as { metadata: { name: string } }).metadata.name;
      if (pools.has(name))
        throw new KubeApiError(method, path, 409, 'AlreadyExists', `ippools "${name}" exists`);
      pools.set(name, body);
      return body as T;
    },
    watch: () => Promise.resolve(),
  } as KubeClient;
  return { kube, pools, calls };
}

function memoryLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const add = (level: string) => (msg: string) => void lines.push(`${level} ${msg}`);
  return { debug: add('debug'), info: add('info'), warn: add('warn'), error: add('error'), lines };
}

test('the default settings make deploy/default-pool.yaml’s pool, which IPAM accepts', (t) => {
  const file = parseYaml(readFileSync(join(DEPLOY_DIR, 'default-pool.yaml'), 'utf8')) as unknown;
  const config = parseYaml(readFileSync(join(DEPLOY_DIR, 'config.yaml'), 'utf8')) as {
    data: Record<string, string>;
  };
  const fromConfig = resolveAgentSettings([configSource(config.data)]).defaultPoolCIDRs;
  t.deepEqual(fromConfig, DEFAULT_AGENT_SETTINGS.defaultPoolCIDRs);
  const [pool] = defaultPoolObjects(fromConfig);
  t.deepEqual(pool, file);
  t.deepEqual(ipPoolFromK8s(pool).problems, []);
});

test('one pool per family: default-ipv4 with /26 blocks, default-ipv6 with /122', (t) => {
  const pools = defaultPoolObjects(['100.80.0.0/16', 'fd00:80::/48']);
  t.deepEqual(
    pools.map((p) => [p.metadata.name, p.spec.cidr, p.spec.blockSize]),
    [
      ['default-ipv4', '100.80.0.0/16', 26],
      ['default-ipv6', 'fd00:80::/48', 122],
    ],
  );
  for (const p of pools) t.deepEqual(ipPoolFromK8s(p).problems, []);
});

test('created only when the cluster has no pool at all, nor with the setting off', async (t) => {
  const api = fakeApi();
  t.deepEqual(await ensureDefaultPools(api.kube, ['100.64.0.0/16'], () => 1), {
    created: [],
    existed: [],
  });
  t.deepEqual(await ensureDefaultPools(api.kube, [], () => 0), { created: [], existed: [] });
  t.deepEqual(api.calls, []);
  t.deepEqual(await ensureDefaultPools(api.kube, ['100.64.0.0/16', 'fd00:64::/48'], () => 0), {
    created: ['default-ipv4', 'default-ipv6'],
    existed: [],
  });
  t.deepEqual(api.calls, [`POST ${POOLS}`, `POST ${POOLS}`]);
});

test('agents racing on a new cluster: one creates the pool, the others find it made', async (t) => {
  const api = fakeApi();
  const outcomes = await Promise.all(
    Array.from({ length: 5 }, () => ensureDefaultPools(api.kube, ['100.64.0.0/16'], () => 0)),
  );
  t.is(outcomes.filter((o) => o.created.length === 1).length, 1);
  t.is(outcomes.filter((o) => o.existed.length === 1).length, 4);
  t.deepEqual([...api.pools.keys()], ['default-ipv4']);
});

test('a failed create is logged and retried until it succeeds; stop ends the retries', async (t) => {
  let failures = 2;
  const api = fakeApi(() =>
    failures-- > 0 ? new KubeApiError('POST', POOLS, 403, 'Forbidden', 'no create') : undefined,
  );
  const timers: { fn: () => void; ms: number }[] = [];
  const log = memoryLog();
  const pools = new DefaultPools({
    kube: api.kube,
    cidrs: ['100.64.0.0/16'],
    poolCount: () => api.pools.size,
    log,
    setTimer: (fn, ms) => timers.push({ fn, ms }),
    clearTimer: () => {},
  });
  await pools.start();
  t.is(api.pools.size, 0);
  t.deepEqual(
    timers.map((x) => x.ms),
    [10_000],
  );
  t.regex(log.lines.join('\n'), /error cannot create the default IP pool; retrying/);
  for (let i = 0; i < 2; i++) {
    timers.shift()?.fn();
    await new Promise((r) => setTimeout(r, 5));
  }
  t.deepEqual([...api.pools.keys()], ['default-ipv4']);
  t.is(timers.length, 0);
  t.regex(log.lines.at(-1) ?? '', /info created the default IP pool/);

  // Stopped while waiting to retry: no further attempt.
  const down = fakeApi(() => new Error('connect ECONNREFUSED'));
  const later: (() => void)[] = [];
  let cleared = 0;
  const stopped = new DefaultPools({
    kube: down.kube,
    cidrs: ['100.64.0.0/16'],
    poolCount: () => 0,
    log: memoryLog(),
    setTimer: (fn) => later.push(fn),
    clearTimer: () => void cleared++,
  });
  await stopped.start();
  stopped.stop();
  t.is(cleared, 1);
});
