// Pods wired by the wiremesh CNI plugin, end to end on any cluster the driver opens
// (a 3-node lab here, kind where Docker exists): two pods per node, each serving TCP
// and UDP with wiremesh-prober; every pod reaches every other pod, on its node and
// across nodes, by ping and by TCP and UDP answered by the intended pod; addresses
// are unique, match status.podIPs and come from IPAMBlocks their node holds; and
// pod traffic between nodes is WireGuard on the underlay, never plaintext. The
// plugin's own protocol (DEL, error codes through the relay, the agent down,
// cnitool, chaining) is exercised on lab nodes in pods-lab.e2e.test.ts.
import test from 'ava';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { openCluster } from './lab-driver.ts';
import type { ClusterDriver, ClusterPod } from './driver.ts';
import { eventually } from './probes.ts';
import { runProbes, serveArgv, type Protocol } from './netpol/prober.ts';
import type { RunResult } from '../sys/index.ts';

const NAMESPACE = 'default';
const PORT = 8080;
const PODS_PER_NODE = 2;
let driver: ClusterDriver | undefined;
let core: CoreV1Api;
let objects: CustomObjectsApi;
const pods: ClusterPod[] = [];

const d = (): ClusterDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};
const id = (p: ClusterPod) => `${p.namespace}/${p.name}`;

test.before(async () => {
  driver = await openCluster({
    name: 'drvpods',
    nodes: 3,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
  });
  const kc = new KubeConfig();
  kc.loadFromFile(driver.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  objects = kc.makeApiClient(CustomObjectsApi);
  for (const node of driver.nodeNames()) {
    for (let j = 1; j <= PODS_PER_NODE; j++) {
      const name = `pods-${pods.length + 1}`;
      pods.push(
        await driver.createPod(
          node,
          NAMESPACE,
          name,
          { app: 'wiremesh-e2e-pods' },
          [{ name: 'probe-tcp', containerPort: PORT, protocol: 'TCP' }],
          serveArgv([PORT], `${NAMESPACE}/${name}`, driver.proberPath()),
        ),
      );
    }
  }
});

test.after.always(async () => {
  if (!driver) return;
  try {
    for (const p of pods) await driver.deletePod(p.namespace, p.name);
  } finally {
    await driver.close();
  }
});

test.serial(
  'every pod reaches every other pod by ping, on its node and across nodes',
  async (t) => {
    t.is(pods.length, d().nodeNames().length * PODS_PER_NODE);
    // Routes to a new pod's block reach the other nodes within a reconcile: each pair
    // gets a few seconds to converge, then must answer.
    const failures: string[] = [];
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue;
        const reach = async () =>
          (
            await d().execInPod(
              from.namespace,
              from.name,
              ['ping', '-c', '1', '-W', '1', to.ips[0] ?? ''],
              { allowFailure: true },
            )
          ).code === 0;
        try {
          await eventually(`${from.name} -> ${to.name}`, reach, 10_000, 200);
        } catch {
          failures.push(`${from.name} (${from.node}) -> ${to.name} (${to.node})`);
        }
      }
    }
    t.deepEqual(failures, [], 'ping matrix');
  },
);

test.serial(
  'every pod reaches every other pod over TCP and UDP, answered by the pod it addressed',
  async (t) => {
    const protocols: Protocol[] = ['TCP', 'UDP'];
    let last: string[] = [];
    const ms = await eventually(
      'the TCP and UDP matrix',
      async () => {
        const failures: string[] = [];
        await Promise.all(
          pods.map(async (from) => {
            const targets = pods
              .filter((to) => to !== from)
              .flatMap((to) =>
                protocols.map((proto) => ({ proto, ip: to.ips[0] ?? '', port: PORT, to })),
              );
            const results = await runProbes(
              (argv, o) => d().execInPod(from.namespace, from.name, argv, o),
              targets.map(({ proto, ip, port }) => ({ proto, ip, port })),
              1000,
              d().proberPath(),
            );
            results.forEach((r, i) => {
              const to = targets[i]?.to;
              if (!to || r.result !== 'reachable' || r.answer !== id(to))
                failures.push(
                  `${from.name} -> ${to?.name} ${r.proto}/${r.port}: ${r.result}${r.answer ? ` (answered by ${r.answer})` : ''}`,
                );
            });
          }),
        );
        last = failures;
        return failures.length === 0;
      },
      30_000,
      500,
    ).catch(() => undefined);
    t.deepEqual(last, [], 'TCP and UDP matrix (the last round)');
    if (ms !== undefined) t.log(`the whole matrix answered after ${ms} ms`);
  },
);

test.serial(
  'pod addresses are unique, match status.podIPs, and come from blocks their node holds',
  async (t) => {
    const all = pods.flatMap((p) => p.ips);
    t.is(new Set(all).size, all.length, `unique: ${all.join(', ')}`);
    type Blocks = {
      items: {
        spec: {
          cidr: string;
          node: string;
          allocations?: Record<string, { address: string; pod?: string }>;
        };
      }[];
    };
    const blocks = async () =>
      (await objects.listClusterCustomObject({
        group: 'wiremesh.io',
        version: 'v1alpha1',
        plural: 'ipamblocks',
      })) as Blocks;
    for (const pod of pods) {
      const obj = await core.readNamespacedPod({ namespace: pod.namespace, name: pod.name });
      t.deepEqual(
        obj.status?.podIPs?.map((p) => p.ip),
        pod.ips,
        `${pod.name}: status.podIPs`,
      );
      await eventually(`${pod.name}'s allocation in its node's IPAMBlock`, async () =>
        (await blocks()).items.some(
          (b) =>
            b.spec.node === pod.node &&
            Object.values(b.spec.allocations ?? {}).some(
              (a) => a.address === pod.ips[0] && a.pod === pod.name,
            ),
        ),
      );
    }
    const nodesWithBlocks = new Set((await blocks()).items.map((b) => b.spec.node));
    for (const node of d().nodeNames()) t.true(nodesWithBlocks.has(node), `${node} holds a block`);
  },
);

/** A command that runs while the test goes on (a one-connection sink); its result later. */
function meanwhile(run: Promise<RunResult>): () => Promise<RunResult> {
  const settled = run.then(
    (r) => ({ ok: true as const, r }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  return async () => {
    const s = await settled;
    if (!s.ok) throw s.e;
    return s.r;
  };
}

test.serial(
  'pod-to-pod traffic between nodes is WireGuard on the underlay, never plaintext',
  async (t) => {
    const [n1, n2] = d().nodeNames();
    const from = pods.find((p) => p.node === n1);
    const to = pods.find((p) => p.node === n2);
    if (!from || !to) throw new Error('pods missing');
    const ip = to.ips[0] ?? '';
    const marker = `WIREMESH-POD-MARKER-${Date.now()}`;
    const wire = await d().captureUnderlay(to.node, 'ip');
    const inside = await d().captureInNode(to.node, 'wiremesh.wg');
    const inPod = (
      p: ClusterPod,
      argv: string[],
      opts?: Parameters<ClusterDriver['execInPod']>[3],
    ) => d().execInPod(p.namespace, p.name, argv, opts);
    const sink = meanwhile(
      inPod(
        to,
        ['timeout', '30', 'socat', '-u', `TCP-LISTEN:7004,bind=${ip},reuseaddr`, 'OPEN:/dev/null'],
        {
          timeoutMs: 40_000,
        },
      ),
    );
    await eventually('the sink', async () =>
      (await inPod(to, ['ss', '-Hltn', 'sport = :7004'])).stdout.includes('7004'),
    );
    await inPod(from, ['socat', '-u', 'STDIN', `TCP:${ip}:7004`], {
      input: `${marker}\n`.repeat(200),
      timeoutMs: 20_000,
    });
    await sink();
    const w = await wire.stop();
    const i = await inside.stop();
    t.true(i.raw.includes(marker), 'control: the marker crossed the tunnel');
    t.false(w.raw.includes(marker), 'the marker never appears on the underlay');
    t.true(w.lines.length > 0, 'the capture saw the traffic');
    for (const line of w.lines) t.regex(line, /\.51825[ :].*UDP|UDP.*\.51825/, line);
    t.false(
      w.lines.some((l) => l.includes(ip) || l.includes(from.ips[0] ?? '-')),
      'no pod address on the underlay',
    );
  },
);
