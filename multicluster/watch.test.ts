import test from 'ava';
import { FakeRemoteApi } from './fake.ts';
import {
  RemoteClusterWatch,
  remoteClientFromSecret,
  REMOTE_BLOCKS_PATH,
  REMOTE_NODES_PATH,
  REMOTE_POOLS_PATH,
} from './watch.ts';
import { planRemotePeers } from './plan.ts';
import { testKey } from './fixtures.ts';
import type { RemoteClusterSnapshot } from './types.ts';

const BACKOFF = { initialMs: 20, maxMs: 200 };

function nodeObject(name: string, seed: number, ip: string) {
  return {
    metadata: {
      name,
      uid: `uid-${name}`,
      annotations: {
        'wiremesh.io/wireguard-public-key': testKey(seed),
        'wiremesh.io/endpoint': `${ip}:51825`,
      },
    },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  };
}

function blockObject(cidr: string, node: string) {
  return {
    metadata: { name: cidr.replace(/[./]/g, '-') },
    spec: { cidr, pool: 'default-ipv4', node },
  };
}

function remoteB(): FakeRemoteApi {
  const api = new FakeRemoteApi();
  api.put(REMOTE_NODES_PATH, nodeObject('b-node1', 11, '198.18.1.11'));
  api.put(REMOTE_NODES_PATH, nodeObject('b-node2', 12, '198.18.1.12'));
  api.put(REMOTE_POOLS_PATH, {
    metadata: { name: 'default-ipv4' },
    spec: { cidr: '100.65.0.0/16', blockSize: 26 },
  });
  api.put(REMOTE_BLOCKS_PATH, blockObject('100.65.0.0/26', 'b-node1'));
  api.put(REMOTE_BLOCKS_PATH, blockObject('100.65.0.64/26', 'b-node2'));
  return api;
}

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const peersOf = (s: RemoteClusterSnapshot) =>
  planRemotePeers({
    localPools: [{ name: 'default-ipv4', cidr: '100.64.0.0/16' }],
    tunnelCIDR: '100.127.0.0/16',
    localKeys: new Map(),
    remotes: [s],
    peers: [],
    listenPort: 51825,
  }).peers.map((p) => `${p.node} ${p.endpoint} ${p.allowedIPs.join(',')}`);

test('lists the remote, keeps its state while unreachable, and picks up a node added meanwhile', async (t) => {
  const api = remoteB();
  let changes = 0;
  const watch = new RemoteClusterWatch({
    cluster: { name: 'b', importPools: null },
    connect: async () => api,
    onChange: () => changes++,
    backoff: BACKOFF,
  });
  t.teardown(() => watch.stop());
  watch.start();
  await until('the first list', () => watch.snapshot().synced);
  t.true(watch.snapshot().reachable);
  t.true(changes > 0);
  t.deepEqual(peersOf(watch.snapshot()), [
    'b/b-node1 198.18.1.11:51825 100.65.0.0/26',
    'b/b-node2 198.18.1.12:51825 100.65.0.64/26',
  ]);

  api.setDown(true);
  await until('unreachable', () => !watch.snapshot().reachable);
  const down = watch.snapshot();
  t.regex(down.lastError ?? '', /ECONNREFUSED/);
  t.is(down.nodes.length, 2, 'the last known nodes are kept');
  t.is(peersOf(down).length, 2, 'and stay peers');

  api.put(REMOTE_NODES_PATH, nodeObject('b-node3', 13, '198.18.1.13'));
  api.put(REMOTE_BLOCKS_PATH, blockObject('100.65.0.128/26', 'b-node3'));
  api.setDown(false);
  await until(
    'reachable with the new node',
    () =>
      watch.snapshot().reachable &&
      watch.snapshot().nodes.length === 3 &&
      watch.snapshot().blocks.length === 3,
  );
  t.deepEqual(peersOf(watch.snapshot()), [
    'b/b-node1 198.18.1.11:51825 100.65.0.0/26',
    'b/b-node2 198.18.1.12:51825 100.65.0.64/26',
    'b/b-node3 198.18.1.13:51825 100.65.0.128/26',
  ]);
  t.is(watch.snapshot().lastError, null);
});

test('the first connection is retried with backoff and its failure is reported', async (t) => {
  const api = remoteB();
  let attempts = 0;
  const watch = new RemoteClusterWatch({
    cluster: { name: 'b', importPools: ['default-ipv4'] },
    connect: async () => {
      attempts++;
      if (attempts < 3) throw new Error('reading Secret wiremesh-remotes/b: 404 NotFound');
      return api;
    },
    backoff: BACKOFF,
  });
  t.teardown(() => watch.stop());
  watch.start();
  await until('a reported failure', () => watch.snapshot().lastError !== null);
  t.false(watch.snapshot().synced);
  t.regex(watch.snapshot().lastError ?? '', /404 NotFound/);
  await until('the first list', () => watch.snapshot().synced);
  t.is(attempts, 3);
  t.deepEqual(watch.snapshot().importPools, ['default-ipv4']);
});

test('a replacement watch serves its predecessor’s state until its own first list', async (t) => {
  const api = remoteB();
  const first = new RemoteClusterWatch({
    cluster: { name: 'b', importPools: null },
    connect: async () => api,
    backoff: BACKOFF,
  });
  first.start();
  await until('the first list', () => first.snapshot().synced);
  const kept = first.snapshot();
  await first.stop();
  const second = new RemoteClusterWatch({
    cluster: { name: 'b', importPools: null },
    connect: async () => {
      throw new Error('Secret wiremesh-remotes/b key kubeconfig: refers to files (tokenFile)');
    },
    backoff: BACKOFF,
    initial: kept,
  });
  t.teardown(() => second.stop());
  second.start();
  await until(
    'a reported failure',
    () => second.snapshot().lastError?.includes('tokenFile') ?? false,
  );
  t.deepEqual(peersOf(second.snapshot()), peersOf(kept));
  t.false(second.snapshot().reachable);
});

test('remoteClientFromSecret: the kubeconfig from the Secret key, or a clear error', async (t) => {
  const local = new FakeRemoteApi();
  const secrets = '/api/v1/namespaces/wiremesh-remotes/secrets';
  const kubeconfig = `
apiVersion: v1
kind: Config
current-context: b
contexts: [{ name: b, context: { cluster: b, user: r } }]
clusters: [{ name: b, cluster: { server: 'https://198.18.1.1:6443', insecure-skip-tls-verify: true } }]
users: [{ name: r, user: { token: t0k3n } }]
`;
  local.put(secrets, {
    metadata: { name: 'b' },
    data: { kubeconfig: Buffer.from(kubeconfig).toString('base64') },
  });
  const ref = { namespace: 'wiremesh-remotes', name: 'b', key: 'kubeconfig' };
  t.is((await remoteClientFromSecret(local, ref)).server, 'https://198.18.1.1:6443');
  await t.throwsAsync(remoteClientFromSecret(local, { ...ref, key: 'other' }), {
    message: 'Secret wiremesh-remotes/b has no key other',
  });
  await t.throwsAsync(remoteClientFromSecret(local, { ...ref, name: 'c' }), {
    message: /^reading Secret wiremesh-remotes\/c: .*404/,
  });
});
