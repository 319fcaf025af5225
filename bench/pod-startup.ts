// Pod start-up and deletion on the real-node lab (kubeadm, kubelets, containerd), with
// wiremesh against the reference plugins (bridge + host-local, chained into portmap and
// bandwidth as wiremesh's conflist is) under the same kubelets in the same run. A
// Deployment is scaled from 0 to 30 and to 100 pods over 3 nodes and back to 0; a pod's
// start-up is the time from its first sighting in a watch (created) to its Ready
// condition, its deletion the time from the scale-down to its disappearance. The
// reference conflist is written under a name that sorts first, which containerd picks
// up by itself; removing it hands the nodes back to wiremesh. Each phase also
// reports the CPU time it cost, per pod: the whole machine's and wiremesh's own
// processes' (the nodes are namespaces of this machine, so /proc shows them all).
import { readFileSync, readdirSync } from 'node:fs';
import { Cluster } from '../lab/cluster.ts';
import { kubeClient, Informer } from '../kube/index.ts';
import { defaultRunner, toolPath } from '../sys/index.ts';
import { percentile, median, type Figure } from './harness.ts';
import { TICKS_PER_SECOND, cpuTicks } from './mesh.ts';

const NAMESPACE = 'bench-startup';
const APP = 'startup';
const REFERENCE_CONFLIST = '/etc/cni/net.d/05-bench-bridge.conflist';
/** host-local's ranges: one /24 per node, far from wiremesh's pools. */
const referenceSubnet = (index: number) => `10.250.${index}.0/24`;

type Plugin = 'wiremesh' | 'reference';

interface PodObj {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}

/** The machine's busy CPU time so far, in clock ticks (/proc/stat: all but idle and iowait). */
function machineBusyTicks(): number {
  const [, ...fields] = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '')
    .trim()
    .split(/\s+/);
  const v = fields.map(Number);
  return v.reduce((a, b) => a + b, 0) - (v[3] ?? 0) - (v[4] ?? 0);
}

/**
 * CPU ticks used so far by wiremesh's processes on the nodes (the image's: the
 * agents, their netlink workers and the programs those ran, wireguard-go, the
 * supervisors), children that ended included.
 */
function wiremeshTicks(): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (!cmdline.includes('/opt/wiremesh/') && !cmdline.includes('/usr/lib/wiremesh/')) continue;
      ticks += cpuTicks(Number(pid));
    } catch {
      /* gone meanwhile */
    }
  }
  return ticks;
}

interface Phase {
  /** Per pod: created (first seen) to Ready, ms. */
  ready: number[];
  /** Scale-up to the last pod Ready, ms. */
  allReady: number;
  /** Per pod: scale-down to gone, ms. */
  deleted: number[];
  allDeleted: number;
  /** CPU time per pod over the scale-up and -down, ms: the whole machine's, and wiremesh's. */
  machineCpu: number;
  wiremeshCpu: number;
}

function referenceConflist(index: number): string {
  return JSON.stringify({
    cniVersion: '1.0.0',
    name: 'bench-bridge',
    plugins: [
      {
        type: 'bridge',
        bridge: 'wmbench0',
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: referenceSubnet(index) }]],
          dataDir: '/var/lib/cni/bench-networks',
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
    ],
  });
}

function deployment(image: string): object {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: APP, namespace: NAMESPACE },
    spec: {
      replicas: 0,
      selector: { matchLabels: { app: APP } },
      template: {
        metadata: { labels: { app: APP } },
        spec: {
          terminationGracePeriodSeconds: 0,
          tolerations: [{ operator: 'Exists' }],
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: 'kubernetes.io/hostname',
              whenUnsatisfiable: 'ScheduleAnyway',
              labelSelector: { matchLabels: { app: APP } },
            },
          ],
          containers: [
            {
              name: 'probe',
              image,
              imagePullPolicy: 'IfNotPresent',
              command: ['sleep', 'infinity'],
            },
          ],
        },
      },
    },
  };
}

const isReady = (p: PodObj) =>
  (p.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');

export async function benchPodStartup(repeats: number): Promise<Figure[]> {
  const cluster = await Cluster.up({ name: 'bstart', nodes: 3 });
  const kubectl = async (args: string[], input?: string) =>
    defaultRunner.run([toolPath('kubectl'), '--kubeconfig', cluster.state.kubeconfig, ...args], {
      timeoutMs: 600_000,
      ...(input === undefined ? {} : { input }),
    });
  const client = kubeClient(cluster.state.kubeconfig);
  const pods = new Informer<PodObj>(client, `/api/v1/namespaces/${NAMESPACE}/pods`, {
    labelSelector: `app=${APP}`,
  });
  try {
    const nodes = cluster.plan.nodes;
    for (const node of nodes)
      await cluster.execInNode(node.name, [
        'cp',
        '/usr/lib/cni/bridge',
        '/usr/lib/cni/host-local',
        '/opt/cni/bin/',
      ]);
    await kubectl(['create', 'namespace', NAMESPACE]);
    await kubectl(['apply', '-f', '-'], JSON.stringify(deployment('wiremesh-probe:e2e')));

    const firstSeen = new Map<string, number>();
    const readyAt = new Map<string, number>();
    const goneAt = new Map<string, number>();
    const addresses = new Map<string, string>();
    const seen = (p: PodObj) => {
      const name = p.metadata.name;
      if (!firstSeen.has(name)) firstSeen.set(name, performance.now());
      if (p.status?.podIP) addresses.set(name, p.status.podIP);
      if (isReady(p) && !readyAt.has(name)) readyAt.set(name, performance.now());
    };
    pods.on('add', seen);
    pods.on('update', seen);
    pods.on('delete', (p: PodObj) => goneAt.set(p.metadata.name, performance.now()));
    await pods.start();

    const until = async (what: string, check: () => boolean) => {
      const deadline = Date.now() + 600_000;
      while (!check()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };

    const use = async (plugin: Plugin) => {
      for (const [i, node] of nodes.entries()) {
        const argv =
          plugin === 'reference'
            ? ['sh', '-c', `cat > ${REFERENCE_CONFLIST}`]
            : ['rm', '-f', REFERENCE_CONFLIST];
        await cluster.execInNode(
          node.name,
          argv,
          plugin === 'reference' ? { input: referenceConflist(i) } : {},
        );
      }
      // containerd reloads its CNI configuration when the directory changes.
      await new Promise((r) => setTimeout(r, 3000));
    };

    const phase = async (plugin: Plugin, count: number): Promise<Phase> => {
      firstSeen.clear();
      readyAt.clear();
      goneAt.clear();
      addresses.clear();
      const cpuBefore = { machine: machineBusyTicks(), wiremesh: wiremeshTicks() };
      const up = performance.now();
      await kubectl(['-n', NAMESPACE, 'scale', `deployment/${APP}`, `--replicas=${count}`]);
      await until(`${count} pods Ready (${plugin})`, () => readyAt.size >= count);
      const allReady = Math.max(...readyAt.values()) - up;
      const ready = [...readyAt].map(([name, at]) => at - (firstSeen.get(name) ?? at));
      // The plugin that wired them is the one meant: host-local's ranges are 10.250/16.
      const wrong = [...addresses.values()].filter(
        (ip) => ip.startsWith('10.250.') !== (plugin === 'reference'),
      );
      if (wrong.length)
        throw new Error(`${plugin}: ${wrong.length} pods got addresses of the other plugin`);
      const names = [...readyAt.keys()];
      const down = performance.now();
      await kubectl(['-n', NAMESPACE, 'scale', `deployment/${APP}`, '--replicas=0']);
      await until(`${count} pods gone (${plugin})`, () => names.every((n) => goneAt.has(n)));
      const deleted = names.map((n) => (goneAt.get(n) ?? down) - down);
      const perPodMs = (ticks: number) => ((ticks / TICKS_PER_SECOND) * 1000) / count;
      return {
        ready,
        allReady,
        deleted,
        allDeleted: Math.max(...deleted),
        machineCpu: perPodMs(machineBusyTicks() - cpuBefore.machine),
        wiremeshCpu: perPodMs(wiremeshTicks() - cpuBefore.wiremesh),
      };
    };

    const figures: Figure[] = [];
    for (const count of [30, 100]) {
      const runs: Record<Plugin, Phase[]> = { wiremesh: [], reference: [] };
      for (let i = 0; i < repeats; i++) {
        // Alternate which goes first, so drift in the machine's load hits both alike.
        const order: Plugin[] = i % 2 ? ['wiremesh', 'reference'] : ['reference', 'wiremesh'];
        for (const plugin of order) {
          await use(plugin);
          runs[plugin].push(await phase(plugin, count));
        }
      }
      await use('wiremesh');
      const pooled = (plugin: Plugin, key: 'ready' | 'deleted') =>
        runs[plugin].flatMap((r) => r[key]);
      const fig = (figure: string, value: number, baseline: number): Figure => ({
        bench: 'pod-startup',
        figure: `${count} pods: ${figure}`,
        value: Math.round(value),
        unit: 'ms',
        baseline: Math.round(baseline),
        ratio: Math.round((value / baseline) * 1000) / 1000,
        repeats,
      });
      for (const key of ['ready', 'deleted'] as const) {
        const [w, r] = [pooled('wiremesh', key), pooled('reference', key)];
        const what = key === 'ready' ? 'created to Ready' : 'scale-down to gone';
        figures.push(fig(`${what} p50`, percentile(w, 50), percentile(r, 50)));
        figures.push(fig(`${what} p99`, percentile(w, 99), percentile(r, 99)));
      }
      const medians = (
        figure: string,
        key: 'allReady' | 'allDeleted' | 'machineCpu' | 'wiremeshCpu',
      ) =>
        fig(
          figure,
          median(runs.wiremesh.map((r) => r[key])),
          median(runs.reference.map((r) => r[key])),
        );
      figures.push(medians('scale-up to all Ready', 'allReady'));
      figures.push(medians('scale-down to all gone', 'allDeleted'));
      // On a machine this small the phases are CPU-bound: what each plugin costs the
      // machine per pod explains the times above, and varies less between runs.
      figures.push(medians('machine CPU per pod, up and down', 'machineCpu'));
      // The baseline: the same agents while the reference plugins wire the pods (they
      // still watch every pod for policy).
      figures.push(medians("wiremesh's processes' CPU per pod, up and down", 'wiremeshCpu'));
    }
    return figures;
  } finally {
    await pods.stop();
    await cluster.down();
  }
}
