// Mesh benchmarks (WireGuard mesh issue):
// - replan: the pure planner over N simulated nodes; baseline is the same planner
//   over 3 nodes, so the ratio says what scale costs.
// - agent-scale: one real agent in a lab node watching N simulated Node objects in
//   the real apiserver: its RSS (baseline: the same agent with only the lab's nodes)
//   and its reconcile pass time.
// - convergence: from a new node's annotation to every real agent having it as a
//   peer; baseline: the same event reaching a bare watch in this process.
// - throughput: TCP through the agent's tunnel between two lab nodes, against a
//   hand-configured wireguard-go tunnel between the same namespaces and against the
//   plain underlay.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { figureOf, measure, percentile, type Figure } from './harness.ts';
import { planMesh, type MeshNode, type AgentStatus } from '../agent/index.ts';
import { generateKeyPair } from '../crypto/index.ts';
import { Lab } from '../lab/index.ts';
import { annotatedNode } from '../lab/kube.ts';
import { toolPath } from '../sys/index.ts';
import { WgCli } from '../tunnels/index.ts';

function simulatedNodes(n: number): MeshNode[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `sim-${i}`,
    uid: `uid-${i}`,
    createdAt: i,
    internalIPs: [`198.19.${i >> 8}.${i & 255}`],
    publicKey: generateKeyPair().publicKey,
    endpoint: `198.19.${i >> 8}.${i & 255}:51825`,
    endpointOverride: null,
    persistentKeepalive: 0,
    hostEncryption: false,
    problems: [],
  }));
}

export async function benchReplan(repeats: number): Promise<Figure[]> {
  const figures: Figure[] = [];
  const settings = {
    listenPort: 51825,
    tunnelCIDR: '100.112.0.0/12',
    hostMtu: 1500,
    underlayFamily: 4 as const,
  };
  const small = simulatedNodes(3);
  const baseline = await measure(
    async () =>
      planMesh({ self: 'sim-0', selfPublicKey: small[0]?.publicKey ?? '', nodes: small, settings }),
    { repeats, warmup: 3 },
  );
  for (const n of [1000, 5000]) {
    const nodes = simulatedNodes(n);
    const samples = await measure(
      async () =>
        planMesh({ self: 'sim-0', selfPublicKey: nodes[0]?.publicKey ?? '', nodes, settings }),
      { repeats, warmup: 2 },
    );
    figures.push(figureOf('replan', `full re-plan, ${n} nodes`, 'ms', samples, baseline));
  }
  return figures;
}

/** USER_HZ: /proc's clock ticks per second (100 on Linux's usual builds). */
export const TICKS_PER_SECOND = 100;

/**
 * CPU time a process has used so far, user and system, with that of the children it
 * has reaped (for an agent: the nft and ip it ran), in clock ticks.
 */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command's closing parenthesis: utime, stime, cutime, cstime are
  // the 12th to the 15th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [11, 12, 13, 14].reduce((n, i) => n + Number(fields[i]), 0);
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function agentStatus(lab: Lab, node: string): Promise<AgentStatus> {
  return lab.agentStatus(node);
}

/**
 * The agent's reconcile passes by loop and phase (its metrics histogram, keyed
 * `loop/phase`): how many and their mean duration. A label change schedules a pass
 * of the policy loop, which waits only for a policy pass already running; the
 * dataplane loop's resync (`dataplane/all`) is the long one.
 */
export async function passDurations(
  netns: string,
): Promise<Record<string, { count: number; meanMs: number }>> {
  const { stdout } = await promisify(execFile)(
    'ip',
    ['netns', 'exec', netns, 'curl', '-sf', 'http://127.0.0.1:9825/metrics'],
    { maxBuffer: 64 * 1024 * 1024 },
  );
  const sums = new Map<string, number>();
  const counts = new Map<string, number>();
  for (const m of stdout.matchAll(
    /^wiremesh_reconcile_duration_seconds_(sum|count)\{loop="([^"]+)",phase="([^"]+)"\} (\S+)$/gm,
  ))
    (m[1] === 'sum' ? sums : counts).set(`${m[2]}/${m[3]}`, Number(m[4]));
  const out: Record<string, { count: number; meanMs: number }> = {};
  for (const [phase, count] of counts)
    out[phase] = { count, meanMs: count ? ((sums.get(phase) ?? 0) / count) * 1000 : 0 };
  return out;
}

/** The agent's pid (nsenter execs it, so it is the recorded process) and its wireguard-go child. */
export function agentPids(
  lab: Lab,
  node: string,
): { agent: number; wireguardGo: number | undefined } {
  const rec = lab.state.procs.find((p) => p.name === lab.agentProcName(node));
  if (!rec) throw new Error(`no agent on ${node}`);
  // By name: the agent has other children (its netlink worker).
  const wireguardGo = readFileSync(`/proc/${rec.pid}/task/${rec.pid}/children`, 'utf8')
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .find((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'wireguard-go';
      } catch {
        return false; // gone meanwhile
      }
    });
  return { agent: rec.pid, wireguardGo };
}

async function createSimulatedNodes(core: CoreV1Api, from: number, to: number): Promise<void> {
  const batch: Promise<unknown>[] = [];
  for (let i = from; i < to; i++) {
    batch.push(
      core.createNode({
        body: annotatedNode(
          `sim-${i}`,
          generateKeyPair().publicKey,
          `198.19.${i >> 8}.${i & 255}:51825`,
          `198.19.${i >> 8}.${i & 255}`,
        ),
      }),
    );
    if (batch.length >= 50) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}

async function waitPeers(lab: Lab, node: string, want: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await agentStatus(lab, node)).peers.length >= want) return;
    await sleep(250);
  }
  throw new Error(`agent on ${node} did not reach ${want} peers`);
}

export async function benchAgentScale(repeats: number): Promise<Figure[]> {
  const lab = await Lab.up({ name: 'bscale', nodes: 1, podsPerNode: 0, agents: true });
  try {
    const node = lab.plan.nodes[0]?.name ?? '';
    const kc = new KubeConfig();
    kc.loadFromFile(lab.state.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const { agent: pid, wireguardGo } = agentPids(lab, node);
    const passTimes = async () => {
      const samples: number[] = [];
      for (let i = 0; i < repeats; i++) {
        await lab.execInNode(node, [
          'curl',
          '-sS',
          '-X',
          'POST',
          '--unix-socket',
          '/run/wiremesh/agent.sock',
          'http://agent/resync',
        ]);
        samples.push((await agentStatus(lab, node)).reconcile.lastDurationMs);
      }
      return samples;
    };
    const baseRss = rssMiB(pid);
    const baseWgRss = wireguardGo ? rssMiB(wireguardGo) : NaN;
    const basePass = await passTimes();
    const figures: Figure[] = [];
    let created = 0;
    for (const n of [1000, 5000]) {
      await createSimulatedNodes(core, created, n);
      created = n;
      await waitPeers(lab, node, n);
      await sleep(2000);
      figures.push(
        figureOf('agent-scale', `agent RSS, ${n} simulated nodes`, 'MiB', [rssMiB(pid)], [baseRss]),
      );
      if (wireguardGo) {
        figures.push(
          figureOf(
            'agent-scale',
            `wireguard-go RSS, ${n} peers`,
            'MiB',
            [rssMiB(wireguardGo)],
            [baseWgRss],
          ),
        );
      }
      figures.push(
        figureOf(
          'agent-scale',
          `reconcile pass, ${n} simulated nodes`,
          'ms',
          await passTimes(),
          basePass,
        ),
      );
    }
    return figures;
  } finally {
    await lab.down();
  }
}

export async function benchConvergence(repeats: number): Promise<Figure[]> {
  const lab = await Lab.up({ name: 'bconv', nodes: 3, podsPerNode: 0, agents: true });
  try {
    const kc = new KubeConfig();
    kc.loadFromFile(lab.state.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const nodes = lab.plan.nodes.map((n) => n.name);
    const seenByWatch = new Map<string, number>();
    const watch = await new Watch(kc).watch(
      '/api/v1/nodes',
      {},
      (type: string, obj: { metadata?: { name?: string } }) => {
        const name = obj.metadata?.name;
        if (type === 'ADDED' && name && !seenByWatch.has(name))
          seenByWatch.set(name, performance.now());
      },
      () => {},
    );
    const agentMs: number[] = [];
    const watchMs: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const name = `conv-${i}`;
      const key = generateKeyPair().publicKey;
      const start = performance.now();
      await core.createNode({ body: annotatedNode(name, key, '198.19.0.1:51825') });
      const pending = new Set(nodes);
      while (pending.size) {
        await Promise.all(
          [...pending].map(async (n) => {
            const res = await lab.execInNode(n, ['wg', 'show', 'wiremesh.wg', 'peers']);
            if (res.stdout.includes(key)) pending.delete(n);
          }),
        );
      }
      agentMs.push(performance.now() - start);
      watchMs.push((seenByWatch.get(name) ?? NaN) - start);
      await core.deleteNode({ name });
    }
    (watch as { abort?: () => void }).abort?.();
    const p99 = figureOf(
      'convergence',
      'new node -> peer on all 3 agents (p99)',
      'ms',
      [percentile(agentMs, 99)],
      [percentile(watchMs, 99)],
    );
    return [
      figureOf('convergence', 'new node -> peer on all 3 agents (median)', 'ms', agentMs, watchMs),
      { ...p99, repeats: agentMs.length },
    ];
  } finally {
    await lab.down();
  }
}

export async function benchThroughput(repeats: number): Promise<Figure[]> {
  const lab = await Lab.up({ name: 'bthru', nodes: 2, podsPerNode: 0, agents: true });
  try {
    const [a, b] = lab.plan.nodes;
    if (!a || !b) throw new Error('need 2 nodes');
    const sa = await agentStatus(lab, a.name);
    const sb = await agentStatus(lab, b.name);
    // A hand-configured tunnel of the same wireguard-go build between the same namespaces.
    const ka = generateKeyPair();
    const kb = generateKeyPair();
    for (const [n, k, peer, self, other, port] of [
      [a, ka, kb, '100.126.0.1', '100.126.0.2', 51900],
      [b, kb, ka, '100.126.0.2', '100.126.0.1', 51900],
    ] as const) {
      await lab.spawnInNode(n.name, `handwg-${n.name}`, [toolPath('wireguard-go'), '-f', 'handwg']);
      for (let i = 0; i < 50; i++) {
        if (
          (await lab.execInNode(n.name, ['ip', 'link', 'show', 'handwg'], { allowFailure: true }))
            .code === 0
        )
          break;
        await sleep(100);
      }
      const wg = new WgCli(lab.nodeRunner(n.name));
      await wg.setPrivateKey('handwg', k.privateKey);
      await wg.setListenPort('handwg', port);
      const otherNode = n === a ? b : a;
      await wg.setPeer('handwg', {
        publicKey: peer.publicKey,
        endpoint: `${otherNode.underlayIP}:${port}`,
        allowedIPs: [`${other}/32`],
        persistentKeepalive: 0,
      });
      await lab.execInNode(n.name, [
        'ip',
        'addr',
        'add',
        `${self}/32`,
        'peer',
        `${other}/32`,
        'dev',
        'handwg',
      ]);
      await lab.execInNode(n.name, [
        'ip',
        'link',
        'set',
        'handwg',
        'mtu',
        String(sa.wireguard.mtu ?? 1440),
        'up',
      ]);
    }
    await lab.spawnInNode(b.name, 'iperf3-server', ['iperf3', '-s']);
    await sleep(500);
    const run = async (dst: string): Promise<number> => {
      const res = await lab.execInNode(a.name, ['iperf3', '-c', dst, '-t', '3', '-J'], {
        timeoutMs: 30_000,
      });
      return (
        (JSON.parse(res.stdout) as { end: { sum_received: { bits_per_second: number } } }).end
          .sum_received.bits_per_second / 1e6
      );
    };
    const meshIP = sb.wireguard.tunnelAddress ?? '';
    const mesh: number[] = [];
    const hand: number[] = [];
    const plain: number[] = [];
    await run(meshIP);
    await run('100.126.0.2');
    for (let i = 0; i < repeats; i++) {
      mesh.push(await run(meshIP));
      hand.push(await run('100.126.0.2'));
      plain.push(await run(b.underlayIP));
    }
    return [
      figureOf(
        'throughput',
        'TCP through wiremesh.wg vs hand-configured wireguard-go',
        'Mbit/s',
        mesh,
        hand,
      ),
      figureOf('throughput', 'TCP through wiremesh.wg vs plain underlay', 'Mbit/s', mesh, plain),
    ];
  } finally {
    await lab.down();
  }
}
