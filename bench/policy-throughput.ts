// policy-throughput: iperf3 TCP to a server pod from a pod on the other node
// (through the node tunnel) and from a pod on the same node (veth to veth), with
// no policy in the cluster and with 1,000 NetworkPolicies in force, each selecting
// the server and hundreds of other pods, one of them admitting the clients.
// Phases alternate (A B, then B A); the figure is with / without. An established
// flow passes on its conntrack entry and never meets a policy rule, so the same
// phases also time new flows (a UDP probe loop, one fresh flow per 10 ms, round
// trips of the answered ones) whose allowing rule is the last policy's: the first
// packet walks the rules of all 1,000 policies selecting the server.
// A third arm runs the same policies with the drop log switched on for the
// server's namespace (`wiremesh.io/log-drops`): its log rules sit before the
// drops, so allowed traffic should not pay for them (target: >= 0.97 of the same
// policies without the log). Arms rotate from round to round.
// The lab and helpers are policy-enforce's (bench/policy-lab.ts).
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1NetworkPolicy } from '@kubernetes/client-node';
import { figureOf, type Figure } from './harness.ts';
import { TICKS_PER_SECOND, cpuTicks } from './mesh.ts';
import {
  LAB,
  PROBE_PORT,
  ProbeStream,
  backgroundObjects,
  clients,
  createBackground,
  inBatches,
  log,
  startInPod,
  waitPolicies,
  wallNow,
} from './policy-lab.ts';
import { Lab, type LabPod } from '../lab/index.ts';
import { ensureNamespace, registerPod, type PodSpecLite } from '../lab/kube.ts';
import { serveArgv } from '../kind-tests/netpol/prober.ts';
import { kubeClient } from '../kube/index.ts';
import { ANNOTATION_LOG_DROPS } from '../policy/k8s.ts';

const TPUT_NS = 'tput';
const IPERF_PORT = 5201;

/**
 * `count` policies in the server's namespace, every one selecting the server and the
 * namespace's other `tier: web` pods. The first by name admits the clients on
 * iperf3's port (a new connection returns at the first rules of the server's chain);
 * the last by name admits them on the prober's UDP port (a new flow walks every
 * policy's rules first: the worst case). The others admit other apps and namespaces
 * on other ports (and some an ipBlock).
 */
export function throughputPolicies(count: number): V1NetworkPolicy[] {
  // Admits the clients to the server's (and the other web pods') `port`.
  const allowClients = (name: string, protocol: 'TCP' | 'UDP', port: number): V1NetworkPolicy => ({
    metadata: { name, namespace: TPUT_NS, labels: { bench: 'tput' } },
    spec: {
      podSelector: { matchLabels: { tier: 'web' } },
      policyTypes: ['Ingress'],
      ingress: [
        {
          _from: [{ podSelector: { matchLabels: { role: 'client' } } }],
          ports: [{ protocol, port }],
        },
      ],
    },
  });
  const out: V1NetworkPolicy[] = [allowClients('allow-clients', 'TCP', IPERF_PORT)];
  for (let k = 1; k < count - 1; k++) {
    out.push({
      metadata: { name: `policy-${k}`, namespace: TPUT_NS, labels: { bench: 'tput' } },
      spec: {
        podSelector: {
          matchExpressions: [{ key: 'tier', operator: 'In', values: ['web', `t${k % 7}`] }],
        },
        policyTypes: ['Ingress'],
        ingress: [
          {
            _from: [
              { podSelector: { matchLabels: { app: `app-${k % 50}` } } },
              { namespaceSelector: { matchLabels: { team: `team-${k % 5}` } } },
            ],
            ports: [{ protocol: 'TCP', port: 10_000 + k }],
          },
          ...(k % 4 === 0
            ? [
                {
                  _from: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`10.${k % 256}.0.0/16`] } }],
                  ports: [{ protocol: 'UDP' as const, port: 20_000 + k, endPort: 20_010 + k }],
                },
              ]
            : []),
        ],
      },
    });
  }
  out.push(allowClients('zz-allow-probes', 'UDP', PROBE_PORT));
  return out;
}

export async function benchPolicyThroughput(repeats: number, policies = 1000): Promise<Figure[]> {
  const load = [loadavg()[0] ?? 0];
  const lab = await Lab.up({ name: LAB, nodes: 2, podsPerNode: 0, agents: true, progress: log });
  try {
    const [n1, n2] = lab.plan.nodes;
    if (!n1 || !n2) throw new Error('need 2 nodes');
    const api = clients(lab);
    await ensureNamespace(api.core, TPUT_NS, { team: 'team-0' });
    const server = await lab.addPod(n2.name, TPUT_NS, 'server', { tier: 'web', app: 'server' });
    const far = await lab.addPod(n1.name, TPUT_NS, 'client-far', { role: 'client' });
    const near = await lab.addPod(n2.name, TPUT_NS, 'client-near', { role: 'client' });
    await startInPod(lab, server, 'polbench-iperf3', ['iperf3', '-s']);
    await startInPod(lab, server, 'polbench-prober', serveArgv([PROBE_PORT], 'server'));
    // Background: 400 more pods the policies select or admit, in this namespace and others.
    const bg = backgroundObjects({
      namespaces: 4,
      podsPerNamespace: 50,
      policiesPerNamespace: 0,
      nodes: lab.plan.nodes,
    });
    await createBackground(api, bg);
    const local: PodSpecLite[] = Array.from({ length: 200 }, (_, i) => {
      const node = i % 2 ? n1 : n2;
      return {
        namespace: TPUT_NS,
        name: `web-${i}`,
        nodeName: node.name,
        hostIP: node.underlayIP,
        ips: [`100.81.${i >> 8}.${i & 255}`],
        labels: { tier: 'web', app: `app-${i % 50}` },
      };
    });
    await inBatches(local, 20, (p) => registerPod(api.core, p));
    await sleep(1000);

    const objects = throughputPolicies(policies);
    const kube = kubeClient(lab.state.kubeconfig);
    let inForce = false;
    let logging = false;
    const logRules = async () =>
      (await lab.execInNode(n2.name, ['/usr/sbin/nft', 'list', 'table', 'inet', 'wiremesh'])).stdout
        .split('\n')
        .filter((l) => l.includes('log group')).length;
    const setLogging = async (on: boolean) => {
      if (on === logging) return;
      logging = on;
      await kube.request(
        'PATCH',
        `/api/v1/namespaces/${TPUT_NS}`,
        { metadata: { annotations: { [ANNOTATION_LOG_DROPS]: on ? 'true' : null } } },
        { contentType: 'application/merge-patch+json' },
      );
      const deadline = Date.now() + 60_000;
      while ((await logRules()) > 0 !== on) {
        if (Date.now() > deadline)
          throw new Error(`the drop log did not turn ${on ? 'on' : 'off'}`);
        await sleep(200);
      }
      log(`policy-throughput: drop log ${on ? 'on' : 'off'} (${await logRules()} log rules)`);
    };
    const phase = async (arm: Arm) => {
      const withPolicies = arm !== 'without';
      if (!withPolicies) await setLogging(false);
      if (withPolicies === inForce) {
        await setLogging(arm === 'logged');
        return;
      }
      inForce = withPolicies;
      const t0 = performance.now();
      if (withPolicies) {
        await inBatches(objects, 20, (p) =>
          api.net.createNamespacedNetworkPolicy({ namespace: TPUT_NS, body: p }),
        );
      } else {
        await api.net.deleteCollectionNamespacedNetworkPolicy({
          namespace: TPUT_NS,
          labelSelector: 'bench=tput',
        });
      }
      await waitPolicies(lab, withPolicies ? policies : 0);
      const s = await lab.agentStatus(n2.name);
      log(
        `policy-throughput: ${withPolicies ? policies : 0} policies in force after ${((performance.now() - t0) / 1000).toFixed(1)} s (server's node: ${JSON.stringify(s.policy.stats)})`,
      );
      // Steady state: measure once the agents are done with the change (their passes,
      // Events, status), not while they still compete with iperf3 for the 2 cores: at
      // most 20 s for both agents to stay under 2% of a core for a whole second.
      await sleep(2000);
      for (let waited = 0; waited < 20; waited++) {
        const cpu0 = agentsCpuMs(lab);
        await sleep(1000);
        if (agentsCpuMs(lab) - cpu0 < 20) break;
      }
      await setLogging(arm === 'logged');
    };
    const iperf = async (client: LabPod): Promise<number> => {
      const res = await lab.execInPod(
        client.name,
        ['iperf3', '-c', server.ips[0] ?? '', '-p', String(IPERF_PORT), '-t', '3', '-J'],
        { namespace: TPUT_NS, timeoutMs: 60_000 },
      );
      return (
        (JSON.parse(res.stdout) as { end: { sum_received: { bits_per_second: number } } }).end
          .sum_received.bits_per_second / 1e6
      );
    };
    // New flows' round trips: a UDP probe loop (one fresh flow per 10 ms) for 3 s.
    const newFlows = async (client: LabPod): Promise<number[]> => {
      const stream = new ProbeStream(lab, client, `${server.ips[0]}:${PROBE_PORT}`, 10, 1000);
      const start = wallNow();
      await sleep(3500);
      stream.stop();
      await sleep(200);
      return stream.rtts(start + 500);
    };
    const samples = {
      far: { with: [] as number[], without: [] as number[], logged: [] as number[] },
      near: { with: [] as number[], without: [] as number[], logged: [] as number[] },
    };
    // The agents' own CPU while iperf3 runs (percent of one core, both agents): on a
    // 2-core machine, an agent busy with 1,000 policies competes with the traffic.
    const agentCpu = { with: [] as number[], without: [] as number[], logged: [] as number[] };
    const flows = {
      far: { with: [] as number[], without: [] as number[], logged: [] as number[] },
      near: { with: [] as number[], without: [] as number[], logged: [] as number[] },
    };
    await iperf(far); // warm-up
    // Rounds alternate without-with-logged and logged-with-without: each change is
    // one step (policies in or out, or the log switched), and each arm meets the
    // other two on both sides.
    const orders: Arm[][] = [
      ['without', 'with', 'logged'],
      ['logged', 'with', 'without'],
    ];
    for (let i = 0; i < repeats; i++) {
      for (const key of orders[i % 2] as Arm[]) {
        await phase(key);
        const cpu0 = agentsCpuMs(lab);
        const wall0 = performance.now();
        samples.far[key].push(await iperf(far));
        samples.near[key].push(await iperf(near));
        agentCpu[key].push((100 * (agentsCpuMs(lab) - cpu0)) / (performance.now() - wall0));
        flows.far[key].push(...(await newFlows(far)));
        flows.near[key].push(...(await newFlows(near)));
        load.push(loadavg()[0] ?? 0);
        log(
          `policy-throughput: round ${i + 1}/${repeats}, ${key}: far ${samples.far[key].at(-1)?.toFixed(0)} Mbit/s, near ${samples.near[key].at(-1)?.toFixed(0)} Mbit/s, agents' CPU ${agentCpu[key].at(-1)?.toFixed(1)}%`,
        );
      }
    }
    const B = 'policy-throughput';
    return [
      figureOf(
        B,
        `TCP pod -> pod on another node (tunnel), ${policies} policies in force (baseline: none; target ratio >= 0.95)`,
        'Mbit/s',
        samples.far.with,
        samples.far.without,
      ),
      figureOf(
        B,
        `TCP pod -> pod on the same node (veths), ${policies} policies in force (baseline: none; target ratio >= 0.95)`,
        'Mbit/s',
        samples.near.with,
        samples.near.without,
      ),
      // The same rounds as pairs (each with-policies stream over the no-policy stream of
      // its round): the streams of one arm spread by +-10% from round to round on this
      // 2-core VM, and a pair shares the round's conditions.
      pairedFigure(B, `TCP pod -> pod on another node (tunnel)`, samples.far),
      pairedFigure(B, `TCP pod -> pod on the same node (veths)`, samples.near),
      figureOf(
        B,
        `TCP pod -> pod on another node (tunnel), ${policies} policies, drop log on for the server's namespace (baseline: the same policies, log off; target ratio >= 0.97)`,
        'Mbit/s',
        samples.far.logged,
        samples.far.with,
      ),
      figureOf(
        B,
        `TCP pod -> pod on the same node (veths), ${policies} policies, drop log on (baseline: log off; target ratio >= 0.97)`,
        'Mbit/s',
        samples.near.logged,
        samples.near.with,
      ),
      pairedFigure(B, `TCP, other node, drop log on over off`, {
        with: samples.far.logged,
        without: samples.far.with,
      }),
      figureOf(
        B,
        `new UDP flow's round trip, other node, its allowing rule after every other policy's (baseline: no policy)`,
        'ms',
        flows.far.with,
        flows.far.without,
      ),
      figureOf(
        B,
        `new UDP flow's round trip, same node, its allowing rule after every other policy's (baseline: no policy)`,
        'ms',
        flows.near.with,
        flows.near.without,
      ),
      figureOf(
        B,
        `both agents' CPU while iperf3 runs, ${policies} policies in force (baseline: none)`,
        '% of a core',
        agentCpu.with,
        agentCpu.without,
      ),
      figureOf(B, `load average (1 min) during the run (median)`, 'load', load),
    ];
  } finally {
    await lab.down();
  }
}

type Arm = 'without' | 'with' | 'logged';

function pairedFigure(
  bench: string,
  what: string,
  arms: { with: number[]; without: number[] },
): Figure {
  const ratios = arms.with.map((x, i) => x / (arms.without[i] ?? NaN));
  const f = figureOf(bench, `${what}, median of the rounds' paired ratios`, 'x', ratios);
  return { ...f, ratio: f.value };
}

/**
 * CPU time (user + system, ms) the lab's agent processes have used so far, with that
 * of the children they have reaped (nft, ip); wireguard-go runs on, so it is not in.
 */
function agentsCpuMs(lab: Lab): number {
  let ticks = 0;
  for (const node of lab.plan.nodes) {
    const rec = lab.state.procs.find((p) => p.name === lab.agentProcName(node.name));
    if (!rec) continue;
    ticks += cpuTicks(rec.pid);
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}
