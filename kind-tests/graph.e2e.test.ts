// `wiremesh graph -o svg` on a cluster, checked by parsing the SVG: after traffic
// between every pair of nodes, the picture has every node with each of its pod
// blocks (as the IPAMBlocks say), one edge per pair of nodes, green (WireGuard for
// the cluster's encrypted pool), and no problem marked (the agents answer, every
// pair has a fresh handshake). Through the cluster driver only.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { openCluster } from './lab-driver.ts';
import type { ClusterDriver, ClusterPod } from './driver.ts';
import { eventually } from './probes.ts';
import { kubeClient } from '../kube/index.ts';
import { defaultRunner } from '../sys/index.ts';
import { parseGraphSvg as parseSvg } from '../explain/svg.ts';

const NAMESPACE = `wiremesh-e2e-graph-${randomBytes(2).toString('hex')}`;
let driver: ClusterDriver | undefined;
const pods: ClusterPod[] = [];

test.before(async () => {
  driver = await openCluster({ name: 'graph', nodes: 3, podsPerNode: 0 });
  for (const [i, node] of driver.nodeNames().entries())
    pods.push(await driver.createPod(node, NAMESPACE, `p${i}`));
});

test.after.always(async () => {
  if (driver) {
    await kubeClient(driver.kubeconfig)
      .request('DELETE', `/api/v1/namespaces/${NAMESPACE}`)
      .catch(() => {});
    await driver.close();
  }
});

test.serial(
  'the graph shows every node, block and node pair, encrypted, without problems',
  async (t) => {
    const d = driver as ClusterDriver;
    const nodes = d.nodeNames();
    // Traffic between every pair (each node to each other node's pod) makes the handshakes fresh.
    for (const node of nodes)
      for (const pod of pods.filter((p) => p.node !== node))
        await eventually(
          `${node} pings ${pod.name} on ${pod.node}`,
          async () =>
            (
              await d.execInNode(node, ['ping', '-c1', '-W2', pod.ips[0] as string], {
                allowFailure: true,
              })
            ).code === 0,
          30_000,
          500,
        );
    const blocks = await kubeClient(d.kubeconfig).request<{
      items: { spec: { cidr: string; node: string; pool: string } }[];
    }>('GET', '/apis/wiremesh.io/v1alpha1/ipamblocks');
    const res = await defaultRunner.run([
      './bin/wiremesh',
      'graph',
      '--kubeconfig',
      d.kubeconfig,
      '-o',
      'svg',
    ]);
    const items = parseSvg(res.stdout);
    t.deepEqual(
      items
        .filter((i) => i.kind === 'node')
        .map((i) => i.title)
        .sort(),
      [...nodes].sort(),
    );
    for (const b of blocks.items) {
      const node = items.find((i) => i.kind === 'node' && i.title === b.spec.node);
      t.true(
        node?.texts.includes(`${b.spec.cidr} (${b.spec.pool})`),
        `block ${b.spec.cidr} on ${b.spec.node}`,
      );
    }
    const edges = items.filter((i) => i.kind === 'edge');
    t.is(edges.length, (nodes.length * (nodes.length - 1)) / 2);
    for (const e of edges) {
      t.is(e.stroke, 'darkgreen', `${e.title}: ${e.texts.join(' | ')}`);
      t.deepEqual(
        e.texts.filter((x) => x.startsWith('!')),
        [],
        e.title,
      );
      t.true(
        e.texts.some((x) => x.endsWith(': wireguard')),
        e.title,
      );
    }
    t.deepEqual(
      items
        .filter((i) => i.kind === 'node')
        .flatMap((i) => i.texts.filter((x) => x.startsWith('!'))),
      [],
    );
  },
);
