import test from 'ava';
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import { PoolWatch } from './pools.ts';
import type { Logger } from './log.ts';

function fakeKube(answer: (path: string) => unknown): KubeClient & { paths: string[] } {
  const paths: string[] = [];
  const request = async <T>(_method: string, path: string): Promise<T> => {
    paths.push(path);
    const a = answer(path);
    if (a instanceof Error) throw a;
    return a as T;
  };
  return {
    paths,
    request,
    list: async <T>(path: string, _query: unknown, onItem: (i: T) => void) => {
      const a = await request<{ items?: T[]; metadata?: object }>('GET', path);
      for (const item of a.items ?? []) onItem(item);
      return { metadata: a.metadata };
    },
    watch: () => Promise.resolve(),
  } as unknown as KubeClient & { paths: string[] };
}

function memoryLog(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  return { debug() {}, info() {}, error() {}, warn: (m: string) => warnings.push(m), warnings };
}

test('a namespace the watch has not seen yet is read from the API, so its first pod gets its pool', async (t) => {
  const kube = fakeKube(() => ({
    metadata: { name: 'late', annotations: { 'wiremesh.io/ippool': ' late ' } },
  }));
  const pools = new PoolWatch(kube, memoryLog());
  t.is(await pools.poolForNamespace('late'), 'late');
  t.deepEqual(kube.paths, ['/api/v1/namespaces/late']);
});

test('a namespace that does not exist names no pool; an unreachable API falls back with a log line', async (t) => {
  const missing = new PoolWatch(
    fakeKube((p) => new KubeApiError('GET', p, 404, 'NotFound', '')),
    memoryLog(),
  );
  t.is(await missing.poolForNamespace('gone'), undefined);
  const log = memoryLog();
  const away = new PoolWatch(
    fakeKube(() => new Error('connect ECONNREFUSED')),
    log,
  );
  t.is(await away.poolForNamespace('x'), undefined);
  t.is(log.warnings.length, 1);
  t.regex(log.warnings[0] ?? '', /node's pools serve it/);
});
