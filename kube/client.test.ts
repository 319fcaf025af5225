import test from 'ava';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultRunner } from '../sys/index.ts';
import { kubeClient, kubeClientFromKubeconfig, KubeApiError } from './client.ts';
import type { KubeClient } from './client.ts';

/**
 * A real TLS server on loopback with a throwaway CA, and a client of it through a
 * kubeconfig with a bearer token; `run` gets the client and closes the server after.
 */
async function withTlsServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  run: (kube: KubeClient) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'wm-kube-'));
  try {
    await defaultRunner.run(
      [
        'openssl',
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'key.pem',
        '-out',
        'cert.pem',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { cwd: dir },
    );
    const server = createServer(
      { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) },
      handler,
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (server.address() as { port: number }).port;
      const ca = readFileSync(join(dir, 'cert.pem')).toString('base64');
      await writeFile(
        join(dir, 'kubeconfig'),
        [
          'apiVersion: v1',
          'kind: Config',
          'current-context: c',
          'clusters:',
          '- name: k',
          '  cluster:',
          `    server: https://127.0.0.1:${port}`,
          `    certificate-authority-data: ${ca}`,
          'users:',
          '- name: u',
          '  user:',
          '    token: secret-token',
          'contexts:',
          '- name: c',
          '  context:',
          '    cluster: k',
          '    user: u',
          '',
        ].join('\n'),
      );
      await run(kubeClient(join(dir, 'kubeconfig')));
    } finally {
      server.closeAllConnections();
      server.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// The client must verify the server, send the bearer token, and turn Status errors
// into KubeApiError.
test('requests, watch streaming and errors against a TLS server with a kubeconfig', async (t) => {
  const seen: string[] = [];
  await withTlsServer(
    (req, res) => {
      seen.push(
        `${req.method} ${req.url} ${req.headers.authorization ?? ''} ${req.headers['content-type'] ?? ''}`,
      );
      if (req.url?.includes('watch=true')) {
        res.writeHead(200);
        res.write(
          JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a' } } }) +
            '\n{"type":"DELE',
        );
        res.end('TED","object":{"metadata":{"name":"a"}}}\n');
        return;
      }
      if (req.url === '/api/v1/nodes/missing') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            kind: 'Status',
            reason: 'NotFound',
            message: 'nodes "missing" not found',
          }),
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ items: [], metadata: { resourceVersion: '7' } }));
    },
    async (kube) => {
      const list = await kube.request<{ metadata: { resourceVersion: string } }>(
        'GET',
        '/api/v1/nodes',
        undefined,
        { query: { limit: 1 } },
      );
      t.is(list.metadata.resourceVersion, '7');
      await kube.request(
        'PATCH',
        '/api/v1/nodes/a',
        { metadata: {} },
        { contentType: 'application/merge-patch+json' },
      );
      const events: string[] = [];
      await kube.watch('/api/v1/nodes', { resourceVersion: '7' }, (e) => events.push(e.type));
      t.deepEqual(events, ['ADDED', 'DELETED'], 'events split across chunks are reassembled');
      const err = await t.throwsAsync(kube.request('GET', '/api/v1/nodes/missing'), {
        instanceOf: KubeApiError,
      });
      t.is(err?.status, 404);
      t.is(err?.reason, 'NotFound');
    },
  );
  t.true(seen.every((s) => s.includes('Bearer secret-token')));
  t.true(
    seen.some(
      (s) => s.startsWith('PATCH /api/v1/nodes/a') && s.endsWith('application/merge-patch+json'),
    ),
  );
});

// A list of every pod in a large cluster is read item by item, never held whole.
test('a list hands over its items as they arrive, and a refused list is an API error', async (t) => {
  const items = Array.from({ length: 300 }, (_, i) => ({
    metadata: { name: `pod-${i}`, labels: { text: 'é "}' } },
  }));
  const text = JSON.stringify({ kind: 'PodList', metadata: { resourceVersion: '9' }, items });
  const queries: string[] = [];
  await withTlsServer(
    (req, res) => {
      queries.push(req.url ?? '');
      if (req.url?.startsWith('/api/v1/secrets')) {
        res.writeHead(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ kind: 'Status', reason: 'Forbidden', message: 'no' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      // In small writes, so items and characters are cut across chunks.
      const bytes = Buffer.from(text);
      for (let o = 0; o < bytes.length; o += 333) res.write(bytes.subarray(o, o + 333));
      res.end();
    },
    async (kube) => {
      const got: unknown[] = [];
      const meta = await kube.list('/api/v1/pods', { resourceVersion: '0' }, (i) => got.push(i));
      t.deepEqual(got, items);
      t.is(meta.metadata?.resourceVersion, '9');
      t.deepEqual(queries, ['/api/v1/pods?resourceVersion=0']);
      const err = await t.throwsAsync(
        kube.list('/api/v1/secrets', {}, () => {}),
        {
          instanceOf: KubeApiError,
        },
      );
      t.is(err?.status, 403);
      t.is(err?.reason, 'Forbidden');
      // An error thrown while taking an item ends the list with that error.
      await t.throwsAsync(
        kube.list('/api/v1/pods', {}, () => {
          throw new Error('not this one');
        }),
        { message: 'not this one' },
      );
    },
  );
});

// A keep-alive socket keeps the request that opened it reachable for its whole life
// (Node's TLS session listener): an agent that listed 150,000 pods must not hold
// the list's pages, parsed and raw, through its idle sockets.
test('an answer is not kept by the keep-alive socket it came on', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const page = JSON.stringify({
    items: Array.from({ length: 2000 }, (_, i) => ({ metadata: { name: `pod-${i}` } })),
  });
  await withTlsServer(
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(page);
    },
    async (kube) => {
      // In a function of its own: a suspended async function keeps its locals.
      const first = async () => {
        const answer = await kube.request<{ items: unknown[] }>('GET', '/api/v1/pods');
        t.is(answer.items.length, 2000);
        return new WeakRef(answer);
      };
      const answerRef = await first();
      // A second request reuses the socket: it is kept alive, not closed.
      await kube.request('GET', '/api/v1/pods');
      // A WeakRef's target is held until the current job ends.
      await new Promise((r) => setImmediate(r));
      gc();
      t.is(answerRef.deref(), undefined, 'the first answer is garbage once its caller drops it');
    },
  );
});

// A kubeconfig from a Secret is written by someone else: it may only carry embedded
// data, never make the agent read one of the node's files and send it to a server.
test('a kubeconfig from text refuses file references and takes embedded credentials', (t) => {
  const config = (cluster: string, user: string) => `
apiVersion: v1
kind: Config
current-context: remote
contexts: [{ name: remote, context: { cluster: b, user: reader } }]
clusters: [{ name: b, cluster: { server: 'https://198.18.1.1:6443/', ${cluster} } }]
users: [{ name: reader, user: { ${user} } }]
`;
  const client = kubeClientFromKubeconfig(
    config('certificate-authority-data: Zm9v', 'token: abc'),
    'Secret wiremesh-remotes/b',
  );
  t.is(client.server, 'https://198.18.1.1:6443');
  for (const [cluster, user, named] of [
    ['certificate-authority: /etc/ca.crt', 'token: abc', 'certificate-authority'],
    ['insecure-skip-tls-verify: true', 'tokenFile: /var/lib/wiremesh/private-key', 'tokenFile'],
    [
      'insecure-skip-tls-verify: true',
      'client-certificate: /a, client-key: /b',
      'client-certificate, client-key',
    ],
  ] as const) {
    const err = t.throws(() => kubeClientFromKubeconfig(config(cluster, user), 'Secret x/y'));
    t.regex(err.message, new RegExp(`^Secret x/y: refers to files \\(${named}\\)`));
  }
  t.throws(() => kubeClientFromKubeconfig('42', 'Secret x/y'), { message: /not a kubeconfig/ });
});
