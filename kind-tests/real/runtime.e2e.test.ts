// The plugin under a real runtime (kubelet + containerd, the conflist exactly as the
// DaemonSet installs it), on the real-node lab: a pod whose sandbox is killed is
// given a new one by the kubelet and is reachable again, its old attachment gone and
// no address leaked; a hostPort (the chained portmap) answers on its node's address
// from another node; a pod with the bandwidth annotations (the chained bandwidth
// plugin) is held to its rate both ways once containerd's burst is spent, measured
// with iperf3 against an unlimited pod on the same node. Run by the cluster tier (WIREMESH_E2E_CLUSTER=real).
import test from 'ava';
import { openCluster } from '../lab-driver.ts';
import { KindDriver, probePod } from '../kind-driver.ts';
import { hostVethName } from '../../cni/index.ts';
import { eventually } from '../probes.ts';
import { allocations, nodeLinks, type HeldAddress } from './attachments.ts';
import { runProbes, serveArgv } from '../netpol/prober.ts';

const NAMESPACE = 'wiremesh-e2e-runtime';
const PORT = 8080;
const HOST_PORT = 18080;
/** The bandwidth annotations' rate, in bit/s ("10M"). */
const RATE = 10_000_000;
let driver: KindDriver | undefined;
let serverNode = '';
let clientNode = '';

const d = (): KindDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};

test.before(async () => {
  const opened = await openCluster({ name: 'runtime', nodes: 2, podsPerNode: 0 });
  if (!(opened instanceof KindDriver))
    throw new Error('this suite needs a kubeadm cluster (WIREMESH_E2E_CLUSTER=real or kind)');
  driver = opened;
  const [a, b] = driver.nodeNames();
  if (!a || !b) throw new Error(`this suite needs 2 nodes: ${driver.nodeNames().join(', ')}`);
  [serverNode, clientNode] = [a, b];
  await driver.kubectl.ensureNamespace(NAMESPACE);
});

test.after.always(async () => {
  if (driver) await driver.kubectl.deleteNamespace(NAMESPACE).catch(() => {});
  if (driver) await driver.close();
});

interface PodInfo {
  uid: string;
  ips: string[];
  ready: boolean;
}

/** Create a probe pod with extra annotations and ports (hostPort), and wait for it to be Ready. */
async function createPod(
  node: string,
  name: string,
  opts: {
    annotations?: Record<string, string>;
    ports?: { containerPort: number; hostPort?: number; protocol?: string }[];
    command?: string[];
  } = {},
): Promise<PodInfo> {
  const spec = probePod(node, NAMESPACE, name, {}, [], opts.command) as {
    metadata: Record<string, unknown>;
    spec: { containers: Record<string, unknown>[] };
  };
  if (opts.annotations) spec.metadata.annotations = opts.annotations;
  const [container] = spec.spec.containers;
  if (container && opts.ports) container.ports = opts.ports;
  await d().kubectl.apply('-', JSON.stringify(spec));
  await d().kubectl.wait([`pod/${name}`], 'condition=Ready', {
    namespace: NAMESPACE,
    timeoutSeconds: 120,
  });
  return podInfo(name);
}

async function podInfo(name: string): Promise<PodInfo> {
  const pod = await d().kubectl.json<{
    metadata: { uid: string };
    status: { podIPs?: { ip: string }[]; conditions?: { type: string; status: string }[] };
  }>(['get', 'pod', '-n', NAMESPACE, name]);
  return {
    uid: pod.metadata.uid,
    ips: (pod.status.podIPs ?? []).map((i) => i.ip),
    ready: (pod.status.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True'),
  };
}

/** Probe a TCP port from where `exec` runs; the prober server's answer (its id) or ''. */
async function answerFrom(
  exec: (argv: readonly string[], o?: object) => ReturnType<KindDriver['execInNode']>,
  ip: string,
  port: number,
): Promise<string> {
  const [r] = await runProbes(exec, [{ proto: 'TCP', ip, port }], 1000, d().proberPath());
  return r?.result === 'reachable' ? (r.answer ?? '') : '';
}

/** The PIDs of a pod's sandbox (pause) processes, found from the node by the pod's cgroup. */
async function pausePids(node: string, uid: string): Promise<string[]> {
  // cgroupfs names the pod's cgroup pod<uid>, systemd kubepods-...-pod<uid with _>.slice.
  const script = `for d in /proc/[0-9]*; do
    grep -qE 'pod(${uid}|${uid.replaceAll('-', '_')})' "$d/cgroup" 2>/dev/null || continue
    [ "$(tr '\\0' ' ' <"$d/cmdline" 2>/dev/null)" = "/pause " ] && echo "\${d#/proc/}"
  done; true`;
  const res = await d().execInNode(node, ['sh', '-c', script]);
  return res.stdout.split('\n').filter(Boolean);
}

test.serial(
  'a pod whose sandbox is killed gets a new one from the kubelet, is reachable again, and leaks no address',
  async (t) => {
    const name = 'churn';
    const pod = await createPod(serverNode, name, {
      command: serveArgv([PORT], name, d().proberPath()),
    });
    const client = 'churn-client';
    await createPod(clientNode, client);
    const fromClient = (argv: readonly string[], o?: object) =>
      d().execInPod(NAMESPACE, client, argv, o);
    await eventually(
      `${client} -> ${name}`,
      async () => (await answerFrom(fromClient, pod.ips[0] ?? '', PORT)) === name,
      30_000,
      500,
    );
    const before = await allocations(d());
    const mine = before.filter((a) => a.podUID === pod.uid);
    t.is(mine.length, 1, `one allocation carries the pod's UID: ${JSON.stringify(mine)}`);
    const old = mine[0];
    if (!old) throw new Error('no allocation of the pod');
    t.is(old.address, pod.ips[0] ?? '');
    t.true((await nodeLinks(d(), serverNode)).has(hostVethName(old.containerID, 'eth0')));

    const pids = await pausePids(serverNode, pod.uid);
    t.is(pids.length, 1, `one pause process of pod ${pod.uid}: ${pids.join(', ')}`);
    await d().execInNode(serverNode, ['kill', '-KILL', ...pids]);

    // The kubelet notices the dead sandbox, tears it down (CNI DEL) and runs a new one (ADD).
    let now: HeldAddress[] = [];
    let info = pod;
    const ms = await eventually(
      'a new sandbox, attached, with the pod Ready',
      async () => {
        now = (await allocations(d())).filter((a) => a.podUID === pod.uid);
        info = await podInfo(name);
        return (
          now.length === 1 &&
          now[0]?.containerID !== old.containerID &&
          info.ready &&
          info.ips[0] === now[0]?.address
        );
      },
      120_000,
      1000,
    ).catch((e: unknown) => {
      t.fail(
        `${(e as Error).message}: allocations ${JSON.stringify(now)}, pod ${JSON.stringify(info)}`,
      );
      return -1;
    });
    t.log(
      `new sandbox attached and Ready ${ms} ms after the kill; address ${old.address} -> ${info.ips[0]}`,
    );
    await eventually(
      `${client} -> ${name} in its new sandbox`,
      async () => (await answerFrom(fromClient, info.ips[0] ?? '', PORT)) === name,
      30_000,
      500,
    );
    const after = await allocations(d());
    t.deepEqual(
      after.filter((a) => a.podUID === pod.uid).map((a) => a.handle),
      now.map((a) => a.handle),
      "only the new sandbox's attachment is held",
    );
    t.false(
      after.some((a) => a.handle === old.handle),
      "the dead sandbox's attachment is released",
    );
    t.is(
      after.filter((a) => a.node === serverNode).length,
      before.filter((a) => a.node === serverNode).length,
      `${serverNode} holds as many addresses as before the kill`,
    );
    const addresses = after.map((a) => a.address);
    t.is(new Set(addresses).size, addresses.length, 'no address held twice');
    const veths = await nodeLinks(d(), serverNode);
    t.false(veths.has(hostVethName(old.containerID, 'eth0')), "the dead sandbox's pair is gone");
    t.true(veths.has(hostVethName(now[0]?.containerID ?? '', 'eth0')), "the new sandbox's pair");
  },
);

test.serial(
  "a hostPort answers on its node's address, from another node and its pods",
  async (t) => {
    const name = 'hostport';
    await createPod(serverNode, name, {
      command: serveArgv([PORT], name, d().proberPath()),
      ports: [{ containerPort: PORT, hostPort: HOST_PORT, protocol: 'TCP' }],
    });
    const client = 'hostport-client';
    await createPod(clientNode, client);
    const nodeIP = d().underlayIP(serverNode);
    const fromNode = (argv: readonly string[], o?: object) => d().execInNode(clientNode, argv, o);
    const fromPod = (argv: readonly string[], o?: object) =>
      d().execInPod(NAMESPACE, client, argv, o);
    await eventually(
      `${clientNode} -> ${nodeIP}:${HOST_PORT}`,
      async () => (await answerFrom(fromNode, nodeIP, HOST_PORT)) === name,
      30_000,
      500,
    );
    t.is(await answerFrom(fromNode, nodeIP, HOST_PORT), name, `from ${clientNode}'s own address`);
    await eventually(
      `${client} -> ${nodeIP}:${HOST_PORT}`,
      async () => (await answerFrom(fromPod, nodeIP, HOST_PORT)) === name,
      30_000,
      500,
    );
    t.is(await answerFrom(fromPod, nodeIP, HOST_PORT), name, `from a pod on ${clientNode}`);
  },
);

/**
 * containerd passes the bandwidth plugin a burst of 2^32-1 bits with the rate, so the
 * token bucket (tbf) of each direction lets about 184 MiB through at full speed before
 * the rate holds. Sending that much first, then measuring, shows the rate a long
 * transfer gets.
 */
const BURST_WARMUP = '200M';

/** iperf3 from the client pod to a server pod for `seconds` (after `warmup` bytes); bit/s received. */
async function iperf(
  client: string,
  ip: string,
  reverse: boolean,
  warmup?: string,
  seconds = 8,
): Promise<number> {
  const direction = reverse ? ['-R'] : [];
  if (warmup)
    await d().execInPod(NAMESPACE, client, ['iperf3', '-c', ip, '-n', warmup, ...direction], {
      timeoutMs: 180_000,
    });
  const argv = [
    'iperf3',
    '-c',
    ip,
    '-t',
    String(seconds),
    '-O',
    '2',
    '-J',
    ...(reverse ? ['-R'] : []),
  ];
  const res = await d().execInPod(NAMESPACE, client, argv, { timeoutMs: (seconds + 30) * 1000 });
  const out = JSON.parse(res.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return out.end.sum_received.bits_per_second;
}

test.serial(
  'a pod with the bandwidth annotations is held to its rate both ways; one without is not',
  async (t) => {
    const limited = await createPod(serverNode, 'bw-limited', {
      command: ['iperf3', '-s'],
      annotations: {
        'kubernetes.io/ingress-bandwidth': '10M',
        'kubernetes.io/egress-bandwidth': '10M',
      },
    });
    const free = await createPod(serverNode, 'bw-free', { command: ['iperf3', '-s'] });
    const client = 'bw-client';
    await createPod(clientNode, client);
    const mbit = (bps: number) => `${(bps / 1e6).toFixed(1)} Mbit/s`;
    const into = await iperf(client, limited.ips[0] ?? '', false, BURST_WARMUP);
    const outOf = await iperf(client, limited.ips[0] ?? '', true, BURST_WARMUP);
    const baseline = await iperf(client, free.ips[0] ?? '', false);
    t.log(
      `limited pod (10M both ways), after ${BURST_WARMUP} each way: into ${mbit(into)}, out of ${mbit(outOf)}; unlimited pod: into ${mbit(baseline)}`,
    );
    t.true(into <= RATE * 1.2, `ingress ${mbit(into)} is held to 10 Mbit/s`);
    t.true(outOf <= RATE * 1.2, `egress ${mbit(outOf)} is held to 10 Mbit/s`);
    t.true(baseline > RATE * 3, `the unlimited pod on the same node gets ${mbit(baseline)}`);
  },
);
