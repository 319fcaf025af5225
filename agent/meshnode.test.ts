import test from 'ava';
import type { V1Node } from '@kubernetes/client-node';
import {
  meshNodeFromK8s,
  sameNodeForMesh,
  trimNodeForMesh,
  KeyObservations,
  type ProblemReason,
} from './meshnode.ts';
import { parseEndpoint } from './endpoint.ts';
import { generateKeyPair } from '../crypto/index.ts';

const good = generateKeyPair().publicKey;

function k8sNode(
  annotations: Record<string, string>,
  addresses = [{ type: 'InternalIP', address: '198.18.0.11' }],
): V1Node {
  return {
    metadata: { name: 'n1', uid: 'u1', creationTimestamp: new Date(5000), annotations },
    status: { addresses },
  };
}

test('a well-formed node translates to a MeshNode', (t) => {
  const n = meshNodeFromK8s(
    k8sNode({
      'wiremesh.io/wireguard-public-key': good,
      'wiremesh.io/endpoint': '198.18.0.11:51825',
      'wiremesh.io/endpoint-override': '[2001:db8::1]:4000',
      'wiremesh.io/persistent-keepalive': '25',
    }),
  );
  t.deepEqual(n, {
    name: 'n1',
    uid: 'u1',
    createdAt: 5000,
    internalIPs: ['198.18.0.11'],
    publicKey: good,
    endpoint: '198.18.0.11:51825',
    endpointOverride: '[2001:db8::1]:4000',
    persistentKeepalive: 25,
    hostEncryption: false,
    problems: [],
  });
});

const refused = test.macro(
  (t, annotations: Record<string, string>, reason: ProblemReason, pattern: RegExp) => {
    const n = meshNodeFromK8s(k8sNode(annotations));
    t.is(n.problems.length, 1);
    t.is(n.problems[0]?.reason, reason);
    t.regex(n.problems[0]?.message ?? '', pattern);
  },
);

test(
  'bad base64 key',
  refused,
  { 'wiremesh.io/wireguard-public-key': '!!!notbase64!!!' },
  'InvalidPublicKey',
  /wireguard-public-key/,
);
test(
  '31-byte key',
  refused,
  { 'wiremesh.io/wireguard-public-key': Buffer.alloc(31, 7).toString('base64') },
  'InvalidPublicKey',
  /31 bytes/,
);
test(
  'endpoint without port',
  refused,
  { 'wiremesh.io/endpoint': '198.18.0.11' },
  'InvalidEndpoint',
  /no port/,
);
test(
  'endpoint port out of range',
  refused,
  { 'wiremesh.io/endpoint-override': '198.18.0.11:70000' },
  'InvalidEndpoint',
  /outside/,
);
test(
  'negative keepalive',
  refused,
  { 'wiremesh.io/persistent-keepalive': '-1' },
  'InvalidKeepalive',
  /whole seconds/,
);

test('a refused key leaves the node without a key, and invalid InternalIPs are dropped', (t) => {
  const n = meshNodeFromK8s(
    k8sNode({ 'wiremesh.io/wireguard-public-key': 'x' }, [
      { type: 'InternalIP', address: 'nonsense' },
      { type: 'ExternalIP', address: '192.0.2.1' },
    ]),
  );
  t.is(n.publicKey, null);
  t.deepEqual(n.internalIPs, []);
});

test('endpoints: IPv4, IPv6 in brackets, DNS names; canonical output', (t) => {
  t.deepEqual(parseEndpoint('198.18.0.1:51825'), {
    ok: true,
    endpoint: '198.18.0.1:51825',
    host: '198.18.0.1',
    port: 51825,
  });
  t.like(parseEndpoint('[2001:0db8::0001]:1'), { ok: true, endpoint: '[2001:db8::1]:1' });
  t.like(parseEndpoint('node-1.example.org:51825'), { ok: true });
  for (const bad of [
    '',
    ':1',
    '1.2.3:1',
    '2001:db8::1:51825',
    '[2001:db8::1]',
    'host:0',
    'host:abc',
    'a_b:1',
    '[zz]:1',
    `${'a'.repeat(300)}:1`,
  ]) {
    t.false(parseEndpoint(bad).ok, bad);
  }
  t.false(parseEndpoint(42).ok);
});

test('fuzz: node translation never throws on random annotations', (t) => {
  const alphabet = 'abcAB09+/=:[].-_ \n\u0000é';
  const rnd = (n: number) =>
    Array.from({ length: n }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('');
  for (let i = 0; i < 3000; i++) {
    const ann: Record<string, string> = {
      'wiremesh.io/wireguard-public-key': rnd(Math.floor(Math.random() * 50)),
      'wiremesh.io/endpoint': rnd(Math.floor(Math.random() * 30)),
      'wiremesh.io/endpoint-override': rnd(Math.floor(Math.random() * 30)),
      'wiremesh.io/persistent-keepalive': rnd(Math.floor(Math.random() * 6)),
    };
    const n = meshNodeFromK8s(k8sNode(ann));
    if (n.publicKey !== null) t.is(Buffer.from(n.publicKey, 'base64').length, 32);
    if (n.endpoint !== null) t.true(parseEndpoint(n.endpoint).ok);
  }
  t.pass();
});

test('KeyObservations: a key keeps the time it was first seen on its node', (t) => {
  const o = new KeyObservations();
  o.observe([{ name: 'n1', key: 'A' }], 1000);
  o.observe(
    [
      { name: 'n1', key: 'A' },
      { name: 'n2', key: 'A' },
    ],
    2000,
  );
  t.deepEqual(
    o.times(),
    new Map([
      ['n1', 1000],
      ['n2', 2000],
    ]),
  );
  // A new key is a new sighting; a withdrawn key or a deleted node is forgotten.
  o.observe(
    [
      { name: 'n1', key: 'B' },
      { name: 'n2', key: null },
    ],
    3000,
  );
  t.deepEqual(o.times(), new Map([['n1', 3000]]));
});

test("a kubelet's Node is kept trimmed: the same MeshNode, and its status reports change nothing", (t) => {
  const key = generateKeyPair().publicKey;
  const full = (heartbeat: string, over: Partial<V1Node['metadata']> = {}): V1Node => ({
    metadata: {
      name: 'n1',
      uid: 'u1',
      resourceVersion: heartbeat,
      creationTimestamp: new Date('2026-01-01T00:00:00Z'),
      labels: { 'kubernetes.io/hostname': 'n1', zone: 'a' },
      annotations: {
        'wiremesh.io/wireguard-public-key': key,
        'wiremesh.io/endpoint': '198.18.0.11:51825',
        'kubeadm.alpha.kubernetes.io/cri-socket': 'unix:///run/containerd/containerd.sock',
        'node.alpha.kubernetes.io/ttl': '0',
      },
      managedFields: [{ manager: 'kubelet', operation: 'Update' }],
      ...over,
    },
    spec: { podCIDR: '10.244.1.0/24', providerID: 'kind://n1' },
    status: {
      addresses: [
        { type: 'InternalIP', address: '198.18.0.11' },
        { type: 'Hostname', address: 'n1' },
      ],
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          lastHeartbeatTime: new Date(heartbeat),
          lastTransitionTime: new Date('2026-01-01T00:00:00Z'),
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
        },
      ],
      images: Array.from({ length: 30 }, (_, i) => ({
        names: [
          `registry.example/app-${i}@sha256:${'0'.repeat(64)}`,
          `registry.example/app-${i}:v1`,
        ],
        sizeBytes: 1e8 + i,
      })),
      nodeInfo: {
        architecture: 'amd64',
        bootID: 'b',
        containerRuntimeVersion: 'containerd://1.6.20',
        kernelVersion: '6.1.0',
        kubeProxyVersion: 'v1.33.13',
        kubeletVersion: 'v1.33.13',
        machineID: 'm',
        operatingSystem: 'linux',
        osImage: 'Debian GNU/Linux 12',
        systemUUID: 's',
      },
    },
  });
  const a = full('2026-01-01T00:00:10Z');
  const trimmed = trimNodeForMesh(a);
  t.deepEqual(meshNodeFromK8s(trimmed), meshNodeFromK8s(a));
  t.deepEqual(trimmed.metadata?.labels, a.metadata?.labels);
  t.deepEqual(Object.keys(trimmed.metadata?.annotations ?? {}).sort(), [
    'wiremesh.io/endpoint',
    'wiremesh.io/wireguard-public-key',
  ]);
  t.true(JSON.stringify(trimmed).length * 5 < JSON.stringify(a).length, 'much smaller');
  // A heartbeat: nothing kept changed.
  t.true(sameNodeForMesh(trimmed, trimNodeForMesh(full('2026-01-01T00:00:50Z'))));
  // A key, an address or a label changed: a change.
  const other = generateKeyPair().publicKey;
  const rekeyed = full('2026-01-01T00:00:50Z');
  rekeyed.metadata!.annotations!['wiremesh.io/wireguard-public-key'] = other;
  t.false(sameNodeForMesh(trimmed, trimNodeForMesh(rekeyed)));
  const moved = full('2026-01-01T00:00:50Z');
  moved.status!.addresses![0]!.address = '198.18.0.99';
  t.false(sameNodeForMesh(trimmed, trimNodeForMesh(moved)));
  const relabelled = full('2026-01-01T00:00:50Z', { labels: { zone: 'b' } });
  t.false(sameNodeForMesh(trimmed, trimNodeForMesh(relabelled)));
});
