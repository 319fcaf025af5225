// PolicyWatch against a scripted apiserver: the admin policy resources may not be
// served (CRDs not installed), which must neither block start-up nor stop the agent
// from picking them up later; their problems become Events in namespace default.
import test from 'ava';
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import { PolicyWatch } from './policy.ts';
import { KubeEventRecorder } from './events.ts';
import type { Logger } from './log.ts';

const ANPS = '/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies';
const BANPS = '/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies';

function fakeApi() {
  const served = { admin: false };
  const objects: Record<string, unknown[]> = {
    '/api/v1/pods': [
      {
        metadata: { namespace: 'x', name: 'a', labels: { pod: 'a' }, resourceVersion: '1' },
        spec: { nodeName: 'n1' },
        status: { podIP: '100.64.1.1' },
      },
    ],
    '/api/v1/namespaces': [{ metadata: { name: 'x', resourceVersion: '1' } }],
    '/apis/networking.k8s.io/v1/networkpolicies': [],
    [ANPS]: [],
    [BANPS]: [],
  };
  const posts: { path: string; body: Record<string, unknown> }[] = [];
  const watchers = new Map<string, Parameters<KubeClient['watch']>[2]>();
  const client: KubeClient = {
    server: 'https://fake',
    async request<T>(method: string, path: string, body?: unknown): Promise<T> {
      if (method === 'POST') {
        posts.push({ path, body: body as Record<string, unknown> });
        return {} as T;
      }
      if ((path === ANPS || path === BANPS) && !served.admin) {
        throw new KubeApiError(method, path, 404, 'NotFound', 'the server could not find it');
      }
      const items = objects[path];
      if (!items) throw new Error(`unexpected ${method} ${path}`);
      return { items, metadata: { resourceVersion: '10' } } as T;
    },
    async list<T>(path: string, _query: unknown, onItem: (i: T) => void) {
      const answer = await this.request<{ items: T[] }>('GET', path);
      for (const item of answer.items) onItem(structuredClone(item));
      return { metadata: { resourceVersion: '10' } };
    },
    async watch(path, _query, onEvent, signal) {
      watchers.set(path, onEvent);
      await new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve()));
    },
  };
  return { client, served, objects, posts, watchers };
}

function memoryLog() {
  const lines: string[] = [];
  const log: Logger = {
    debug() {},
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    error: (m) => lines.push(`error ${m}`),
  };
  return { log, lines };
}

const denyAll = {
  metadata: { name: 'deny-x', resourceVersion: '2' },
  spec: {
    priority: 5,
    subject: { namespaces: { matchLabels: { 'kubernetes.io/metadata.name': 'x' } } },
    ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
  },
};

test('without the CRDs the watch starts, logs once, and picks the policies up when served', async (t) => {
  const api = fakeApi();
  const { log, lines } = memoryLog();
  const watch = new PolicyWatch(api.client, log, { first: 20, max: 40 });
  t.teardown(() => watch.stop());
  const changes: string[] = [];
  await watch.start((reason) => changes.push(reason));
  t.is(watch.compile('n1').stats.adminPolicies, undefined, 'no admin tiers without admin policies');
  t.is(lines.filter((l) => l.includes('not served')).length, 2, 'one line per resource');

  api.objects[ANPS] = [denyAll];
  api.served.admin = true;
  for (let i = 0; i < 100 && !changes.some((c) => c.startsWith('admin network policies')); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  t.true(
    changes.some((c) => c.startsWith('admin network policies')),
    changes.join(', '),
  );
  const result = watch.compile('n1');
  t.is(result.stats.adminPolicies, 1);
  t.deepEqual(result.problems, []);
  t.true(result.table.chains.some((c) => c.name.startsWith('anp-in-')));
});

test('an admin policy problem is an Event on the object, recorded in namespace default', async (t) => {
  const api = fakeApi();
  api.served.admin = true;
  api.objects[ANPS] = [
    {
      ...denyAll,
      spec: {
        ...denyAll.spec,
        egress: [{ action: 'Allow', to: [{ nodes: { matchLabels: {} } }] }],
      },
    },
  ];
  api.objects[BANPS] = [
    {
      metadata: { name: 'other', resourceVersion: '3' },
      spec: { subject: { namespaces: {} } },
    },
  ];
  const { log } = memoryLog();
  const watch = new PolicyWatch(api.client, log);
  t.teardown(() => watch.stop());
  await watch.start(() => {});
  const result = watch.compile('n1');
  t.deepEqual(result.problems.map((p) => `${p.kind}/${p.name} ${p.reason}`).sort(), [
    'AdminNetworkPolicy/deny-x UnsupportedField',
    'BaselineAdminNetworkPolicy/other InvalidPolicy',
  ]);
  watch.report(result.problems, new KubeEventRecorder(api.client, 'n1', log));
  t.is(api.posts.length, 2);
  for (const post of api.posts) {
    t.is(post.path, '/api/v1/namespaces/default/events');
    t.like(post.body, { involvedObject: { apiVersion: 'policy.networking.k8s.io/v1alpha1' } });
  }
});

test('a compile with no watch event since the last one is reused; any event compiles anew', async (t) => {
  // A resync must not spend a full compile (a quarter second at 10,000 pods) on nothing.
  const api = fakeApi();
  const { log } = memoryLog();
  const watch = new PolicyWatch(api.client, log);
  t.teardown(() => watch.stop());
  await watch.start(() => {});
  const first = watch.compile('n1');
  t.is(watch.compile('n1'), first, 'nothing changed: the same result');
  t.not(watch.compile('n2'), first, 'another node is compiled for');
  for (let i = 0; i < 100 && !api.watchers.has('/apis/networking.k8s.io/v1/networkpolicies'); i++)
    await new Promise((r) => setTimeout(r, 10));
  api.watchers.get('/apis/networking.k8s.io/v1/networkpolicies')?.({
    type: 'ADDED',
    object: {
      metadata: { namespace: 'x', name: 'deny', resourceVersion: '11' },
      spec: { podSelector: {}, policyTypes: ['Ingress'] },
    },
  });
  const next = watch.compile('n1');
  t.not(next, first);
  t.is(next.stats.policies, 1);
  t.is(next.stats.isolatedIngress, 1);
  t.is(watch.compile('n1'), next);
});
