// Upgrades and restarts under running pod traffic, on the real-node lab (no kernel
// WireGuard module: wireguard-go runs in the wiremesh-wireguard pods). Between a pod on
// one node and a pod on another, pings at 100/s both ways and a TCP stream both ways
// (iperf3 --bidir) run while an operator's everyday events happen: the agent's
// container killed, the node's kubelet and containerd restarted, `kubectl rollout
// restart` of the agents, and a new agent image rolled out. Each case reports the pings
// lost and the longest gap, and fails if the traffic does not flow again afterwards, if
// the TCP stream was reset, or if the WireGuard device was recreated (the dataplane
// must outlive the agent's container). Last, a node is power-cycled (every process,
// namespace and link of it gone, its disk kept): it must come back with the same
// key, blocks and pod address, and its peers reconnect with no operator action; the
// outage is reported. The report lines are the README's table. Run
// by the cluster tier (WIREMESH_E2E_CLUSTER=real); last of it, since it leaves the
// agents on another image reference (of the same image).
import test, { type ExecutionContext } from 'ava';
import { RealLab } from './reallab.ts';
import type { KindDriver } from '../kind-driver.ts';
import type { ClusterPod } from '../driver.ts';
import type { Cluster } from '../../lab/cluster.ts';
import { CONTAINERD_SOCKET } from '../../lab/kubeadm.ts';
import { eventually, pingLoss } from '../probes.ts';
import { ANNOTATION_PUBLIC_KEY } from '../../agent/annotations.ts';

const NAMESPACE = 'wiremesh-e2e-upgrades';
const AGENT_SELECTOR = 'app.kubernetes.io/name=wiremesh,app.kubernetes.io/component=agent';
const real = new RealLab();
let a: ClusterPod | undefined;
let b: ClusterPod | undefined;

const d = (): KindDriver => real.driver;
const lab = (): Cluster => real.cluster;
const pods = (): [ClusterPod, ClusterPod] => {
  if (!a || !b) throw new Error('traffic pods missing: test.before failed');
  return [a, b];
};
const ipOf = (p: ClusterPod): string => {
  const ip = p.ips.find((i) => !i.includes(':'));
  if (!ip) throw new Error(`${p.name} has no IPv4 address`);
  return ip;
};

test.before(async () => {
  const driver = await real.open('upgrades', 'restarts a real node’s kubelet and containerd');
  const nodes = driver.nodeNames();
  const [na, nb] = nodes.length >= 3 ? nodes.slice(1) : nodes;
  if (!na || !nb) throw new Error(`this suite needs 2 nodes: ${nodes.join(', ')}`);
  await driver.kubectl.ensureNamespace(NAMESPACE);
  a = await driver.createPod(na, NAMESPACE, 'traffic-a');
  b = await driver.createPod(nb, NAMESPACE, 'traffic-b', {}, [], ['iperf3', '-s']);
});

test.after.always(async () => {
  if (real.isOpen) {
    for (const p of [a, b]) if (p) await stopTraffic(p).catch(() => {});
    await real.driver.kubectl.deleteNamespace(NAMESPACE).catch(() => {});
    await real.close();
  }
});

const PING_OUT = '/tmp/wiremesh-upgrades.ping';
const IPERF_OUT = '/tmp/wiremesh-upgrades.iperf';

/** Starts `command` in the background of a pod's container: its output to `file`, its pid to `file`.pid. */
async function background(pod: ClusterPod, file: string, command: string): Promise<void> {
  await d().execInPod(pod.namespace, pod.name, [
    'sh',
    '-c',
    `rm -f ${file}; ${command} > ${file} 2>&1 < /dev/null & echo $! > ${file}.pid`,
  ]);
}

/** SIGINT (ping and iperf3 print their summaries) to what `background` started. */
async function interrupt(pod: ClusterPod, file: string): Promise<void> {
  await d().execInPod(
    pod.namespace,
    pod.name,
    ['sh', '-c', `[ -f ${file}.pid ] && kill -INT "$(cat ${file}.pid)"; rm -f ${file}.pid; true`],
    { allowFailure: true },
  );
}

async function stopTraffic(pod: ClusterPod): Promise<void> {
  await interrupt(pod, PING_OUT);
  await interrupt(pod, IPERF_OUT);
}

async function alive(pod: ClusterPod, file: string): Promise<boolean> {
  const res = await d().execInPod(
    pod.namespace,
    pod.name,
    ['sh', '-c', `kill -0 "$(cat ${file}.pid)"`],
    { allowFailure: true },
  );
  return res.code === 0;
}

const readFileIn = async (pod: ClusterPod, file: string): Promise<string> =>
  (await d().execInPod(pod.namespace, pod.name, ['cat', file], { allowFailure: true })).stdout;

/** Reply timestamps (ms) of `ping -D` output. */
const replyStamps = (out: string): number[] =>
  [...out.matchAll(/^\[(\d+\.\d+)\].*time=/gm)].map((m) => Number(m[1]) * 1000);

interface PingReport {
  sent: number;
  received: number;
  longestGapMs: number;
}

function pingReport(out: string): PingReport {
  const { sent, received } = pingLoss(out);
  const stamps = replyStamps(out);
  let longestGapMs = 0;
  for (let i = 1; i < stamps.length; i++)
    longestGapMs = Math.max(longestGapMs, (stamps[i] ?? 0) - (stamps[i - 1] ?? 0));
  return { sent, received, longestGapMs };
}

/** iperf3 --bidir's one-second intervals: bytes per interval, sent (TX) and received (RX). */
function iperfIntervals(out: string): { tx: number[]; rx: number[] } {
  const unit: Record<string, number> = {
    Bytes: 1,
    KBytes: 1024,
    MBytes: 1024 ** 2,
    GBytes: 1024 ** 3,
  };
  const tx: number[] = [];
  const rx: number[] = [];
  for (const line of out.split('\n')) {
    // The totals at the end say sender or receiver; the intervals say neither.
    if (/sender|receiver/.test(line)) continue;
    const m =
      /^\[\s*\d+\]\[(TX|RX)-C\]\s+[\d.]+-[\d.]+\s+sec\s+([\d.]+) (Bytes|KBytes|MBytes|GBytes)\b/.exec(
        line,
      );
    if (!m) continue;
    const bytes = Number(m[2]) * (unit[m[3] ?? 'Bytes'] ?? 1);
    (m[1] === 'TX' ? tx : rx).push(bytes);
  }
  return { tx, rx };
}

const longestZeroRun = (xs: number[]): number => {
  let run = 0;
  let longest = 0;
  for (const x of xs) {
    run = x === 0 ? run + 1 : 0;
    longest = Math.max(longest, run);
  }
  return longest;
};

/** Every node's wiremesh.wg ifindex: a new one means the device was recreated. */
async function deviceIndexes(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const node of d().nodeNames()) {
    const res = await d().execInNode(node, ['ip', '-j', 'link', 'show', 'wiremesh.wg']);
    out[node] = (JSON.parse(res.stdout) as { ifindex: number }[])[0]?.ifindex ?? -1;
  }
  return out;
}

/**
 * Runs `fault` under traffic between the two pods, then waits until replies flow
 * again both ways; reports and checks what a user would: the pings lost, the TCP
 * stream not reset and moving both ways, the device never recreated.
 */
async function underTraffic(
  t: ExecutionContext,
  name: string,
  fault: () => Promise<void>,
): Promise<void> {
  const [pa, pb] = pods();
  const devices = await deviceIndexes();
  const ping = (to: ClusterPod) => `ping -n -D -i 0.01 -W 1 ${ipOf(to)}`;
  await background(pa, PING_OUT, ping(pb));
  await background(pb, PING_OUT, ping(pa));
  await background(
    pa,
    IPERF_OUT,
    `iperf3 -c ${ipOf(pb)} --bidir -b 1M -l 1400 -t 3600 -i 1 --forceflush`,
  );
  try {
    const replies = async (p: ClusterPod, since = 0) =>
      replyStamps(await readFileIn(p, PING_OUT)).filter((s) => s >= since).length;
    await eventually(
      'the traffic to flow before the fault',
      async () => (await replies(pa)) >= 100 && (await replies(pb)) >= 100,
      30_000,
      200,
    );
    await fault();
    const after = Date.now();
    // Traffic resumes: three seconds of replies both ways after the fault is over.
    await eventually(
      `replies to flow again both ways after: ${name}`,
      async () => (await replies(pa, after)) >= 300 && (await replies(pb, after)) >= 300,
      90_000,
      500,
    );
    const streamAlive = await alive(pa, IPERF_OUT);
    await interrupt(pa, PING_OUT);
    await interrupt(pb, PING_OUT);
    await interrupt(pa, IPERF_OUT);
    const [ra, rb] = [
      pingReport(await readFileIn(pa, PING_OUT)),
      pingReport(await readFileIn(pb, PING_OUT)),
    ];
    const iperf = await readFileIn(pa, IPERF_OUT);
    const { tx, rx } = iperfIntervals(iperf);
    const recreated = Object.entries(await deviceIndexes())
      .filter(([node, index]) => devices[node] !== index)
      .map(([node]) => node);
    // Reported first, so a failing case still shows what it cost.
    const line =
      `upgrades ${name}: lost ${ra.sent - ra.received}/${ra.sent} pings ${pa.node}->${pb.node} ` +
      `(longest gap ${Math.round(ra.longestGapMs)} ms), ${rb.sent - rb.received}/${rb.sent} back ` +
      `(longest gap ${Math.round(rb.longestGapMs)} ms); TCP both ways: ${streamAlive ? 'not reset' : 'ENDED'}, ` +
      `longest stall ${longestZeroRun(tx)} s out / ${longestZeroRun(rx)} s in; ` +
      `WireGuard device recreated on: ${recreated.join(', ') || 'none'}`;
    t.log(line);
    console.log(line);
    t.true(streamAlive, `${name}: the TCP stream survived (iperf3 still runs)`);
    t.notRegex(iperf, /iperf3: error/, `${name}: ${iperf.slice(-400)}`);
    // The stream moved both ways in its last seconds (after the fault).
    t.true(tx.slice(-3).some((x) => x > 0) && rx.slice(-3).some((x) => x > 0), iperf.slice(-600));
    t.deepEqual(recreated, [], `${name}: no node's WireGuard device was recreated`);
  } finally {
    await stopTraffic(pa);
    await stopTraffic(pb);
  }
}

interface AgentPod {
  metadata: { name: string };
  spec: { nodeName: string; containers: { name: string; image: string }[] };
  status: {
    containerStatuses?: {
      name: string;
      containerID?: string;
      restartCount: number;
      ready: boolean;
    }[];
  };
}

const agentPods = async (): Promise<AgentPod[]> =>
  (await d().kubectl.pods('kube-system', AGENT_SELECTOR)) as unknown as AgentPod[];

const agentOn = async (node: string): Promise<AgentPod> => {
  const pod = (await agentPods()).find((p) => p.spec.nodeName === node);
  if (!pod) throw new Error(`no agent pod on ${node}`);
  return pod;
};

const agentContainer = (pod: AgentPod) =>
  pod.status.containerStatuses?.find((c) => c.name === 'agent');

test.serial('the agent container killed: traffic keeps flowing, the device stays', async (t) => {
  const [pa] = pods();
  const before = agentContainer(await agentOn(pa.node));
  const id = before?.containerID?.replace(/^containerd:\/\//, '');
  if (!id) throw new Error(`no agent container on ${pa.node}`);
  await underTraffic(t, 'agent container killed', async () => {
    await lab().execInNode(pa.node, [
      'ctr',
      '-a',
      CONTAINERD_SOCKET,
      '-n',
      'k8s.io',
      'tasks',
      'kill',
      '-s',
      'SIGKILL',
      id,
    ]);
    await eventually(
      `the kubelet to restart the agent on ${pa.node}`,
      async () => {
        const c = agentContainer(await agentOn(pa.node));
        return !!c && c.restartCount > (before?.restartCount ?? 0) && c.ready;
      },
      120_000,
      1000,
    );
  });
});

test.serial(
  'kubelet and containerd restarted: traffic keeps flowing, the device stays',
  async (t) => {
    const [pa] = pods();
    await underTraffic(t, 'kubelet and containerd restarted', async () => {
      await lab().restartRuntime(pa.node);
      await d().kubectl.wait([`node/${pa.node}`], 'condition=Ready', { timeoutSeconds: 120 });
      // The kubelet answers again (exec goes through it and containerd).
      await eventually(
        `the kubelet on ${pa.node} to serve exec again`,
        async () =>
          (
            await d().execInPod(pa.namespace, pa.name, ['true'], {
              allowFailure: true,
            })
          ).code === 0,
        120_000,
        1000,
      );
    });
  },
);

test.serial('`kubectl rollout restart` of the agents: traffic keeps flowing', async (t) => {
  await underTraffic(t, 'rollout restart', async () => {
    await d().kubectl.run(['-n', 'kube-system', 'rollout', 'restart', 'daemonset/wiremesh-agent']);
    await d().kubectl.rolloutStatus('daemonset', 'wiremesh-agent', 'kube-system', 300);
  });
});

test.serial('a new agent image rolled out: traffic keeps flowing', async (t) => {
  const [first] = await agentPods();
  const image = first?.spec.containers.find((c) => c.name === 'agent')?.image;
  if (!image) throw new Error('no agent image');
  // There is no registry: the "new" image is the same one under another reference,
  // which is all Kubernetes sees of an upgrade.
  const next = `${image.replace(/:[^:/]+$/, '')}:upgrade-test`;
  for (const node of d().nodeNames())
    await lab().execInNode(node, [
      'ctr',
      '-a',
      CONTAINERD_SOCKET,
      '-n',
      'k8s.io',
      'images',
      'tag',
      '--force',
      image,
      next,
    ]);
  await underTraffic(t, 'image change', async () => {
    await d().kubectl.run([
      '-n',
      'kube-system',
      'set',
      'image',
      'daemonset/wiremesh-agent',
      `agent=${next}`,
      `install-cni=${next}`,
    ]);
    await d().kubectl.rolloutStatus('daemonset', 'wiremesh-agent', 'kube-system', 300);
  });
  const images = (await agentPods()).map(
    (p) => p.spec.containers.find((c) => c.name === 'agent')?.image,
  );
  t.true(images.length > 0 && images.every((i) => i === next), images.join(', '));
});

test.serial(
  'a node rebooted: same key, blocks and pod address; its peers reconnect on their own',
  async (t) => {
    const [pa, pb] = pods();
    const kube = d().kubectl;
    const nodeKey = async (node: string) =>
      (
        await kube.json<{ metadata: { annotations?: Record<string, string> } }>([
          'get',
          'node',
          node,
        ])
      ).metadata.annotations?.[ANNOTATION_PUBLIC_KEY];
    const blocksOf = async (node: string) =>
      (
        await kube.json<{
          items: { metadata: { name: string; uid: string }; spec: { node: string } }[];
        }>(['get', 'ipamblocks.wiremesh.io'])
      ).items
        .filter((x) => x.spec.node === node)
        .map((x) => `${x.metadata.name} ${x.metadata.uid}`)
        .sort();
    const podIP = async () =>
      (await kube.pods(NAMESPACE)).find((p) => p.metadata.name === pb.name)?.status.podIPs?.[0]?.ip;
    const key = await nodeKey(pb.node);
    const blocks = await blocksOf(pb.node);
    t.truthy(key, `${pb.node} has published a key`);
    t.true(blocks.length > 0, `${pb.node} holds blocks`);

    await background(pa, PING_OUT, `ping -n -D -i 0.01 -W 1 ${ipOf(pb)}`);
    try {
      await eventually(
        'pings before the reboot',
        async () => replyStamps(await readFileIn(pa, PING_OUT)).length >= 100,
        30_000,
        200,
      );
      const start = Date.now();
      await lab().rebootNode(pb.node);
      const booted = Date.now();
      // No operator action from here: the kubelet restarts the node's pods, the agent
      // its dataplane, and the other agents' WireGuard reconnects when packets flow.
      await eventually(
        `${pb.name} running again on ${pb.node}`,
        async () => {
          const [pod] = (await kube.pods(NAMESPACE)).filter((p) => p.metadata.name === pb.name);
          return pod?.status.phase === 'Running' && (pod.status.podIPs?.length ?? 0) > 0;
        },
        240_000,
        1000,
      );
      t.is(await podIP(), ipOf(pb), `${pb.name} keeps its address`);
      await eventually(
        `replies from ${pb.name} again`,
        async () =>
          replyStamps(await readFileIn(pa, PING_OUT)).filter((s) => s > booted).length >= 100,
        180_000,
        500,
      );
      // The outage as the pinging pod saw it: the last reply before the power cut's
      // gap and the first after it.
      const replies = replyStamps(await readFileIn(pa, PING_OUT));
      const resumed = replies.find((s) => s > booted) ?? NaN;
      const lastBefore = replies.filter((s) => s < resumed).at(-1) ?? start;
      const back = Date.now();
      await eventually(
        `${pb.name} reaches ${pa.name}`,
        async () =>
          (
            await d().execInPod(pb.namespace, pb.name, ['ping', '-c', '1', '-W', '1', ipOf(pa)], {
              allowFailure: true,
            })
          ).code === 0,
        60_000,
        500,
      );
      t.is(await nodeKey(pb.node), key, `${pb.node} keeps its WireGuard key`);
      t.deepEqual(await blocksOf(pb.node), blocks, `${pb.node} keeps its blocks (same objects)`);
      const peer = (await d().agentStatus(pa.node)).peers.find((p) => p.node === pb.node);
      t.true(
        (peer?.latestHandshake ?? 0) * 1000 > start,
        `${pa.node} handshook with ${pb.node} after the reboot (${peer?.latestHandshake})`,
      );
      const line =
        `upgrades node reboot: ${pb.node} powered off and booted in ${((booted - start) / 1000).toFixed(1)} s; ` +
        `${pa.node}->${pb.name} without replies for ${((resumed - lastBefore) / 1000).toFixed(1)} s ` +
        `(the kubelet re-made the pod's sandbox); checked ${((back - start) / 1000).toFixed(0)} s after the cut: ` +
        `pod address, key and blocks unchanged, handshake renewed`;
      t.log(line);
      console.log(line);
    } finally {
      await interrupt(pa, PING_OUT);
    }
  },
);
