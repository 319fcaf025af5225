// `wiremesh lab up|status|exec|down` for the real-node lab (lab/cluster.ts): what
// `make lab` shows a new user. After the cluster is up it prints the nodes as
// kubectl sees them, the agents, a Deployment's pods on every node with the
// addresses wiremesh gave them, and then checks encryption: once every agent
// reports a handshake with every peer, pods ping pods on the other nodes while the
// underlay bridge is captured. It fails, naming what failed, when a ping is not
// answered or a pod address crosses the underlay in the clear.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster } from '../lab/cluster.ts';
import { LabPhases, type ProgressFn } from '../lab/progress.ts';
import { systemEnv } from '../sys/index.ts';
import { startCapture } from '../kind-tests/probes.ts';
import type { AgentStatus } from '../agent/index.ts';

export const DEMO_NAMESPACE = 'default';
export const DEMO_APP = 'wiremesh-demo';
const DEMO_IMAGE = 'wiremesh-probe:e2e';
const AGENT_SELECTOR = 'app.kubernetes.io/name=wiremesh,app.kubernetes.io/component=agent';
/** How long the mesh may take to shake hands on a busy machine before the check fails. */
const HANDSHAKE_DEADLINE_MS = 120_000;

interface PodLite {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: { podIP?: string; phase?: string };
}

/** A Deployment of probe pods spread over every node (`perNode` on each). */
export function demoDeployment(replicas: number): object {
  const labels = { app: DEMO_APP };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: DEMO_APP, namespace: DEMO_NAMESPACE },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          terminationGracePeriodSeconds: 0,
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: 'kubernetes.io/hostname',
              whenUnsatisfiable: 'DoNotSchedule',
              labelSelector: { matchLabels: labels },
            },
          ],
          containers: [
            {
              name: 'probe',
              image: DEMO_IMAGE,
              imagePullPolicy: 'IfNotPresent',
              command: ['sleep', 'infinity'],
            },
          ],
        },
      },
    },
  };
}

async function podsOf(cluster: Cluster, namespace: string, selector: string): Promise<PodLite[]> {
  const res = await cluster.kubectl(['get', 'pods', '-n', namespace, '-l', selector, '-o', 'json']);
  return (JSON.parse(res.stdout) as { items: PodLite[] }).items;
}

async function agentStatus(cluster: Cluster, pod: string): Promise<AgentStatus> {
  const res = await cluster.kubectl([
    'exec',
    '-n',
    'kube-system',
    pod,
    '-c',
    'agent',
    '--',
    'wiremesh',
    'status',
    '-o',
    'json',
  ]);
  return JSON.parse(res.stdout) as AgentStatus;
}

/** Wait until every agent has a WireGuard handshake with every other node; else say who has not. */
async function waitForHandshakes(cluster: Cluster): Promise<void> {
  const deadline = Date.now() + HANDSHAKE_DEADLINE_MS;
  const want = cluster.plan.nodes.length - 1;
  let missing: string[] = [];
  while (Date.now() < deadline) {
    missing = [];
    for (const agent of await podsOf(cluster, 'kube-system', AGENT_SELECTOR)) {
      const status = await agentStatus(cluster, agent.metadata.name).catch(() => undefined);
      const shaken = (status?.peers ?? []).filter((p) => (p.latestHandshake ?? 0) > 0).length;
      if (shaken < want)
        missing.push(`${agent.spec.nodeName ?? agent.metadata.name}: ${shaken}/${want} peers`);
    }
    if (!missing.length) return;
    await sleep(2000);
  }
  throw new Error(
    `the mesh did not come up in ${HANDSHAKE_DEADLINE_MS / 1000} s: no WireGuard handshake yet on ${missing.join('; ')}`,
  );
}

/** Deploy the demo pods, wait for the mesh, ping across nodes under an underlay capture. */
export async function realLabDemo(
  cluster: Cluster,
  perNode: number,
  progress: ProgressFn,
): Promise<string> {
  const phases = new LabPhases(progress, `lab ${cluster.plan.name}`);
  const lines: string[] = [];
  const show = async (title: string, args: string[]) => {
    lines.push('', `$ kubectl ${args.join(' ')}`, (await cluster.kubectl(args)).stdout.trimEnd());
    void title;
  };
  await show('nodes', ['get', 'nodes', '-o', 'wide']);
  await show('agents', ['get', 'pods', '-n', 'kube-system', '-l', AGENT_SELECTOR, '-o', 'wide']);
  if (perNode < 1) return lines.join('\n');

  phases.start(
    `demo: a Deployment of ${perNode * cluster.plan.nodes.length} pods over ${cluster.plan.nodes.length} nodes`,
  );
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify(demoDeployment(perNode * cluster.plan.nodes.length)),
  });
  await cluster.kubectl(
    ['-n', DEMO_NAMESPACE, 'rollout', 'status', `deployment/${DEMO_APP}`, '--timeout=180s'],
    { timeoutMs: 210_000 },
  );
  phases.done();
  await show('pods', ['get', 'pods', '-n', DEMO_NAMESPACE, '-l', `app=${DEMO_APP}`, '-o', 'wide']);

  phases.start('encryption check: WireGuard handshakes, then pods ping pods on the other nodes');
  await waitForHandshakes(cluster);
  const pods = (await podsOf(cluster, DEMO_NAMESPACE, `app=${DEMO_APP}`)).filter(
    (p) => p.status.podIP && p.spec.nodeName,
  );
  const [from] = pods;
  const targets = pods.filter((p) => from && p.spec.nodeName !== from.spec.nodeName);
  const seen = new Set<string>();
  const others = targets.filter(
    (p) => !seen.has(p.spec.nodeName ?? '') && seen.add(p.spec.nodeName ?? ''),
  );
  if (!from || others.length < cluster.plan.nodes.length - 1)
    throw new Error(
      `the demo pods do not cover every node (${pods.map((p) => `${p.metadata.name}@${p.spec.nodeName}`).join(', ')})`,
    );
  const { plan } = cluster;
  const capture = await startCapture(
    [],
    plan.bridge,
    // Between the nodes only: the host's own kubectl traffic uses the gateway address.
    `ip and not host ${plan.gatewayIP}`,
    `/tmp/wiremesh-demo-${process.pid}.pcap`,
  );
  const failures: string[] = [];
  const results: string[] = [];
  try {
    for (const to of others) {
      const res = await cluster.kubectl(
        [
          'exec',
          '-n',
          DEMO_NAMESPACE,
          from.metadata.name,
          '--',
          'ping',
          '-c',
          '3',
          '-i',
          '0.2',
          '-W',
          '2',
          to.status.podIP ?? '',
        ],
        { allowFailure: true },
      );
      const got = Number(/(\d+) received/.exec(res.stdout)?.[1] ?? '0');
      results.push(
        `  ${from.metadata.name} (${from.spec.nodeName}, ${from.status.podIP}) -> ${to.metadata.name} (${to.spec.nodeName}, ${to.status.podIP}): ${got}/3 replies`,
      );
      if (got < 3) failures.push(`${to.metadata.name} on ${to.spec.nodeName}: ${got}/3 replies`);
    }
  } finally {
    const { lines: packets } = await capture.stop();
    const podIPs = [from, ...others].map((p) => p.status.podIP ?? '');
    const wireguard = packets.filter((l) => /\.51825[ :].*UDP|UDP.*\.51825/.test(l)).length;
    const leaked = packets.filter((l) =>
      podIPs.some((ip) => ip !== '' && new RegExp(`[ >]${ip.replaceAll('.', '\\.')}[.: ]`).test(l)),
    );
    results.push(
      `  underlay capture on ${plan.bridge}: ${packets.length} packets between nodes, ${wireguard} of them WireGuard (UDP 51825), ${leaked.length} showing a pod address`,
    );
    if (leaked.length)
      failures.push(
        `pod addresses crossed the underlay in the clear:\n    ${leaked.slice(0, 5).join('\n    ')}`,
      );
    if (!wireguard) failures.push('no WireGuard packet crossed the underlay');
  }
  lines.push('', 'encrypted pod-to-pod traffic:', ...results);
  if (failures.length) {
    phases.done('FAILED');
    throw new Error(
      `${lines.join('\n')}\n\nthe encryption check failed:\n  ${failures.join('\n  ')}`,
    );
  }
  phases.done();
  return lines.join('\n');
}

export function renderClusterStatus(cluster: Cluster): string {
  const { plan, state } = cluster;
  const lines = [
    `lab ${plan.name} (real nodes: kubeadm, kubelet, containerd): kube-apiserver ${state.apiserverURL}`,
    `kubeconfig: ${state.kubeconfig}`,
    '',
    'NODE'.padEnd(20) + 'UNDERLAY IP'.padEnd(16) + 'NETNS',
    ...plan.nodes.map((n) => n.name.padEnd(20) + n.underlayIP.padEnd(16) + n.netns),
    '',
    'PROCESS'.padEnd(28) + 'PID'.padEnd(10) + 'STATE',
    ...cluster
      .processes()
      .map(
        (p) =>
          p.name.padEnd(28) +
          String(p.pid).padEnd(10) +
          (p.running ? 'running' : `exited (log ${p.log})`),
      ),
  ];
  return lines.join('\n') + '\n';
}

/** `lab exec NODE -- CMD` on a real node: the node's network and mount namespaces. */
export function execInRealNode(cluster: Cluster, node: string, command: string[]): Promise<number> {
  const prefix = cluster.execPrefix(node);
  // Keep the caller's working directory, unless it is one the node has its own of.
  const cwd = process.cwd();
  const wd = /^\/(run|tmp)(\/|$)/.test(cwd) ? [] : [`--wd=${cwd}`];
  const [file, ...args] = [prefix[0] ?? 'nsenter', ...wd, ...prefix.slice(1), ...command];
  return new Promise<number>((resolve, reject) => {
    const child = spawn(file ?? '', args, { stdio: 'inherit', env: systemEnv() });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}
