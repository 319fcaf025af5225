// What a real cluster adds to pod networking, on the real-node lab (kube-proxy in
// nftables mode, CoreDNS, a kubeadm control plane on one node): a ClusterIP
// Service and its DNS name work from a pod on another node; a pod on a node
// without the control plane reaches the apiserver through the `kubernetes`
// Service (the apiserver answers from its own node address, through the mesh);
// all of it crosses the underlay as WireGuard only; and a pod the kubelet deletes
// gives its address back. Run by the cluster tier (WIREMESH_E2E_CLUSTER=real).
import test from 'ava';
import { openCluster } from '../lab-driver.ts';
import { KindDriver } from '../kind-driver.ts';
import type { ClusterPod } from '../driver.ts';
import { eventually } from '../probes.ts';
import { runProbes, serveArgv } from '../netpol/prober.ts';

const NAMESPACE = 'wiremesh-e2e-svc';
const PORT = 8080;
let driver: KindDriver | undefined;
let server: ClusterPod | undefined;
let client: ClusterPod | undefined;

const d = (): KindDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};

test.before(async () => {
  const opened = await openCluster({ name: 'svc', nodes: 3, podsPerNode: 0 });
  if (!(opened instanceof KindDriver))
    throw new Error('this suite needs a kubeadm cluster (WIREMESH_E2E_CLUSTER=real or kind)');
  driver = opened;
  const nodes = driver.nodeNames();
  const controlPlane = (
    await driver.kubectl.json<{ items: { metadata: { name: string } }[] }>([
      'get',
      'nodes',
      '-l',
      'node-role.kubernetes.io/control-plane',
    ])
  ).items.map((n) => n.metadata.name);
  // The client on a node without the apiserver, the server on yet another one.
  const workers = nodes.filter((n) => !controlPlane.includes(n));
  const [clientNode, serverNode] = [workers[0], workers[1] ?? nodes[0]];
  if (!clientNode || !serverNode) throw new Error(`too few nodes: ${nodes.join(', ')}`);
  server = await driver.createPod(
    serverNode,
    NAMESPACE,
    'server',
    { app: 'svc-server' },
    [{ name: 'http', containerPort: PORT, protocol: 'TCP' }],
    serveArgv([PORT], 'svc-server', driver.proberPath()),
  );
  client = await driver.createPod(clientNode, NAMESPACE, 'client');
  await driver.kubectl.apply(
    '-',
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'echo', namespace: NAMESPACE },
      spec: { selector: { app: 'svc-server' }, ports: [{ port: 80, targetPort: PORT }] },
    }),
  );
});

test.after.always(async () => {
  if (driver) await driver.kubectl.deleteNamespace(NAMESPACE).catch(() => {});
  if (driver) await driver.close();
});

async function clusterIP(): Promise<string> {
  const svc = await d().kubectl.json<{ spec: { clusterIP: string } }>([
    'get',
    'service',
    '-n',
    NAMESPACE,
    'echo',
  ]);
  return svc.spec.clusterIP;
}

test.serial(
  'a ClusterIP Service on another node answers, by address and by DNS name',
  async (t) => {
    if (!client || !server) throw new Error('pods missing');
    const c = client;
    const ip = await clusterIP();
    t.not(c.node, server.node, 'client and server on different nodes');
    await eventually(
      `${c.name} -> Service echo at ${ip}:80`,
      async () => {
        const [r] = await runProbes(
          (argv, o) => d().execInPod(c.namespace, c.name, argv, o),
          [{ proto: 'TCP', ip, port: 80 }],
          1000,
          d().proberPath(),
        );
        return r?.result === 'reachable' && r.answer === 'svc-server';
      },
      30_000,
      500,
    );
    const name = `echo.${NAMESPACE}.svc.cluster.local`;
    let answer = '';
    await eventually(
      `CoreDNS answers ${name}`,
      async () => {
        const res = await d().execInPod(c.namespace, c.name, ['nslookup', name], {
          allowFailure: true,
        });
        answer = res.stdout;
        return res.code === 0 && answer.includes(ip);
      },
      30_000,
      1000,
    );
    t.true(answer.includes(ip), `${name} -> ${ip}`);
  },
);

test.serial(
  "a pod reaches the apiserver on another node through the 'kubernetes' Service, encrypted",
  async (t) => {
    if (!client) throw new Error('pods missing');
    const c = client;
    const wire = await d().captureUnderlay(c.node, 'ip');
    let out = '';
    try {
      await eventually(
        'GET https://kubernetes.default.svc/livez from the client pod',
        async () => {
          const res = await d().execInPod(
            c.namespace,
            c.name,
            ['curl', '-sk', '--max-time', '3', 'https://kubernetes.default.svc/livez'],
            { allowFailure: true },
          );
          out = res.stdout.trim();
          return res.code === 0 && out === 'ok';
        },
        30_000,
        1000,
      );
    } finally {
      const w = await wire.stop();
      // The cluster's own traffic (kubelets to the apiserver) is left out of the
      // capture; what remains between the nodes must be WireGuard, never the pod.
      for (const line of w.lines) t.regex(line, /\.51825[ :].*UDP|UDP.*\.51825/, line);
      t.false(
        w.lines.some((l) => l.includes(c.ips[0] ?? '-')),
        'the pod address never crosses the underlay',
      );
    }
    t.is(out, 'ok');
  },
);

test.serial('a pod deleted by the kubelet gives its address back to its block', async (t) => {
  const pod = await d().createPod(d().nodeNames()[0] ?? '', NAMESPACE, 'shortlived');
  const ip = pod.ips[0] ?? '';
  type Blocks = {
    items: { spec: { node: string; allocations?: Record<string, { address: string }> } }[];
  };
  const allocated = async () =>
    (await d().kubectl.json<Blocks>(['get', 'ipamblocks.wiremesh.io'])).items.some(
      (b) =>
        b.spec.node === pod.node &&
        Object.values(b.spec.allocations ?? {}).some((a) => a.address === ip),
    );
  await eventually(`${ip} allocated in ${pod.node}'s block`, allocated, 15_000, 500);
  await d().deletePod(NAMESPACE, 'shortlived');
  await eventually(`${ip} released`, async () => !(await allocated()), 30_000, 500);
  t.false(await allocated(), `${ip} is free again`);
});
