// k8s-limits: one real agent at Kubernetes' published scalability limits (5,000
// nodes, 150,000 pods; and 10,000 NetworkPolicies), with simulated objects in the
// lab's real apiserver and etcd. A 2-node lab runs two real agents and two real
// pods (a client on one node, a server with wiremesh-prober on the other); the
// other 4,998 nodes are Node objects shaped like a kubelet's (key and endpoint
// annotations, addresses, conditions, node info, 30 images), each with an IPAMBlock
// of its pods' addresses in a pool of their own, so every agent programs 4,998
// WireGuard peers and routes. The pods are Pod objects with a kubelet's status,
// 30 per node, in namespaces of 750; the policies are bench/policy-lab.ts's
// background shape, 50 per namespace.
//
// Measured on the server's node, first with the lab's own objects only (the
// baseline, same agent, same run), then at the limits: the agent's resident
// memory; its start-up to the first full pass (the agent restarted, to /readyz:
// the first lists and a pass of every phase applied); and a pod label change to
// enforcement: the client's label flips under a policy isolating the server, and
// the time from the API write to the first probe of a probe loop (one fresh UDP
// flow every 5 ms) after which every probe has the new verdict.
//
// WIREMESH_LIMITS_SCALE=0.1 runs a tenth of the limits (a quick check of the bench).
import { setTimeout as sleep } from 'node:timers/promises';
import { loadavg } from 'node:os';
import { readFile, stat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { figureOf, median, percentile, type Figure } from './harness.ts';
import {
  PROBE_PORT,
  ProbeStream,
  backgroundObjects,
  inBatches,
  log,
  startInPod,
  waitPolicies,
  wallNow,
} from './policy-lab.ts';
import { Lab } from '../lab/index.ts';
import { agentPids, passDurations, rssMiB } from './mesh.ts';
import { kubeClient, type KubeClient } from '../kube/index.ts';
import { SIM_BASE, SIM_LABEL, ipv4, podStatus, simulatedNode } from './limits-objects.ts';
import { blockName } from '../ipam/index.ts';
import { serveArgv } from '../kind-tests/netpol/prober.ts';

const LAB = process.env.WIREMESH_BENCH_LAB || 'limits';
const NS = 'limits';
const SIM_POOL = 'limits-simulated';
const PODS_PER_NAMESPACE = 750;
const WM = '/apis/wiremesh.io/v1alpha1';

export interface LimitsScale {
  nodes: number;
  pods: number;
  policies: number;
}

export const K8S_LIMITS: LimitsScale = { nodes: 5000, pods: 150_000, policies: 10_000 };

async function post(kube: KubeClient, path: string, body: object): Promise<void> {
  try {
    await kube.request('POST', path, body);
  } catch (e) {
    if ((e as { status?: number }).status !== 409) throw e;
  }
}

const mergePatch = { contentType: 'application/merge-patch+json' };

/**
 * The agents measured resync as the manifest has them (deploy/config.yaml), not at
 * the process lab's 10 s: at these sizes the resync's mesh pass takes seconds, and
 * how often it runs is part of what a label change competes with.
 */
const AGENT_ARGS = ['--resync', '30s'];

/**
 * The agent on `node` restarted: ms from its start to /readyz (its first full pass),
 * and the lines it logged for its first lists (each with its count and time).
 */
/** CPU seconds a process has used (its own and its waited-for children's), from /proc. */
function cpuSeconds(pid: number): number {
  // Fields after the command's closing parenthesis: utime, stime, cutime, cstime are
  // the 12th to 15th, in clock ticks (100 per second on Linux).
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0) / 100;
}

/**
 * Restart the agent on `node` and wait for its first full pass: wall time, the
 * agent's first lists (count and time each, from its log), and the CPU seconds the
 * agent, the apiserver and etcd used meanwhile, which says whose work the wait is.
 */
async function restartToReady(
  lab: Lab,
  node: string,
): Promise<{ ms: number; lists: string[]; cpu: Record<string, number> }> {
  // The log's path before the stop: a stopped process leaves the lab's records.
  const logFile = lab.state.procs.find((p) => p.name === lab.agentProcName(node))?.log;
  await lab.stopAgent(node);
  const before = logFile ? (await stat(logFile).catch(() => ({ size: 0 }))).size : 0;
  const server = ['kube-apiserver', 'etcd'].map((name) => {
    const pid = lab.state.procs.find((p) => p.name === name)?.pid;
    if (pid === undefined) throw new Error(`the lab has no ${name} process`);
    return { name, pid, from: cpuSeconds(pid) };
  });
  const t0 = performance.now();
  await lab.startAgent(node, AGENT_ARGS);
  await lab.waitAgentReady(node, 600_000);
  const ms = performance.now() - t0;
  const cpu: Record<string, number> = { agent: cpuSeconds(agentPids(lab, node).agent) };
  for (const p of server) cpu[p.name] = cpuSeconds(p.pid) - p.from;
  const text = logFile ? (await readFile(logFile)).subarray(before).toString() : '';
  return { ms, lists: text.split('\n').filter((line) => line.includes('listed ')), cpu };
}

export async function benchLimits(changes: number, scale = K8S_LIMITS): Promise<Figure[]> {
  const factor = Number(process.env.WIREMESH_LIMITS_SCALE ?? '1');
  const want: LimitsScale = {
    nodes: Math.max(3, Math.round(scale.nodes * factor)),
    pods: Math.round(scale.pods * factor),
    policies: Math.round(scale.policies * factor),
  };
  const load = [loadavg()[0] ?? 0];
  const lab = await Lab.up({ name: LAB, nodes: 2, podsPerNode: 0, agents: true, progress: log });
  let probes: ProbeStream | undefined;
  try {
    const [n1, n2] = lab.plan.nodes;
    if (!n1 || !n2) throw new Error('need 2 nodes');
    const kube = kubeClient(lab.state.kubeconfig);
    const client = await lab.addPod(n1.name, NS, 'client', { role: 'client', access: 'no' });
    const server = await lab.addPod(n2.name, NS, 'server', { role: 'server' });
    await startInPod(lab, server, 'limits-prober', serveArgv([PROBE_PORT], 'server'));
    await post(kube, `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`, {
      metadata: { name: 'isolate-server', namespace: NS },
      spec: {
        podSelector: { matchLabels: { role: 'server' } },
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ podSelector: { matchLabels: { access: 'yes' } } }] }],
      },
    });
    probes = new ProbeStream(lab, client, `${server.ips[0]}:${PROBE_PORT}`);
    const stream = probes;

    /** Flip the client's label `n` times; ms from each write to the steady new verdict. */
    let access = 'no';
    const labelChanges = async (n: number, what: string): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        access = access === 'yes' ? 'no' : 'yes';
        await sleep(200 + Math.random() * 200);
        const t0 = wallNow();
        await kube.request(
          'PATCH',
          `/api/v1/namespaces/${NS}/pods/client`,
          { metadata: { labels: { access } } },
          mergePatch,
        );
        const want = access === 'yes';
        let at = stream.transition(t0, want);
        while (at === null) {
          if (wallNow() - t0 > 60_000)
            throw new Error(`${what}: label change not enforced in 60 s`);
          await sleep(20);
          at = stream.transition(t0, want);
        }
        out.push(at - t0);
        stream.prune(t0);
      }
      log(
        `k8s-limits: ${what}: label change -> enforced p50 ${median(out).toFixed(0)} ms, p99 ${percentile(out, 99).toFixed(0)} ms`,
      );
      return out;
    };
    const rounds = Math.max(changes, 20);

    // The baseline: the lab's own objects only.
    const base = {
      ready: [(await restartToReady(lab, n2.name)).ms, (await restartToReady(lab, n2.name)).ms],
      rss: 0,
      changes: [] as number[],
    };
    await sleep(5000);
    base.rss = rssMiB(agentPids(lab, n2.name).agent);
    base.changes = await labelChanges(rounds, 'baseline');
    log(
      `k8s-limits: baseline: RSS ${base.rss.toFixed(0)} MiB, start-up ${base.ready.map((x) => x.toFixed(0)).join(', ')} ms`,
    );

    // The limits. The agents are stopped while the objects are written (their
    // dataplane stays): the writes go faster without two agents compiling after
    // each one, and starting them is then a start-up at the limits too.
    for (const n of lab.plan.nodes) await lab.stopAgent(n.name);
    const t0 = performance.now();
    const simulated = want.nodes - lab.plan.nodes.length;
    await post(kube, `${WM}/ippools`, {
      apiVersion: 'wiremesh.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: SIM_POOL },
      spec: {
        cidr: '100.96.0.0/12',
        blockSize: 26,
        nodeSelector: { matchLabels: { [SIM_LABEL]: 'true' } },
      },
    });
    await inBatches(
      Array.from({ length: simulated }, (_, i) => i),
      32,
      async (i) => {
        const node = simulatedNode(i);
        await post(kube, '/api/v1/nodes', node);
        await kube.request(
          'PATCH',
          `/api/v1/nodes/${node.metadata?.name}/status`,
          { status: node.status },
          mergePatch,
        );
      },
    );
    log(
      `k8s-limits: ${simulated} simulated nodes in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );

    const namespaces = Math.max(1, Math.round(want.pods / PODS_PER_NAMESPACE));
    const shape = backgroundObjects({
      namespaces,
      podsPerNamespace: 0,
      policiesPerNamespace: Math.round(want.policies / namespaces),
      nodes: [n1],
    });
    // The lab runs no controller-manager: each namespace gets its default
    // ServiceAccount here, as the admission of its pods needs one.
    for (const ns of shape.namespaces) {
      await post(kube, '/api/v1/namespaces', { metadata: { name: ns.name, labels: ns.labels } });
      await post(kube, `/api/v1/namespaces/${ns.name}/serviceaccounts`, {
        metadata: { name: 'default', namespace: ns.name },
      });
    }

    // Pods: node k of all nodes (the two real ones first) gets pods k, k + nodes, ...;
    // on a simulated node the j-th takes the j-th address of the node's block.
    const allNodes = [
      ...lab.plan.nodes.map((n) => ({ name: n.name, ip: n.underlayIP, sim: -1 })),
      ...Array.from({ length: simulated }, (_, i) => ({
        name: `limits-sim-${i}`,
        ip: `198.19.${i >> 8}.${i & 255}`,
        sim: i,
      })),
    ];
    const onNode = new Map<number, number>();
    const allocations = new Map<number, Record<string, object>>();
    const pods = Array.from({ length: want.pods }, (_, id) => {
      const k = id % allNodes.length;
      const node = allNodes[k]!;
      const j = onNode.get(k) ?? 0;
      onNode.set(k, j + 1);
      const ns = `bg-${id % namespaces}`;
      const name = `pod-${Math.floor(id / namespaces)}`;
      const ip =
        node.sim >= 0 ? ipv4(SIM_BASE + node.sim * 64 + j) : ipv4(((100 << 24) | (80 << 16)) + id);
      if (node.sim >= 0) {
        const entries = allocations.get(node.sim) ?? {};
        entries[`wiremesh.c${id}.eth0`] = {
          address: ip,
          namespace: ns,
          pod: name,
          containerID: `c${id}`,
          ifName: 'eth0',
          podUID: `uid-${id}`,
        };
        allocations.set(node.sim, entries);
      }
      const i = Math.floor(id / namespaces);
      return { ns, name, node, ip, labels: { app: `app-${i % 10}`, tier: i % 3 ? 'web' : 'db' } };
    });
    let made = 0;
    await inBatches(pods, 64, async (p) => {
      await post(kube, `/api/v1/namespaces/${p.ns}/pods`, {
        metadata: { name: p.name, namespace: p.ns, labels: p.labels },
        spec: {
          nodeName: p.node.name,
          automountServiceAccountToken: false,
          containers: [
            {
              name: 'app',
              image: 'registry.example/app:v1',
              ports: [
                { name: 'http', containerPort: 8080, protocol: 'TCP' },
                { name: 'metrics', containerPort: 9000, protocol: 'TCP' },
              ],
              env: [
                { name: 'LOG_LEVEL', value: 'info' },
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
              ],
              resources: {
                requests: { cpu: '100m', memory: '128Mi' },
                limits: { memory: '256Mi' },
              },
            },
          ],
        },
      });
      await kube.request(
        'PATCH',
        `/api/v1/namespaces/${p.ns}/pods/${p.name}/status`,
        podStatus(p.ip, p.node.ip),
        mergePatch,
      );
      if (++made % 10_000 === 0)
        log(`k8s-limits: ${made} pods (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    });
    await inBatches([...allocations], 32, async ([sim, entries]) => {
      const cidr = `${ipv4(SIM_BASE + sim * 64)}/26`;
      await post(kube, `${WM}/ipamblocks`, {
        apiVersion: 'wiremesh.io/v1alpha1',
        kind: 'IPAMBlock',
        metadata: { name: blockName(cidr) },
        spec: { cidr, node: `limits-sim-${sim}`, pool: SIM_POOL, allocations: entries },
      });
    });
    await inBatches(shape.policies, 32, (p) =>
      post(kube, `/apis/networking.k8s.io/v1/namespaces/${p.metadata?.namespace}/networkpolicies`, {
        ...p,
        spec: JSON.parse(JSON.stringify(p.spec).replaceAll('"_from"', '"from"')) as object,
      }),
    );
    const created = (performance.now() - t0) / 1000;
    log(
      `k8s-limits: ${want.nodes} nodes, ${want.pods} pods, ${shape.policies.length + 1} policies written in ${created.toFixed(0)} s`,
    );
    const started = performance.now();
    for (const n of lab.plan.nodes) await lab.startAgent(n.name, AGENT_ARGS);
    for (const n of lab.plan.nodes) await lab.waitAgentReady(n.name, 1_800_000);
    const firstStart = performance.now() - started;
    log(`k8s-limits: both agents started and ready in ${(firstStart / 1000).toFixed(1)} s`);
    await waitPolicies(lab, shape.policies.length + 1, 1_800_000);
    load.push(loadavg()[0] ?? 0);

    const restarts = [await restartToReady(lab, n2.name), await restartToReady(lab, n2.name)];
    const at = {
      ready: restarts.map((r) => r.ms),
      rss: 0,
      peers: 0,
      changes: [] as number[],
    };
    // Where a restart's time went: the agent logs each first list with its count and time.
    log(`k8s-limits: the last restart's lists:\n${restarts.at(-1)?.lists.join('\n')}`);
    for (const r of restarts)
      log(
        `k8s-limits: a restart of ${(r.ms / 1000).toFixed(1)} s used CPU seconds: ${Object.entries(
          r.cpu,
        )
          .map(([name, s]) => `${name} ${s.toFixed(1)}`)
          .join(', ')}`,
      );
    await sleep(10_000);
    at.rss = rssMiB(agentPids(lab, n2.name).agent);
    at.peers = (await lab.agentStatus(n2.name)).peers.length;
    at.changes = await labelChanges(rounds, 'at the limits');
    const rssAfter = rssMiB(agentPids(lab, n2.name).agent);
    const passes = await passDurations(n2.netns);
    log(
      `k8s-limits: label changes (ms, sorted): ${[...at.changes]
        .sort((x, y) => x - y)
        .map((x) => x.toFixed(0))
        .join(' ')}`,
    );
    log(`k8s-limits: the server agent's passes since its restart: ${JSON.stringify(passes)}`);
    load.push(loadavg()[0] ?? 0);

    const B = 'k8s-limits';
    const what = `${want.nodes} nodes (${at.peers} WireGuard peers), ${want.pods} pods, ${shape.policies.length + 1} policies`;
    return [
      figureOf(
        B,
        `agent RSS after its first full pass, ${what} (baseline: the lab's objects only; target < 300 MB)`,
        'MiB',
        [at.rss],
        [base.rss],
      ),
      figureOf(B, `agent RSS after ${rounds} label changes`, 'MiB', [rssAfter], [base.rss]),
      figureOf(
        B,
        `agent start to its first full pass (/readyz) (target < 30 s)`,
        'ms',
        at.ready,
        base.ready,
      ),
      figureOf(
        B,
        `both agents' first start after the writes, each adding a WireGuard peer and routes per new node (baseline: one restart with the lab's objects)`,
        'ms',
        [firstStart],
        base.ready,
      ),
      {
        ...figureOf(
          B,
          `pod label change -> enforced, p50`,
          'ms',
          [percentile(at.changes, 50)],
          [percentile(base.changes, 50)],
        ),
        repeats: rounds,
      },
      {
        ...figureOf(
          B,
          `pod label change -> enforced, p99 (target < 500 ms)`,
          'ms',
          [percentile(at.changes, 99)],
          [percentile(base.changes, 99)],
        ),
        repeats: rounds,
      },
      ...['dataplane/all', 'policy/all', 'policy/policy']
        .filter((key) => passes[key])
        .map((key) =>
          figureOf(
            B,
            `the server agent's mean reconcile pass (loop/phase ${key}, ${passes[key]?.count} passes since its restart)`,
            'ms',
            [passes[key]?.meanMs ?? 0],
          ),
        ),
      figureOf(
        B,
        `objects written to the apiserver (nodes, pods with status, blocks, policies)`,
        's',
        [created],
      ),
      figureOf(B, `load average (1 min) during the run (median)`, 'load', load),
    ];
  } finally {
    probes?.stop();
    await lab.down();
  }
}
