// What a real cluster adds to pod networking, on the real-node lab (kube-proxy in
// nftables mode, CoreDNS, a kubeadm control plane on one node): a ClusterIP
// Service and its DNS name work from a pod on another node; a pod on a node
// without the control plane reaches the apiserver through the `kubernetes`
// Service (the apiserver answers from its own node address, through the mesh);
// a pod reaches a hostNetwork server on another node's own address; all of it
// crosses the underlay as WireGuard only, with host encryption off and on; and a
// pod the kubelet deletes gives its address back. Run by the cluster tier
// (WIREMESH_E2E_CLUSTER=real).
import test from 'ava';
import { openCluster } from '../lab-driver.ts';
import { KindDriver, probePod } from '../kind-driver.ts';
import type { ClusterPod } from '../driver.ts';
import { eventually, WIREGUARD_PACKET } from '../probes.ts';
import { runProbes, serveArgv, type Exec } from '../netpol/prober.ts';

const NAMESPACE = 'wiremesh-e2e-svc';
const PORT = 8080;
// The hostNetwork server's port on its node's own address.
const HOST_PORT = 18081;
let driver: KindDriver | undefined;
let server: ClusterPod | undefined;
let client: ClusterPod | undefined;
let hostServerNode = '';

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
  // A hostNetwork server, as a node-level service (or an apiserver) is: it answers
  // from the node's own address, not from a pod address.
  hostServerNode = serverNode;
  const hostServer = probePod(
    serverNode,
    NAMESPACE,
    'host-server',
    {},
    [],
    serveArgv([HOST_PORT], 'host-server', driver.proberPath()),
  ) as { spec: Record<string, unknown> };
  hostServer.spec.hostNetwork = true;
  await driver.kubectl.apply('-', JSON.stringify(hostServer));
  await driver.kubectl.wait(['pod/host-server'], 'condition=Ready', {
    namespace: NAMESPACE,
    timeoutSeconds: 120,
  });
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

/** GET /livez of the apiserver through the `kubernetes` Service, from the client pod. */
async function apiserverLivez(c: ClusterPod): Promise<void> {
  await eventually(
    'GET https://kubernetes.default.svc/livez from the client pod',
    async () => {
      const res = await d().execInPod(
        c.namespace,
        c.name,
        ['curl', '-sk', '--max-time', '3', 'https://kubernetes.default.svc/livez'],
        { allowFailure: true },
      );
      return res.code === 0 && res.stdout.trim() === 'ok';
    },
    60_000,
    1000,
  );
}

/** The hostNetwork server answers `from` (the client pod, or a node by its probe). */
async function reachHostServer(from: ClusterPod | { node: string }): Promise<void> {
  const ip = d().underlayIP(hostServerNode);
  const exec: Exec =
    'name' in from
      ? (argv, o) => d().execInPod(from.namespace, from.name, argv, o)
      : (argv, o) => d().execInNode(from.node, argv, o);
  await eventually(
    `${'name' in from ? from.name : from.node} -> host-server at ${ip}:${HOST_PORT}`,
    async () => {
      const [r] = await runProbes(
        exec,
        [{ proto: 'TCP', ip, port: HOST_PORT }],
        1000,
        d().proberPath(),
      );
      return r?.result === 'reachable' && r.answer === 'host-server';
    },
    60_000,
    500,
  );
}

async function setHostEncryption(on: boolean): Promise<void> {
  await d().kubectl.run([
    '-n',
    'kube-system',
    'patch',
    'configmap',
    'wiremesh-config',
    '--type=merge',
    '-p',
    JSON.stringify({ data: { 'host-encryption': String(on) } }),
  ]);
  await d().kubectl.run(['-n', 'kube-system', 'rollout', 'restart', 'daemonset/wiremesh-agent']);
  await d().kubectl.rolloutStatus('daemonset', 'wiremesh-agent', 'kube-system', 300);
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
    try {
      await apiserverLivez(c);
    } finally {
      const w = await wire.stop();
      // The cluster's own traffic (kubelets to the apiserver) is left out of the
      // capture; what remains between the nodes must be WireGuard, never the pod.
      for (const line of w.lines) t.regex(line, WIREGUARD_PACKET, line);
      t.false(
        w.lines.some((l) => l.includes(c.ips[0] ?? '-')),
        'the pod address never crosses the underlay',
      );
    }
  },
);

test.serial(
  "a pod reaches a hostNetwork server on another node's own address, encrypted",
  async (t) => {
    if (!client) throw new Error('pods missing');
    const c = client;
    t.not(c.node, hostServerNode, 'client and host-server on different nodes');
    const wire = await d().captureUnderlay(c.node, 'ip');
    try {
      await reachHostServer(c);
    } finally {
      const w = await wire.stop();
      t.true(w.lines.length > 0, 'the capture saw the exchange');
      for (const line of w.lines) t.regex(line, WIREGUARD_PACKET, line);
      t.false(
        w.lines.some((l) => l.includes(c.ips[0] ?? '-')),
        'the pod address never crosses the underlay',
      );
    }
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

// Last: it restarts the agents twice (on, then off again).
test.serial(
  "with host encryption on, the apiserver, a hostNetwork server and the nodes' own traffic cross the underlay as WireGuard only",
  async (t) => {
    // Two rolling restarts of every agent: longer than ava's inactivity timeout on a
    // slow machine.
    t.timeout(15 * 60_000);
    if (!client) throw new Error('pods missing');
    const c = client;
    const nodeIPs = d()
      .nodeNames()
      .map((n) => d().underlayIP(n));
    const hosts = nodeIPs.map((ip) => `host ${ip}`).join(' or ');
    try {
      await setHostEncryption(true);
      // The mesh is back (the restart took wireguard-go down) before the capture.
      await reachHostServer(c);
      // Everything between the nodes this time, the kubelets' and apiserver's too.
      const wire = await d().captureInNode(
        c.node,
        await d().underlayLink(c.node),
        `ip and (src ${hosts}) and (dst ${hosts})`,
      );
      try {
        await apiserverLivez(c);
        await reachHostServer(c);
        await reachHostServer({ node: c.node });
        // kubectl exec and logs go apiserver -> kubelet on the client's node.
        await d().execInPod(c.namespace, c.name, ['true']);
      } finally {
        const w = await wire.stop();
        t.true(w.lines.length > 0, 'the capture saw the nodes talk');
        const plain = w.lines.filter((l) => !WIREGUARD_PACKET.test(l));
        t.deepEqual(
          plain.slice(0, 10),
          [],
          `${plain.length} of ${w.lines.length} packets were not WireGuard`,
        );
      }
    } finally {
      await setHostEncryption(false);
    }
    // And the pod path still works once host encryption is off again.
    await reachHostServer(c);
  },
);
