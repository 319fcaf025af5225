import test from 'ava';
import type { ExecutionContext } from 'ava';
import { peerFromK8s, remoteClusterFromK8s } from './k8s.ts';
import { testKey } from './fixtures.ts';

const KEY = testKey(7);
const peerObject = (spec: Record<string, unknown>) => ({
  apiVersion: 'wiremesh.io/v1alpha1',
  kind: 'Peer',
  metadata: { name: 'laptop', uid: 'u1' },
  spec: { publicKey: KEY, allowedIPs: ['100.126.0.1/32'], ...spec },
});

const peerCase = test.macro({
  exec(t: ExecutionContext, spec: Record<string, unknown>, want: string | Record<string, unknown>) {
    const { peer, problems } = peerFromK8s(peerObject(spec));
    if (typeof want === 'string') {
      t.is(peer, null);
      t.regex(problems.map((p) => `${p.reason}: ${p.message}`).join('\n'), new RegExp(want));
    } else {
      t.deepEqual(problems, []);
      t.like(peer, want);
    }
  },
  title: (title = '') => `Peer translation: ${title}`,
});

test(
  'minimal',
  peerCase,
  {},
  {
    name: 'laptop',
    publicKey: KEY,
    endpoint: null,
    allowedIPs: ['100.126.0.1/32'],
    persistentKeepalive: 0,
  },
);
test(
  'endpoint canonicalised, allowedIPs sorted and deduplicated',
  peerCase,
  {
    endpoint: '[2001:DB8::1]:51820',
    allowedIPs: ['fd00:126::/64', '100.126.0.1/32', '100.126.0.1/32'],
    persistentKeepalive: 25,
  },
  {
    endpoint: '[2001:db8::1]:51820',
    allowedIPs: ['100.126.0.1/32', 'fd00:126::/64'],
    persistentKeepalive: 25,
  },
);
test(
  'a key of 31 bytes',
  peerCase,
  { publicKey: Buffer.alloc(31, 1).toString('base64') },
  '^InvalidPublicKey: spec.publicKey',
);
test(
  'a key that is not base64',
  peerCase,
  { publicKey: 'x'.repeat(43) + '!' },
  '^InvalidPublicKey',
);
test('no key', peerCase, { publicKey: undefined }, '^InvalidPublicKey');
test(
  'an endpoint without a port',
  peerCase,
  { endpoint: '198.51.100.7' },
  '^InvalidEndpoint: spec.endpoint has no port',
);
test(
  'an endpoint with a bad port',
  peerCase,
  { endpoint: 'vpn.example.com:70000' },
  '^InvalidEndpoint',
);
test(
  'an allowed IP with host bits',
  peerCase,
  { allowedIPs: ['100.126.0.1/24'] },
  '^InvalidAllowedIPs: spec.allowedIPs: .*host bits',
);
test(
  'an allowed IP that is an address',
  peerCase,
  { allowedIPs: ['100.126.0.1'] },
  '^InvalidAllowedIPs',
);
test(
  'no allowed IPs',
  peerCase,
  { allowedIPs: [] },
  '^InvalidAllowedIPs: spec.allowedIPs must list',
);
test('a keepalive out of range', peerCase, { persistentKeepalive: 65536 }, '^InvalidKeepalive');
test('a keepalive as text', peerCase, { persistentKeepalive: '25' }, '^InvalidKeepalive');

test('RemoteCluster translation: defaults of the Secret reference, pools sorted', (t) => {
  const { cluster, problems } = remoteClusterFromK8s({
    metadata: { name: 'cluster-b', uid: 'u', generation: 3, resourceVersion: '42' },
    spec: { kubeconfigSecretRef: { name: 'cluster-b' }, importPools: ['z', 'default-ipv4', 'z'] },
  });
  t.deepEqual(problems, []);
  t.deepEqual(cluster, {
    name: 'cluster-b',
    uid: 'u',
    generation: 3,
    resourceVersion: '42',
    secretRef: { namespace: 'wiremesh-remotes', name: 'cluster-b', key: 'kubeconfig' },
    importPools: ['default-ipv4', 'z'],
  });
  t.is(
    remoteClusterFromK8s({ metadata: { name: 'b' }, spec: { kubeconfigSecretRef: { name: 'b' } } })
      .cluster?.importPools,
    null,
    'absent importPools imports every pool',
  );
});

for (const [title, spec, reason] of [
  ['no Secret reference', {}, 'InvalidSecretRef'],
  ['a Secret name with capitals', { kubeconfigSecretRef: { name: 'B' } }, 'InvalidSecretRef'],
  [
    'a Secret key with a slash',
    { kubeconfigSecretRef: { name: 'b', key: '../x' } },
    'InvalidSecretRef',
  ],
  [
    'a namespace that is not a name',
    { kubeconfigSecretRef: { name: 'b', namespace: 'a.b' } },
    'InvalidSecretRef',
  ],
  [
    'an empty pool list',
    { kubeconfigSecretRef: { name: 'b' }, importPools: [] },
    'InvalidImportPools',
  ],
  [
    'a pool list with a number',
    { kubeconfigSecretRef: { name: 'b' }, importPools: [1] },
    'InvalidImportPools',
  ],
] as const) {
  test(`RemoteCluster translation refuses ${title}`, (t) => {
    const { cluster, problems } = remoteClusterFromK8s({ metadata: { name: 'b' }, spec });
    t.is(cluster, null);
    t.deepEqual(
      problems.map((p) => [p.object, p.reason]),
      [['RemoteCluster/b', reason]],
    );
  });
}
