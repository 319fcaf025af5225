// Fuzz of the multi-cluster boundary: RemoteCluster and Peer objects (k8s.ts) and
// the kubeconfig text a RemoteCluster's Secret holds (kube/client.ts), all written
// by someone other than the agent. Each never throws (the kubeconfig parser throws
// only an Error that names its source); a kept Peer has a 32-byte key, an endpoint
// that round-trips and canonical allowed IPs; a kept RemoteCluster a usable Secret
// reference; an accepted kubeconfig an http(s) server and no file reference.
import test from 'ava';
import { parse, stringify } from 'yaml';
import { parseEndpoint } from '../agent/endpoint.ts';
import { generateKeyPair, parsePublicKey } from '../crypto/keys.ts';
import { formatCidr, parseCanonicalCidr } from '../ipam/cidr.ts';
import { kubeClientFromKubeconfig } from '../kube/client.ts';
import { expect, fuzz, mutate, mutateString, type Rng } from '../sys/fuzz.ts';
import { peerFromK8s, remoteClusterFromK8s } from './k8s.ts';

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const VALID_REMOTE = {
  metadata: { name: 'cluster-b', uid: 'u', generation: 3, resourceVersion: '10' },
  spec: {
    kubeconfigSecretRef: { namespace: 'wiremesh-remotes', name: 'cluster-b', key: 'kubeconfig' },
    importPools: ['default', 'encrypted'],
  },
};
const NEAR_REMOTE: unknown[] = ['default', 'Default', 'a..b', '-a', 'kube-system', [], ['x', 'x']];

test('fuzz: a kept RemoteCluster has a usable Secret reference and pool list', (t) => {
  let kept = 0;
  fuzz(
    0x72656d6f,
    4000,
    (rng) => mutate(rng, VALID_REMOTE, NEAR_REMOTE),
    (raw) => {
      const { cluster, problems } = remoteClusterFromK8s(raw);
      if (!cluster) {
        expect(problems.length > 0, 'refused without a problem');
        for (const p of problems) {
          expect(/spec\.\w+|name/.test(p.message), `'${p.message}' names no field`);
        }
        return;
      }
      kept++;
      expect(problems.length === 0, 'kept with problems');
      expect(NAME.test(cluster.name), `name '${cluster.name}'`);
      const ref = cluster.secretRef;
      expect(
        typeof ref.namespace === 'string' && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ref.namespace),
        `namespace ${String(ref.namespace)}`,
      );
      expect(typeof ref.name === 'string' && NAME.test(ref.name), `name ${String(ref.name)}`);
      expect(typeof ref.key === 'string' && /^[-._a-zA-Z0-9]+$/.test(ref.key), 'secret key');
      if (cluster.importPools !== null) {
        const pools = cluster.importPools;
        expect(pools.length >= 1 && pools.length <= 64, 'pool list length');
        expect(
          pools.every((p, i) => NAME.test(p) && (i === 0 || pools[i - 1]! < p)),
          'pool list not sorted, unique names',
        );
      }
      expect(Number.isInteger(cluster.generation), 'generation');
    },
  );
  t.true(kept > 500 && kept < 3900, `${kept} of 4000 kept`);
});

// Generating a key costs a scalar multiplication: draw from a few made up front.
const KEYS = Array.from(
  { length: 8 },
  (_, i) => generateKeyPair((n) => Buffer.alloc(n, i + 1)).publicKey,
);

function validPeer(rng: Rng) {
  return {
    metadata: { name: 'laptop', uid: 'p' },
    spec: {
      publicKey: rng.pick(KEYS),
      endpoint: '198.18.0.9:51820',
      allowedIPs: ['10.9.0.0/24', 'fd00:9::/64'],
      persistentKeepalive: 25,
    },
  };
}
const NEAR_PEER: unknown[] = [
  '10.9.0.1/24',
  '10.9.0.0/33',
  '[fd00::1]:51820',
  'fd00::1:51820',
  'vpn.example.org:51820',
  'vpn.example.org',
  '198.18.0.9:0',
  'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
  'YWJj',
  65535,
  65536,
  -1,
  1.5,
  Array.from({ length: 65 }, (_, i) => `10.${i}.0.0/16`),
];

test('fuzz: a kept Peer has a 32-byte key, a round-tripping endpoint, canonical allowed IPs', (t) => {
  let kept = 0;
  fuzz(
    0x70656572,
    4000,
    (rng) => mutate(rng, validPeer(rng), NEAR_PEER),
    (raw) => {
      const { peer, problems } = peerFromK8s(raw);
      if (!peer) {
        expect(problems.length > 0, 'refused without a problem');
        for (const p of problems) {
          expect(/spec\.\w+|name/.test(p.message), `'${p.message}' names no field`);
        }
        return;
      }
      kept++;
      expect(problems.length === 0, 'kept with problems');
      expect(parsePublicKey(peer.publicKey).ok, 'kept a key the parser refuses');
      expect(Buffer.from(peer.publicKey, 'base64').length === 32, 'key not 32 bytes');
      if (peer.endpoint !== null) {
        const again = parseEndpoint(peer.endpoint);
        expect(again.ok && again.endpoint === peer.endpoint, `endpoint '${peer.endpoint}'`);
      }
      const ips = peer.allowedIPs;
      expect(ips.length >= 1 && ips.length <= 64, 'allowedIPs length');
      for (const [i, c] of ips.entries()) {
        const parsed = parseCanonicalCidr(c);
        expect(parsed.ok && formatCidr(parsed.value) === c, `allowed IP '${c}' not canonical`);
        expect(i === 0 || ips[i - 1]! < c, 'allowedIPs not sorted and unique');
      }
      const ka = peer.persistentKeepalive;
      expect(Number.isInteger(ka) && ka >= 0 && ka <= 65535, `keepalive ${ka}`);
    },
  );
  t.true(kept > 500 && kept < 3900, `${kept} of 4000 kept`);
});

const VALID_KUBECONFIG = {
  apiVersion: 'v1',
  kind: 'Config',
  'current-context': 'remote',
  contexts: [{ name: 'remote', context: { cluster: 'b', user: 'reader' } }],
  clusters: [
    {
      name: 'b',
      cluster: { server: 'https://198.18.1.1:6443/', 'certificate-authority-data': 'Zm9v' },
    },
  ],
  users: [
    {
      name: 'reader',
      user: { token: 'abc', 'client-certificate-data': 'Zm9v', 'client-key-data': 'YmFy' },
    },
  ],
};
const NEAR_KUBECONFIG: unknown[] = [
  'remote',
  'b',
  'reader',
  'https://[fd00::1]:6443',
  'http://127.0.0.1:8080',
  'ftp://x',
  '/etc/kubernetes/pki/ca.crt',
  '/var/lib/wiremesh/private-key',
  { tokenFile: '/var/lib/wiremesh/private-key' },
  { 'client-key': '/etc/ssh/ssh_host_ed25519_key' },
  { 'certificate-authority': '/etc/ca.crt', server: 'https://x' },
];

/** The file references a kubeconfig makes where a client reads them. */
function fileRefs(text: string): string[] {
  const doc = parse(text) as {
    clusters?: { cluster?: Record<string, unknown> }[];
    users?: { user?: Record<string, unknown> }[];
  };
  return [
    ...(doc.clusters ?? []).flatMap((c) =>
      c.cluster?.['certificate-authority'] ? ['certificate-authority'] : [],
    ),
    ...(doc.users ?? []).flatMap((u) =>
      ['client-certificate', 'client-key', 'tokenFile'].filter((k) => u.user?.[k]),
    ),
  ];
}

function kubeconfigText(rng: Rng): string {
  const r = rng.next();
  if (r < 0.8) return stringify(mutate(rng, VALID_KUBECONFIG, NEAR_KUBECONFIG));
  const text = stringify(VALID_KUBECONFIG);
  return r < 0.95 ? mutateString(rng, text) : rng.pick(['', '42', '[]', '{', '*a', '!!binary x']);
}

test('fuzz: a Secret kubeconfig either yields a client for an http(s) server or an error naming the Secret', (t) => {
  const source = 'Secret wiremesh-remotes/b key kubeconfig';
  let accepted = 0;
  fuzz(0x6b756265, 1000, kubeconfigText, (text) => {
    let server: string;
    try {
      server = kubeClientFromKubeconfig(text, source).server;
    } catch (e) {
      expect(e instanceof Error, 'threw something that is not an Error');
      expect(e.message.startsWith(`${source}: `), `error does not name the Secret: ${e.message}`);
      return;
    }
    accepted++;
    const url = URL.canParse(server) ? new URL(server) : null;
    expect(url !== null && /^https?:$/.test(url.protocol), `server '${server}'`);
    const refs = fileRefs(text);
    expect(refs.length === 0, `accepted file references ${refs.join(', ')}`);
  });
  t.true(accepted > 200, `only ${accepted} kubeconfigs accepted`);
});
