import test from 'ava';
import { Informer } from './informer.ts';
import { KubeApiError, type KubeClient, type WatchEvent } from './client.ts';
import { ListSplitter, type ListFields } from './liststream.ts';

interface Obj {
  metadata: { name: string; resourceVersion: string };
}
const obj = (name: string, rv: string): Obj => ({ metadata: { name, resourceVersion: rv } });

/** A scripted apiserver: lists return `state`, watches replay queued event batches. */
function fakeClient(
  state: { items: Obj[]; rv: string },
  watches: (WatchEvent[] | Error | (() => Promise<WatchEvent[]>))[],
) {
  const calls: string[] = [];
  /** The resourceVersion each list asked for. */
  const lists: string[] = [];
  const client: KubeClient = {
    server: 'https://fake',
    async request<T>(method: string, path: string): Promise<T> {
      calls.push(`${method} ${path}`);
      return { items: state.items, metadata: { resourceVersion: state.rv } } as T;
    },
    async list<T>(
      path: string,
      query: Record<string, unknown> | undefined,
      onItem: (i: T) => void,
      fields?: ListFields,
    ) {
      calls.push(`GET ${path}`);
      lists.push(String(query?.resourceVersion));
      // Read as the client reads an answer, so the informer's fields apply.
      const splitter = new ListSplitter((i) => onItem(i as T), fields);
      splitter.write(Buffer.from(JSON.stringify({ items: state.items })));
      splitter.end();
      return { metadata: { resourceVersion: state.rv } };
    },
    async watch(_path, query, onEvent, signal) {
      calls.push(`WATCH rv=${String(query?.resourceVersion)}`);
      let next = watches.shift();
      if (next instanceof Error) throw next;
      if (typeof next === 'function') next = await next();
      if (!next) {
        await new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve()));
        return;
      }
      for (const e of next) onEvent(e);
    },
  };
  return { client, calls, lists };
}

const settle = () => new Promise((r) => setTimeout(r, 30));

test('lists, then watches from the list version and keeps the cache', async (t) => {
  const { client, calls } = fakeClient({ items: [obj('a', '1')], rv: '5' }, [
    [
      { type: 'ADDED', object: obj('b', '6') },
      { type: 'MODIFIED', object: obj('a', '7') },
      { type: 'DELETED', object: obj('b', '8') },
      { type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } },
    ],
  ]);
  const inf = new Informer<Obj>(client, '/api/v1/nodes');
  const seen: string[] = [];
  for (const v of ['add', 'update', 'delete'])
    inf.on(v, (o: Obj) => seen.push(`${v} ${o.metadata.name}`));
  await inf.start();
  await settle();
  await inf.stop();
  t.deepEqual(seen, ['add a', 'add b', 'update a', 'delete b']);
  t.deepEqual(
    inf.list().map((o) => o.metadata.name),
    ['a'],
  );
  t.is(inf.get('a')?.metadata.resourceVersion, '7');
  t.deepEqual(calls.slice(0, 3), ['GET /api/v1/nodes', 'WATCH rv=5', 'WATCH rv=9']);
});

test('a transform cuts objects before they are cached; an unchanged object is kept', async (t) => {
  type Big = Obj & { bulk?: string; keep?: string };
  const big = (name: string, rv: string, keep: string): Big => ({
    ...obj(name, rv),
    bulk: 'x'.repeat(100),
    keep,
  });
  const { client } = fakeClient({ items: [big('a', '1', 'k1')], rv: '5' }, [
    [
      { type: 'MODIFIED', object: big('a', '6', 'k1') },
      { type: 'MODIFIED', object: big('a', '7', 'k2') },
    ],
  ]);
  const inf = new Informer<Big>(
    client,
    '/api/v1/pods',
    {},
    {
      transform: (o) => ({ metadata: o.metadata, keep: o.keep }),
      unchanged: (x, y) => x.keep === y.keep,
    },
  );
  const seen: string[] = [];
  inf.on('update', (o: Big) => seen.push(`update ${o.metadata.name} ${o.keep}`));
  await inf.start();
  const first = inf.get('a');
  t.is(first?.bulk, undefined);
  await settle();
  await inf.stop();
  // rv 6 changed nothing the consumer reads: no event; rv 7 did.
  t.deepEqual(seen, ['update a k2']);
  t.is(inf.get('a')?.keep, 'k2');
  t.is(inf.get('a')?.metadata.resourceVersion, '7');
});

test('an expired watch (410) relists and emits only the differences', async (t) => {
  const state = { items: [obj('a', '1'), obj('b', '1')], rv: '5' };
  let expire!: () => void;
  const expired = new Promise<void>((r) => (expire = r));
  const { client, lists } = fakeClient(state, [
    async () => {
      await expired;
      return [{ type: 'ERROR', object: { code: 410 } }];
    },
  ]);
  const inf = new Informer<Obj>(client, '/x');
  await inf.start();
  const seen: string[] = [];
  for (const v of ['add', 'update', 'delete'])
    inf.on(v, (o: Obj) => seen.push(`${v} ${o.metadata.name}`));
  state.items = [obj('a', '1'), obj('c', '2')];
  state.rv = '20';
  expire();
  await settle();
  await inf.stop();
  t.deepEqual(seen.sort(), ['add c', 'delete b']);
  // The first list takes the apiserver's cache as it is (any version); the list after
  // an expired watch must not go back behind what was seen, so it asks for the latest.
  t.deepEqual(lists, ['0', 'undefined']);
});

test('a failed watch is reported and retried; the cache keeps serving', async (t) => {
  const { client, calls } = fakeClient({ items: [obj('a', '1')], rv: '5' }, [
    new KubeApiError('WATCH', '/x', 500, 'InternalError', 'boom'),
  ]);
  const inf = new Informer<Obj>(client, '/x');
  const errors: unknown[] = [];
  inf.on('error', (e) => errors.push(e));
  await inf.start();
  await new Promise((r) => setTimeout(r, 700));
  await inf.stop();
  t.is(errors.length, 1);
  t.deepEqual(
    inf.list().map((o) => o.metadata.name),
    ['a'],
  );
  t.true(calls.filter((c) => c.startsWith('WATCH')).length >= 2, calls.join(', '));
});

test('managedFields and kubectl’s last-applied copy are never cached; other annotations are', async (t) => {
  const heavy = (name: string, rv: string) =>
    ({
      metadata: {
        name,
        resourceVersion: rv,
        managedFields: [{ manager: 'kubectl', operation: 'Apply' }],
        annotations: {
          'kubectl.kubernetes.io/last-applied-configuration': '{"kind":"Namespace"}',
          'wiremesh.io/ippool': 'fast',
        },
      },
    }) as unknown as Obj;
  const { client } = fakeClient({ items: [heavy('listed', '1')], rv: '1' }, [
    [{ type: 'ADDED', object: heavy('watched', '2') }],
  ]);
  const inf = new Informer<Obj>(client, '/api/v1/namespaces');
  await inf.start();
  await settle();
  await inf.stop();
  for (const name of ['listed', 'watched'])
    t.deepEqual(inf.get(name)?.metadata, {
      name,
      resourceVersion: name === 'listed' ? '1' : '2',
      annotations: { 'wiremesh.io/ippool': 'fast' },
    } as Obj['metadata']);
});

test("a list is read through the informer's fields; a watched object arrives whole", async (t) => {
  const heavy = (name: string, rv: string) => ({
    ...obj(name, rv),
    spec: { keep: { a: 1 }, drop: { b: 2 } },
  });
  const { client } = fakeClient({ items: [heavy('listed', '1')], rv: '1' }, [
    [{ type: 'ADDED', object: heavy('watched', '2') }],
  ]);
  const inf = new Informer<Obj>(client, '/api/v1/things', {}, { fields: { spec: { keep: true } } });
  await inf.start();
  await settle();
  await inf.stop();
  t.deepEqual((inf.get('listed') as { spec?: unknown }).spec, { keep: { a: 1 }, drop: {} });
  t.deepEqual((inf.get('watched') as { spec?: unknown }).spec, { keep: { a: 1 }, drop: { b: 2 } });
});
