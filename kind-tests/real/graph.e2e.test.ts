// `wiremesh graph -o svg` on a cluster, checked by parsing the SVG. The cluster has
// two pools (its encrypted default pool and a plaintext VXLAN pool made here, with
// a pod of each on every node) and one external Peer (a Peer object whose machine
// does not exist). The picture must have every node with each of its pod blocks
// (as the IPAMBlocks say), one edge per pair of nodes naming each pool's path
// (WireGuard and VXLAN, so coloured as plaintext), the Peer with an edge from every
// node marked "no handshake ever" (the agents program it, nobody answers), and,
// once one node's agent is frozen, that node marked as not answering. Through the
// cluster driver only; in the cluster tier (the real-node lab): the graph's claims are
// about the cluster users run.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { openCluster } from '../lab-driver.ts';
import type { ClusterDriver, ClusterPod } from '../driver.ts';
import { eventually } from '../probes.ts';
import { KubeApiError, kubeClient, type KubeClient } from '../../kube/index.ts';
import { defaultRunner } from '../../sys/index.ts';
import { generateKeyPair } from '../../crypto/keys.ts';
import { parseGraphSvg as parseSvg, type SvgItem } from '../../explain/svg.ts';

const suffix = randomBytes(2).toString('hex');
const NAMESPACE = `wiremesh-e2e-graph-${suffix}`;
const PLAIN_NAMESPACE = `wiremesh-e2e-graph-plain-${suffix}`;
const PLAIN_POOL = `e2e-graph-plain-${suffix}`;
const PLAIN_CIDR = '100.80.0.0/16';
const PEER = `e2e-graph-${suffix}`;
const PEER_IP = '198.51.100.7/32';
const WM = '/apis/wiremesh.io/v1alpha1';
let driver: ClusterDriver | undefined;
const pods: ClusterPod[] = [];

const d = () => driver as ClusterDriver;
const kube = (): KubeClient => kubeClient(d().kubeconfig);

const ignoreMissing = (e: unknown) => {
  if (!(e instanceof KubeApiError && e.status === 404)) throw e;
};

test.before(async () => {
  driver = await openCluster({ name: 'graph', nodes: 3, podsPerNode: 0 });
  await kube().request('POST', `${WM}/ippools`, {
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'IPPool',
    metadata: { name: PLAIN_POOL },
    spec: {
      cidr: PLAIN_CIDR,
      encryption: 'None',
      encryptionMode: 'Preferred',
      encapsulation: 'VXLAN',
    },
  });
  await kube().request('POST', '/api/v1/namespaces', {
    metadata: { name: PLAIN_NAMESPACE, annotations: { 'wiremesh.io/ippool': PLAIN_POOL } },
  });
  await kube().request('POST', `${WM}/peers`, {
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'Peer',
    metadata: { name: PEER },
    spec: { publicKey: generateKeyPair().publicKey, allowedIPs: [PEER_IP] },
  });
  // The agents learn the pool and the namespace's annotation from their watches.
  await new Promise((r) => setTimeout(r, 2000));
  for (const [i, node] of d().nodeNames().entries()) {
    pods.push(await d().createPod(node, NAMESPACE, `p${i}`));
    pods.push(await d().createPod(node, PLAIN_NAMESPACE, `q${i}`));
  }
});

test.after.always(async () => {
  if (!driver) return;
  const k = kube();
  await k.request('DELETE', `${WM}/peers/${PEER}`).catch(ignoreMissing);
  for (const ns of [NAMESPACE, PLAIN_NAMESPACE])
    await k.request('DELETE', `/api/v1/namespaces/${ns}`).catch(ignoreMissing);
  // The pool goes once its pods are gone; its emptied blocks are the agents' to free.
  await eventually(
    'the graph suite pods gone',
    async () =>
      (
        await Promise.all(
          [NAMESPACE, PLAIN_NAMESPACE].map((ns) =>
            k
              .request<{ items: unknown[] }>('GET', `/api/v1/namespaces/${ns}/pods`)
              .then((l) => l.items.length)
              .catch(() => 0),
          ),
        )
      ).every((n) => n === 0),
    120_000,
    1000,
  ).catch(() => {});
  await k.request('DELETE', `${WM}/ippools/${PLAIN_POOL}`).catch(ignoreMissing);
  await driver.close();
});

async function graph(): Promise<SvgItem[]> {
  const res = await defaultRunner.run([
    './bin/wiremesh',
    'graph',
    '--kubeconfig',
    d().kubeconfig,
    '-o',
    'svg',
  ]);
  return parseSvg(res.stdout);
}

const problems = (i: SvgItem | undefined) => i?.texts.filter((x) => x.startsWith('!')) ?? [];

test.serial(
  'the graph shows every node and block, both pools on every pair, and the Peer',
  async (t) => {
    const nodes = d().nodeNames();
    t.true(
      pods.every((p) => p.namespace !== PLAIN_NAMESPACE || p.ips[0]?.startsWith('100.80.')),
      `the plain namespace's pods take ${PLAIN_POOL}: ${pods.map((p) => `${p.name} ${p.ips[0]}`).join(', ')}`,
    );
    // Traffic between every pair (each node to each other node's pod) makes the handshakes fresh.
    for (const node of nodes)
      for (const pod of pods.filter((p) => p.node !== node && p.namespace === NAMESPACE))
        await eventually(
          `${node} pings ${pod.name} on ${pod.node}`,
          async () =>
            (
              await d().execInNode(node, ['ping', '-c1', '-W2', pod.ips[0] as string], {
                allowFailure: true,
              })
            ).code === 0,
          30_000,
          500,
        );
    const blocks = await kube().request<{
      items: { spec: { cidr: string; node: string; pool: string } }[];
    }>('GET', `${WM}/ipamblocks`);
    const items = await graph();
    t.deepEqual(
      items
        .filter((i) => i.kind === 'node')
        .map((i) => i.title)
        .sort(),
      [...nodes, `peer/${PEER}`].sort(),
    );
    for (const b of blocks.items.filter((x) => nodes.includes(x.spec.node))) {
      const node = items.find((i) => i.kind === 'node' && i.title === b.spec.node);
      t.true(
        node?.texts.includes(`${b.spec.cidr} (${b.spec.pool})`),
        `block ${b.spec.cidr} on ${b.spec.node}`,
      );
    }
    for (const n of nodes)
      t.deepEqual(problems(items.find((i) => i.kind === 'node' && i.title === n)), [], n);
    const peer = items.find((i) => i.kind === 'node' && i.title === `peer/${PEER}`);
    t.true(peer?.texts.includes(PEER_IP), `the Peer's allowed IPs: ${peer?.texts.join(' | ')}`);

    const edges = items.filter((i) => i.kind === 'edge');
    const between = edges.filter((e) => !e.title.includes('peer/'));
    t.is(between.length, (nodes.length * (nodes.length - 1)) / 2);
    for (const e of between) {
      const what = `${e.title}: ${e.texts.join(' | ')}`;
      t.is(e.stroke, 'darkorange', what);
      t.deepEqual(problems(e), [], what);
      t.true(
        e.texts.some((x) => x.endsWith(': wireguard')),
        what,
      );
      t.true(e.texts.includes(`${PLAIN_POOL}: vxlan`), what);
    }
    const toPeer = edges.filter((e) => e.title.endsWith(`--peer/${PEER}`));
    t.deepEqual(toPeer.map((e) => e.title.split('--')[0]).sort(), [...nodes].sort());
    for (const e of toPeer) {
      const node = e.title.split('--')[0];
      t.deepEqual(problems(e), [`! ${node}: no handshake ever`], e.title);
    }
  },
);

test.serial('a node whose agent is frozen is marked as not answering', async (t) => {
  const nodes = d().nodeNames();
  const stopped = nodes[nodes.length - 1] as string;
  const thaw = await d().pauseAgent(stopped);
  try {
    const items = await graph();
    const node = (n: string) => items.find((i) => i.kind === 'node' && i.title === n);
    t.deepEqual(problems(node(stopped)), ['! agent not answering']);
    for (const n of nodes.filter((x) => x !== stopped)) t.deepEqual(problems(node(n)), [], n);
    // Its pairs and its Peer edge are still drawn, from what the API and the other agents say.
    t.is(
      items.filter((i) => i.kind === 'edge' && i.title.split('--').includes(stopped)).length,
      nodes.length,
    );
  } finally {
    await thaw();
  }
});
