// Drop accounting and `wiremesh explain` on a cluster: a client pod on one node, a
// server pod on another; a NetworkPolicy isolating the server blocks the client's
// probes, the drop counter of that policy on the server's node grows by at least the
// probes' packets (wiremesh_policy_drops_total, scraped from the agent's metrics
// endpoint as Prometheus would), and `wiremesh explain` (the command, with the
// cluster's kubeconfig) names the same policy for the blocked flow and the path as
// WireGuard. Then the namespace asks for the log of its dropped flows (annotation
// wiremesh.io/log-drops), and the server node's agent logs the blocked flow with the
// policy that dropped it. Through the cluster driver (the log read with kubectl, so
// on a kubeadm cluster: the real-node lab or kind).
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { openCluster } from '../lab-driver.ts';
import { KindDriver } from '../kind-driver.ts';
import type { ClusterDriver, ClusterPod } from '../driver.ts';
import { eventually } from '../probes.ts';
import { runProbes, serveArgv } from '../netpol/prober.ts';
import { kubeClient } from '../../kube/index.ts';
import { defaultRunner } from '../../sys/index.ts';

const NAMESPACE = `wiremesh-e2e-drops-${randomBytes(2).toString('hex')}`;
const PORT = 8080;
const POLICY = 'isolate-server';
let driver: ClusterDriver | undefined;
let server: ClusterPod | undefined;
let client: ClusterPod | undefined;

const d = (): ClusterDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};

test.before(async () => {
  driver = await openCluster({ name: 'drops', nodes: 2, podsPerNode: 0 });
  const [clientNode, serverNode] = driver.nodeNames().slice(-2);
  if (!clientNode || !serverNode || clientNode === serverNode)
    throw new Error(`this suite needs two nodes: ${driver.nodeNames().join(', ')}`);
  server = await driver.createPod(
    serverNode,
    NAMESPACE,
    'server',
    { app: 'drops-server' },
    [{ name: 'serve', containerPort: PORT, protocol: 'TCP' }],
    serveArgv([PORT], 'drops-server', driver.proberPath()),
  );
  client = await driver.createPod(clientNode, NAMESPACE, 'client');
});

test.after.always(async () => {
  if (driver) {
    await kubeClient(driver.kubeconfig)
      .request('DELETE', `/api/v1/namespaces/${NAMESPACE}`)
      .catch(() => {});
    await driver.close();
  }
});

async function probe(): Promise<boolean> {
  const c = client as ClusterPod;
  const [r] = await runProbes(
    (argv, o) => d().execInPod(c.namespace, c.name, argv, o),
    [{ proto: 'TCP', ip: (server as ClusterPod).ips[0] as string, port: PORT }],
    1000,
    d().proberPath(),
  );
  return r?.result === 'reachable' && r.answer === 'drops-server';
}

/** The agent's drop counter for the policy, from its metrics endpoint on the node's address. */
async function drops(node: string): Promise<number> {
  const res = await fetch(`http://${d().underlayIP(node)}:9825/metrics`);
  if (!res.ok) throw new Error(`metrics of ${node}: HTTP ${res.status}`);
  const text = await res.text();
  const labels = `kind="NetworkPolicy",namespace="${NAMESPACE}",policy="${POLICY}",direction="ingress"`;
  const line = text.split('\n').find((l) => l.startsWith(`wiremesh_policy_drops_total{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

test.serial(
  'a blocked probe counts against the policy that blocked it, and explain names it',
  async (t) => {
    const s = server as ClusterPod;
    await eventually('the client reaches the server', probe, 60_000, 500);
    t.is(await drops(s.node), 0, 'no drop before the policy');
    await kubeClient(d().kubeconfig).request(
      'POST',
      `/apis/networking.k8s.io/v1/namespaces/${NAMESPACE}/networkpolicies`,
      {
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name: POLICY, namespace: NAMESPACE },
        spec: { podSelector: { matchLabels: { app: 'drops-server' } }, policyTypes: ['Ingress'] },
      },
    );
    await eventually('the policy blocks the client', async () => !(await probe()), 30_000, 500);
    const before = await drops(s.node);
    t.true(before >= 1, `the blocked probes were counted (${before})`);
    // Five more blocked probes: each sends at least its SYN into the drop.
    for (let i = 0; i < 5; i++) t.false(await probe());
    const after = await drops(s.node);
    t.true(after - before >= 5, `five blocked probes, the counter grew by ${after - before}`);
    t.log(`drop counter of ${NAMESPACE}/${POLICY} on ${s.node}: ${before} -> ${after}`);

    // What an operator would run next, as the command prints it.
    const res = await defaultRunner.run([
      './bin/wiremesh',
      'explain',
      '--kubeconfig',
      d().kubeconfig,
      '-o',
      'json',
      `${NAMESPACE}/client`,
      `${NAMESPACE}/server`,
      `${PORT}/TCP`,
    ]);
    const e = JSON.parse(res.stdout) as {
      verdict: string;
      path: { kind: string; encrypted: boolean };
      ingress: { verdict: string; origin: { policies: { namespace: string; name: string }[] } };
    };
    t.is(e.verdict, 'drop');
    t.is(e.ingress.verdict, 'drop');
    t.deepEqual(e.ingress.origin.policies, [{ namespace: NAMESPACE, name: POLICY }]);
    t.like(e.path, { kind: 'wireguard', encrypted: true });
  },
);

test.serial(
  'a namespace that asks for it gets a log of its dropped flows, naming the policy',
  async (t) => {
    const driver = d();
    if (!(driver instanceof KindDriver))
      throw new Error(
        "the drop log test reads the agent pod's log: it needs a kubeadm cluster (WIREMESH_E2E_CLUSTER=real or kind)",
      );
    const s = server as ClusterPod;
    await kubeClient(driver.kubeconfig).request(
      'PATCH',
      `/api/v1/namespaces/${NAMESPACE}`,
      { metadata: { annotations: { 'wiremesh.io/log-drops': 'true' } } },
      { contentType: 'application/merge-patch+json' },
    );
    const agents = await driver.kubectl.json<{
      items: { metadata: { name: string }; spec: { nodeName: string } }[];
    }>(['get', 'pods', '-n', 'kube-system', '-l', 'app.kubernetes.io/component=agent']);
    const agent = agents.items.find((p) => p.spec.nodeName === s.node)?.metadata.name;
    if (!agent) throw new Error(`no agent pod on ${s.node}`);
    const wanted = (line: string) =>
      line.includes('dropped flow') &&
      line.includes(`"dst":"${s.ips[0]}"`) &&
      line.includes(`"policies":["${POLICY}"]`);
    let found = '';
    await eventually(
      'the agent logs the blocked flow',
      async () => {
        t.false(await probe());
        const logs = await driver.kubectl.run(['logs', '-n', 'kube-system', agent, '--since=2m']);
        found = logs.stdout.split('\n').find(wanted) ?? '';
        return found !== '';
      },
      30_000,
      1000,
    );
    t.regex(found, new RegExp(`"namespace":"${NAMESPACE}"`));
    t.regex(found, /"direction":"ingress"/);
    t.log(found);
  },
);
