// Network-policy benchmarks in a lab (`polbench`: 2 nodes, real agents, real pods):
//
// - policy-enforce: from a NetworkPolicy create/delete or a pod label change written
//   to the API to the first packet the dataplane treats the new way. A probe loop in
//   the client pod (bench/probe-loop.ts: one UDP datagram every 5 ms, each from a
//   fresh source port so policy judges every one) sends to wiremesh-prober in the
//   server pod on the other node, where ingress is decided. A change's enforcement
//   time is the send time of the first probe after which every probe has the new
//   outcome, minus the time the API write started. Each round makes four changes:
//   create a policy isolating the server (allowed -> blocked), label the client into
//   its peers (-> allowed), out again (-> blocked), delete the policy (-> allowed).
//   Several hundred background Pods (API objects only) and policies keep the
//   compile honest. Baseline, in the same run: the same write reaching a plain watch
//   in this process (an agent cannot act before its watch delivers the change).
// policy-throughput (bench/policy-throughput.ts) shares this lab and these helpers.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadavg } from 'node:os';
import {
  CoreV1Api,
  KubeConfig,
  NetworkingV1Api,
  Watch,
  type V1NetworkPolicy,
} from '@kubernetes/client-node';
import { figureOf, median, percentile, type Figure } from './harness.ts';
import { firstWith, steadyFrom, type ProbeResult } from './enforcement.ts';
import { Lab, type LabPod } from '../lab/index.ts';
import { ensureNamespace, registerPod, type PodSpecLite } from '../lab/kube.ts';
import { startDaemon } from '../lab/procs.ts';
import { serveArgv } from '../kind-tests/netpol/prober.ts';
import { systemEnv } from '../sys/index.ts';

// WIREMESH_BENCH_LAB: another lab name, for a machine where several people run labs.
export const LAB = process.env.WIREMESH_BENCH_LAB || 'polbench';
const NS = 'polbench';
export const PROBE_PORT = 8080;

export const wallNow = () => performance.timeOrigin + performance.now();
export const log = (line: string) => process.stderr.write(`${line}\n`);

/** Run `fn` over `items`, `width` at a time. */
export async function inBatches<T>(
  items: readonly T[],
  width: number,
  fn: (t: T) => Promise<unknown>,
) {
  for (let i = 0; i < items.length; i += width)
    await Promise.all(items.slice(i, i + width).map(fn));
}

/** A long-running process in a pod, recorded in the lab so `down` stops it. */
export async function startInPod(lab: Lab, pod: LabPod, procName: string, argv: string[]) {
  const rec = startDaemon(
    procName,
    [...lab.execPrefix({ pod: pod.name, namespace: pod.namespace }), ...argv],
    join(lab.plan.dataDir, 'logs', `${procName}.log`),
  );
  lab.state.procs.push(rec);
  await lab.save();
}

/**
 * Background API objects: `namespaces` namespaces of `podsPerNamespace` Pods (no
 * network namespace; addresses in 100.80.0.0/16, outside the lab's pools) spread over
 * the nodes, and `policiesPerNamespace` policies each, shaped like bench/policy.ts's
 * snapshot (pod and namespace selectors, match expressions, numeric and named ports,
 * an ipBlock with except, an endPort range, half with egress).
 */
export function backgroundObjects(options: {
  namespaces: number;
  podsPerNamespace: number;
  policiesPerNamespace: number;
  nodes: { name: string; underlayIP: string }[];
}): {
  namespaces: { name: string; labels: Record<string, string> }[];
  pods: PodSpecLite[];
  policies: V1NetworkPolicy[];
} {
  const namespaces = Array.from({ length: options.namespaces }, (_, n) => ({
    name: `bg-${n}`,
    labels: { team: `team-${n % 5}`, env: n % 2 ? 'prod' : 'dev' },
  }));
  const pods: PodSpecLite[] = [];
  const policies: V1NetworkPolicy[] = [];
  for (let n = 0; n < options.namespaces; n++) {
    for (let i = 0; i < options.podsPerNamespace; i++) {
      const id = n * options.podsPerNamespace + i;
      const node = options.nodes[id % options.nodes.length];
      if (!node) throw new Error('no nodes');
      pods.push({
        namespace: `bg-${n}`,
        name: `pod-${i}`,
        nodeName: node.name,
        hostIP: node.underlayIP,
        ips: [`100.80.${(id >> 8) & 255}.${id & 255}`],
        labels: { app: `app-${i % 10}`, tier: i % 3 ? 'web' : 'db' },
        ports: [
          { name: 'http', containerPort: 8080, protocol: 'TCP' },
          { name: 'metrics', containerPort: 9000 + (i % 3), protocol: 'TCP' },
          { name: 'dns', containerPort: 53, protocol: 'UDP' },
        ],
      });
    }
    for (let k = 0; k < options.policiesPerNamespace; k++) {
      policies.push({
        metadata: { name: `policy-${k}`, namespace: `bg-${n}` },
        spec: {
          podSelector: { matchLabels: { app: `app-${k % 10}` } },
          policyTypes: k % 2 ? ['Ingress', 'Egress'] : ['Ingress'],
          ingress: [
            {
              _from: [
                { podSelector: { matchLabels: { app: `app-${(k + 1) % 10}` } } },
                {
                  namespaceSelector: { matchLabels: { team: `team-${k % 5}` } },
                  podSelector: {
                    matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }],
                  },
                },
              ],
              ports: [
                { protocol: 'TCP', port: 8080 },
                { protocol: 'TCP', port: 'metrics' },
              ],
            },
            {
              _from: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`10.${k % 256}.0.0/16`] } }],
              ports: [{ protocol: 'TCP', port: 443 + (k % 100), endPort: 500 + (k % 100) }],
            },
          ],
          egress:
            k % 2
              ? [
                  {
                    to: [{ namespaceSelector: { matchLabels: { env: 'prod' } } }],
                    ports: [{ protocol: 'UDP', port: 'dns' }],
                  },
                  { to: [{ podSelector: { matchLabels: { app: `app-${(k + 2) % 10}` } } }] },
                ]
              : [],
        },
      });
    }
  }
  return { namespaces, pods, policies };
}

interface Clients {
  kc: KubeConfig;
  core: CoreV1Api;
  net: NetworkingV1Api;
}

export function clients(lab: Lab): Clients {
  const kc = new KubeConfig();
  kc.loadFromFile(lab.state.kubeconfig);
  return { kc, core: kc.makeApiClient(CoreV1Api), net: kc.makeApiClient(NetworkingV1Api) };
}

export async function createBackground(
  api: Clients,
  bg: ReturnType<typeof backgroundObjects>,
): Promise<void> {
  for (const ns of bg.namespaces) await ensureNamespace(api.core, ns.name, ns.labels);
  await inBatches(bg.pods, 20, (p) => registerPod(api.core, p));
  await inBatches(bg.policies, 20, (p) =>
    api.net.createNamespacedNetworkPolicy({ namespace: p.metadata?.namespace ?? '', body: p }),
  );
}

/** Wait until every agent's last policy pass compiled `policies` policies. */
export async function waitPolicies(lab: Lab, policies: number, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const nodes = lab.plan.nodes.map((n) => n.name);
  let seen: (number | undefined)[] = [];
  while (Date.now() < deadline) {
    // A busy agent (a compile blocks its event loop) may not answer within curl's 5 s.
    seen = await Promise.all(
      nodes.map((n) =>
        lab.agentStatus(n).then(
          (s) => s.policy.stats?.policies,
          () => undefined,
        ),
      ),
    );
    if (seen.every((s) => s === policies)) return;
    await sleep(500);
  }
  throw new Error(`agents did not reach ${policies} policies (they report ${seen.join(', ')})`);
}

// ---------------------------------------------------------------------------
// policy-enforce

/** The probe loop's results, in send order as they arrive (out of order by timeouts). */
export class ProbeStream {
  readonly child: ChildProcess;
  private results: ProbeResult[] = [];
  readonly timeoutMs: number;

  constructor(lab: Lab, pod: LabPod, target: string, intervalMs = 5, timeoutMs = 1000) {
    this.timeoutMs = timeoutMs;
    const argv = [
      ...lab.execPrefix({ pod: pod.name, namespace: pod.namespace }),
      process.execPath,
      join(import.meta.dirname, 'probe-loop.ts'),
      '--target',
      target,
      '--interval',
      String(intervalMs),
      '--timeout',
      String(timeoutMs),
    ];
    this.child = spawn(argv[0] ?? '', argv.slice(1), {
      env: systemEnv(),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const stdout = this.child.stdout;
    if (!stdout) throw new Error('probe loop has no stdout');
    createInterface({ input: stdout }).on('line', (line) => {
      try {
        this.results.push(JSON.parse(line) as ProbeResult);
      } catch {
        /* not a result */
      }
    });
  }

  /** See steadyFrom: null until the change is known to be steady. */
  transition(since: number, want: boolean, settleMs = 250): number | null {
    return steadyFrom(this.results, since, want, wallNow() - this.timeoutMs - 50, settleMs);
  }

  /** See firstWith. */
  firstNew(since: number, want: boolean): number | null {
    return firstWith(this.results, since, want);
  }

  /** Round trips of the answered probes sent at or after `since`. */
  rtts(since: number): number[] {
    return this.results.flatMap((p) =>
      p.t >= since && p.ok && p.rtt !== undefined ? [p.rtt] : [],
    );
  }

  /** How many probes sent in [from, to) answered `want`. */
  count(from: number, to: number, want: boolean): number {
    return this.results.filter((p) => p.t >= from && p.t < to && p.ok === want).length;
  }

  /** Drop results older than `before` (the stream runs for many minutes). */
  prune(before: number): void {
    this.results = this.results.filter((p) => p.t >= before);
  }

  stop(): void {
    if (this.child.pid !== undefined && this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}

/** Times at which a plain watch in this process saw each event, by `kind/name/TYPE`. */
class EventClock {
  private seen: { key: string; t: number }[] = [];
  private aborts: (() => void)[] = [];

  async watch(kc: KubeConfig, path: string, kind: string): Promise<void> {
    const req = await new Watch(kc).watch(
      path,
      {},
      (type: string, obj: { metadata?: { name?: string } }) =>
        this.seen.push({ key: `${kind}/${obj.metadata?.name ?? ''}/${type}`, t: wallNow() }),
      () => {},
    );
    this.aborts.push(() => (req as { abort?: () => void }).abort?.());
  }

  firstAfter(key: string, since: number): number | null {
    return this.seen.find((e) => e.key === key && e.t >= since)?.t ?? null;
  }

  stop(): void {
    for (const a of this.aborts) a();
  }
}

interface Change {
  label: string;
  want: boolean;
  watchKey: string;
  write: () => Promise<unknown>;
}

export async function benchPolicyEnforce(
  changes: number,
  background: {
    namespaces: number;
    podsPerNamespace: number;
    policiesPerNamespace: number;
    /**
     * Pods spread over this many more node names (no agent, no Node object): each
     * real node then holds its share only, as in a cluster of that many nodes.
     */
    simulatedNodes?: number;
  } = { namespaces: 10, podsPerNamespace: 60, policiesPerNamespace: 30 },
): Promise<Figure[]> {
  const rounds = Math.ceil(Math.max(changes, 32) / 4);
  const load = [loadavg()[0] ?? 0];
  const lab = await Lab.up({ name: LAB, nodes: 2, podsPerNode: 0, agents: true, progress: log });
  let probes: ProbeStream | undefined;
  const events = new EventClock();
  try {
    const [n1, n2] = lab.plan.nodes;
    if (!n1 || !n2) throw new Error('need 2 nodes');
    const api = clients(lab);
    const client = await lab.addPod(n1.name, NS, 'client', { role: 'client', access: 'no' });
    const server = await lab.addPod(n2.name, NS, 'server', { role: 'server' });
    await startInPod(lab, server, 'polbench-prober', serveArgv([PROBE_PORT], 'server'));
    const simulated = Array.from({ length: background.simulatedNodes ?? 0 }, (_, i) => ({
      name: `polbench-sim-${i}`,
      underlayIP: `198.19.${i >> 8}.${i & 255}`,
    }));
    const bg = backgroundObjects({ ...background, nodes: [...lab.plan.nodes, ...simulated] });
    log(
      `policy-enforce: ${bg.pods.length} background pods on ${lab.plan.nodes.length + simulated.length} nodes ` +
        `(${bg.pods.filter((p) => p.nodeName === n2.name).length} on the server's), ${bg.policies.length} policies`,
    );
    await createBackground(api, bg);
    await waitPolicies(lab, bg.policies.length);
    await events.watch(api.kc, `/api/v1/namespaces/${NS}/pods`, 'pod');
    await events.watch(
      api.kc,
      `/apis/networking.k8s.io/v1/namespaces/${NS}/networkpolicies`,
      'netpol',
    );

    probes = new ProbeStream(lab, client, `${server.ips[0]}:${PROBE_PORT}`);
    const streamStart = wallNow();
    for (;;) {
      if (probes.transition(streamStart, true, 500) !== null) break;
      if (wallNow() - streamStart > 30_000) throw new Error('client never reached the server');
      await sleep(100);
    }

    const isolate: V1NetworkPolicy = {
      metadata: { name: 'isolate-server', namespace: NS },
      spec: {
        podSelector: { matchLabels: { role: 'server' } },
        policyTypes: ['Ingress'],
        ingress: [{ _from: [{ podSelector: { matchLabels: { access: 'yes' } } }] }],
      },
    };
    const relabel = async (access: string) => {
      const pod = await api.core.readNamespacedPod({ namespace: NS, name: 'client' });
      pod.metadata = { ...pod.metadata, labels: { ...pod.metadata?.labels, access } };
      return () => api.core.replaceNamespacedPod({ namespace: NS, name: 'client', body: pod });
    };
    const byLabel = new Map<string, { enforce: number[]; watch: number[]; first: number[] }>();
    const all = { enforce: [] as number[], watch: [] as number[], first: [] as number[] };
    const passes: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const steps: (() => Promise<Change>)[] = [
        async () => ({
          label: 'policy create -> blocked',
          want: false,
          watchKey: 'netpol/isolate-server/ADDED',
          write: () => api.net.createNamespacedNetworkPolicy({ namespace: NS, body: isolate }),
        }),
        async () => ({
          label: 'pod label change -> allowed',
          want: true,
          watchKey: 'pod/client/MODIFIED',
          write: await relabel('yes'),
        }),
        async () => ({
          label: 'pod label change -> blocked',
          want: false,
          watchKey: 'pod/client/MODIFIED',
          write: await relabel('no'),
        }),
        async () => ({
          label: 'policy delete -> allowed',
          want: true,
          watchKey: 'netpol/isolate-server/DELETED',
          write: () =>
            api.net.deleteNamespacedNetworkPolicy({ namespace: NS, name: 'isolate-server' }),
        }),
      ];
      for (const step of steps) {
        const change = await step();
        // Jitter, so changes do not fall in step with anything periodic.
        await sleep(200 + Math.random() * 200);
        const t0 = wallNow();
        await change.write();
        let at: number | null = null;
        while ((at = probes.transition(t0, change.want)) === null) {
          if (wallNow() - t0 > 20_000)
            throw new Error(`${change.label}: not enforced within 20 s (round ${r})`);
          await sleep(20);
        }
        const seen = events.firstAfter(change.watchKey, t0);
        const firstNew = probes.firstNew(t0, change.want) ?? at;
        const stray = probes.count(firstNew, at, !change.want);
        const status = await lab.agentStatus(n2.name).catch(() => null);
        log(
          `  ${change.label}: first ${(firstNew - t0).toFixed(0)} ms, steady ${(at - t0).toFixed(0)} ms (${stray} old-outcome probes between), watch ${seen === null ? '-' : (seen - t0).toFixed(0)} ms, agent pass ${status?.reconcile.lastDurationMs.toFixed(0) ?? '-'} ms (${JSON.stringify(status?.policy.lastPass ?? '-')}), last apply ${JSON.stringify(status?.policy.lastApply ?? '-')}`,
        );
        const entry = byLabel.get(change.label) ?? { enforce: [], watch: [], first: [] };
        entry.first.push(firstNew - t0);
        all.first.push(firstNew - t0);
        byLabel.set(change.label, entry);
        entry.enforce.push(at - t0);
        all.enforce.push(at - t0);
        if (seen !== null) {
          entry.watch.push(seen - t0);
          all.watch.push(seen - t0);
        }
        if (status) passes.push(status.reconcile.lastDurationMs);
        probes.prune(t0);
      }
      load.push(loadavg()[0] ?? 0);
      log(
        `policy-enforce: round ${r + 1}/${rounds}: p50 ${median(all.enforce).toFixed(0)} ms, watch p50 ${median(all.watch).toFixed(0)} ms`,
      );
    }
    const B = 'policy-enforce';
    const local = bg.pods.filter((p) => p.nodeName === n2.name).length + 1;
    const what = `${bg.pods.length + 2} pods (${local} on the server's node), ${bg.policies.length + 1} policies`;
    const n = all.enforce.length;
    const pct = (label: string, xs: number[], q: number): Figure => ({
      ...figureOf(B, label, 'ms', [percentile(xs, q)], [percentile(all.watch, q)]),
      repeats: n,
    });
    // "steady": from then on every probe had the new outcome; "first": the first probe
    // that had it (later probes may still have had the old one).
    const figures: Figure[] = [
      pct(
        `change -> enforced (steady), p50 (${what}; baseline: a plain watch sees the write)`,
        all.enforce,
        50,
      ),
      pct(
        `change -> enforced (steady), p99 (target < 500 ms; baseline: a plain watch)`,
        all.enforce,
        99,
      ),
      pct(
        `change -> first packet with the new verdict, p50 (baseline: a plain watch)`,
        all.first,
        50,
      ),
      pct(
        `change -> first packet with the new verdict, p99 (baseline: a plain watch)`,
        all.first,
        99,
      ),
    ];
    for (const [label, s] of byLabel)
      figures.push(
        figureOf(B, `${label}, steady (median; baseline: a plain watch)`, 'ms', s.enforce, s.watch),
        figureOf(
          B,
          `${label}, first packet (median; baseline: a plain watch)`,
          'ms',
          s.first,
          s.watch,
        ),
      );
    figures.push(
      figureOf(
        B,
        `agent's reconcile pass on the server's node after each change (median)`,
        'ms',
        passes,
      ),
      figureOf(B, `load average (1 min) during the run (median)`, 'load', load),
    );
    return figures;
  } finally {
    probes?.stop();
    events.stop();
    await lab.down();
  }
}
