// A client outside Kubernetes: podman (Debian's 4.3, CNI backend) inside a real lab
// node, with the node's /etc/cni/net.d and /opt/cni/bin, that is the conflist exactly
// as the DaemonSet installed it (wiremesh, portmap, bandwidth at 1.0.0). A container
// on the `wiremesh` network gets an address from the node's block, reaches a pod on
// another node with only WireGuard on the underlay, keeps its address for more than
// 10 minutes while the agents' garbage collection runs every 30 s (podman passes no
// Kubernetes pod, so nothing in the API speaks for it, and nothing may take it), and
// gives it back on `podman rm`. Lab-only: podman runs in the node's own mount
// namespace, with its storage under the lab's data directory (removed by lab down).
// Run with WIREMESH_E2E_CLUSTER=real WIREMESH_E2E_LAB=<lab>; about 12 minutes.
//
// The 10 minutes need not be idle: WIREMESH_PODMAN_PHASE=start starts the container
// and leaves it (and the server pod) running, with what the rest needs in a state
// file under the lab's data directory; other suites run on the lab meanwhile (their
// agents' restarts, route flushes and garbage collection are more for the container
// to live through); WIREMESH_PODMAN_PHASE=finish waits out what is left of the 10
// minutes, checks the container still holds its address, alone, and still reaches
// the pod, then removes it. The cluster tier runs it so (hack/run-tests.sh).
import test from 'ava';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Cluster, labImages } from '../../lab/cluster.ts';
import { openCluster } from '../lab-driver.ts';
import { KindDriver, PROBE_IMAGE } from '../kind-driver.ts';
import type { ClusterPod } from '../driver.ts';
import { hostVethName } from '../../cni/index.ts';
import { eventually } from '../probes.ts';
import { allocations, nodeLinks } from './attachments.ts';
import { runProbes, serveArgv } from '../netpol/prober.ts';
import { defaultRunner, type RunOptions } from '../../sys/index.ts';

const NAMESPACE = 'wiremesh-e2e-podman';
const CONTAINER = 'wm-podman-e2e';
const PORT = 8080;
/** How long the container must keep its address, in three steps (each under ava's 5 min). */
const HOLD_STEPS_MS = [210_000, 210_000, 210_000];
const PHASE = process.env.WIREMESH_PODMAN_PHASE ?? 'all';
if (!['all', 'start', 'finish'].includes(PHASE))
  throw new Error(`WIREMESH_PODMAN_PHASE=${PHASE}: start, finish or unset`);
/** What the start phase leaves for the finish phase. */
interface Started {
  address: string;
  containerID: string;
  serverIP: string;
  startedAt: number;
}
let driver: KindDriver | undefined;
let cluster: Cluster | undefined;
let node = '';
let server: ClusterPod | undefined;
let dir = '';
let address = '';
let containerID = '';
let startedAt = 0;
const stateFile = () => join(dir, 'state.json');

const d = (): KindDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};

const runroot = () => `/run/wmpm-${node}`;

/** podman in the node's namespaces, with this suite's configuration and storage. */
function podman(args: readonly string[], opts?: RunOptions) {
  if (!cluster) throw new Error('no lab: test.before failed');
  return cluster.execInNode(
    node,
    [
      'env',
      `CONTAINERS_CONF=${dir}/containers.conf`,
      'podman',
      '--root',
      `${dir}/root`,
      // podman refuses a runroot longer than 50 characters.
      '--runroot',
      runroot(),
      '--storage-driver',
      'vfs',
      ...args,
    ],
    { timeoutMs: 120_000, ...opts },
  );
}

// The CNI backend reading the node's own CNI directories; cgroupfs and file events
// as on these machines (cgroups v1, no systemd in a node); no default ulimits, as
// raising them needs CAP_SYS_RESOURCE, which root lacks here.
const CONTAINERS_CONF = `[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[network]
network_backend = "cni"
cni_plugin_dirs = ["/opt/cni/bin"]
network_config_dir = "/etc/cni/net.d"
`;

test.before(async () => {
  const which = await defaultRunner.run(['sh', '-c', 'command -v podman'], { allowFailure: true });
  if (which.code !== 0)
    throw new Error("podman is missing (Debian's podman 4.3; make deps installs it)");
  const name = process.env.WIREMESH_E2E_LAB;
  if (!name) throw new Error('this suite needs a real-node lab: WIREMESH_E2E_LAB=<lab>');
  cluster = await Cluster.load(name);
  const opened = await openCluster({ name: 'podman', nodes: 2, podsPerNode: 0 });
  if (!(opened instanceof KindDriver))
    throw new Error('this suite needs WIREMESH_E2E_CLUSTER=real');
  driver = opened;
  const [a, b] = driver.nodeNames();
  if (!a || !b) throw new Error(`this suite needs 2 nodes: ${driver.nodeNames().join(', ')}`);
  node = b;
  dir = join(cluster.plan.dataDir, `podman-e2e-${node}`);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'containers.conf'), CONTAINERS_CONF);
  if (PHASE === 'finish') {
    let started: Started;
    try {
      started = JSON.parse(await readFile(stateFile(), 'utf8')) as Started;
    } catch (e) {
      throw new Error(
        `no container left by WIREMESH_PODMAN_PHASE=start on this lab (${(e as Error).message})`,
        { cause: e },
      );
    }
    ({ address, containerID, startedAt } = started);
    server = { name: 'server', namespace: NAMESPACE, node: a, ips: [started.serverIP] };
    return;
  }
  const image = (await labImages()).find((i) => i.ref.endsWith(PROBE_IMAGE));
  if (!image) throw new Error(`no ${PROBE_IMAGE} among the lab's images; run 'make deps'`);
  await podman(['load', '-i', image.file]);
  server = await driver.createPod(
    a,
    NAMESPACE,
    'server',
    {},
    [{ containerPort: PORT }],
    serveArgv([PORT], 'podman-server', driver.proberPath()),
  );
});

test.after.always(async () => {
  if (PHASE === 'start' && address) {
    // Left running for the finish phase, which removes it (lab down otherwise), and
    // so is the server pod: not driver.close(), which deletes the pods it made.
    const started: Started = { address, containerID, serverIP: server?.ips[0] ?? '', startedAt };
    await writeFile(stateFile(), JSON.stringify(started));
    return;
  }
  if (cluster && dir) {
    // Not `podman system reset`: with the CNI backend it deletes every conflist in
    // /etc/cni/net.d, wiremesh's (the node's pod network) included.
    await podman(['rm', '-f', '-t', '0', CONTAINER], { allowFailure: true }).catch(() => {});
    await podman(['rmi', '-af'], { allowFailure: true }).catch(() => {});
    await rm(dir, { recursive: true, force: true });
    await cluster.execInNode(node, ['rm', '-rf', runroot()], { allowFailure: true });
  }
  if (driver) await driver.kubectl.deleteNamespace(NAMESPACE).catch(() => {});
  if (driver) await driver.close();
});

/** The server pod's answer from inside the container ('' when unreachable). */
async function reachServer(): Promise<string> {
  if (!server) throw new Error('no server pod');
  const [r] = await runProbes(
    (argv, o) => podman(['exec', '-i', CONTAINER, ...argv], o),
    [{ proto: 'TCP', ip: server.ips[0] ?? '', port: PORT }],
    1000,
    d().proberPath(),
  );
  return r?.result === 'reachable' ? (r.answer ?? '') : '';
}

if (PHASE !== 'finish')
  test.serial(
    'a podman container on the installed conflist gets an address and reaches a pod on another node, encrypted',
    async (t) => {
      const run = await podman([
        'run',
        '-d',
        '--name',
        CONTAINER,
        '--network',
        'wiremesh',
        `localhost/${PROBE_IMAGE}`,
        'sleep',
        'infinity',
      ]);
      containerID = run.stdout.trim();
      startedAt = Date.now();
      const inspect = await podman([
        'inspect',
        CONTAINER,
        '--format',
        '{{(index .NetworkSettings.Networks "wiremesh").IPAddress}}',
      ]);
      address = inspect.stdout.trim();
      t.regex(address, /^100\.64\./, 'an address from the default pool');
      const held = (await allocations(d())).filter((a) => a.address === address);
      t.deepEqual(
        held.map((a) => [a.handle, a.node, a.namespace, a.pod]),
        [[`wiremesh.${containerID}.eth0`, node, '', CONTAINER]],
        "one allocation, in the container's node's block, with no Kubernetes namespace",
      );
      t.true((await nodeLinks(d(), node)).has(hostVethName(containerID, 'eth0')));
      const wire = await d().captureUnderlay(node, 'ip');
      let answer = '';
      try {
        await eventually(
          `${CONTAINER} -> ${server?.name ?? ''}`,
          async () => (answer = await reachServer()) === 'podman-server',
          30_000,
          500,
        );
      } finally {
        const w = await wire.stop();
        for (const line of w.lines) t.regex(line, /\.51825[ :].*UDP|UDP.*\.51825/, line);
        t.false(
          w.lines.some((l) => l.includes(address)),
          "the container's address never crosses the underlay",
        );
        t.true(w.lines.length > 0, 'the traffic crossed the underlay (as WireGuard)');
      }
      t.is(answer, 'podman-server');
    },
  );

// Each step waits until its time since the container started (at once when other
// suites ran meanwhile) and checks the allocation every 30 s on the way.
HOLD_STEPS_MS.forEach((ms, i) => {
  const total = HOLD_STEPS_MS.slice(0, i + 1).reduce((a, b) => a + b, 0);
  if (PHASE === 'start') return;
  test.serial(
    `the container still holds its address ${(total / 60_000).toFixed(1)} minutes on, through the agents' garbage collection`,
    async (t) => {
      t.timeout(ms + 120_000);
      if (!address) throw new Error('the container did not start');
      const end = startedAt + total;
      do {
        const held = (await allocations(d())).filter((a) => a.address === address);
        t.deepEqual(
          held.map((a) => a.handle),
          [`wiremesh.${containerID}.eth0`],
          `${address} is still the container's, alone`,
        );
        await new Promise((r) => setTimeout(r, Math.min(30_000, Math.max(0, end - Date.now()))));
      } while (Date.now() < end);
      t.true(Date.now() - startedAt >= total, 'held for as long as the step says');
      const eth0 = await podman([
        'exec',
        CONTAINER,
        'ip',
        '-j',
        '-4',
        'addr',
        'show',
        'dev',
        'eth0',
      ]);
      t.true(eth0.stdout.includes(`"${address}"`), `eth0 still holds ${address}`);
      t.is(await reachServer(), 'podman-server', 'and still reaches the pod');
    },
  );
});

if (PHASE !== 'start')
  test.serial('podman rm gives the address back and removes the pair', async (t) => {
    if (!address) throw new Error('the container did not start');
    await podman(['rm', '-f', '-t', '0', CONTAINER]);
    await eventually(
      `${address} released`,
      async () => !(await allocations(d())).some((a) => a.address === address),
      30_000,
      500,
    );
    t.false((await allocations(d())).some((a) => a.handle === `wiremesh.${containerID}.eth0`));
    t.false(
      (await nodeLinks(d(), node)).has(hostVethName(containerID, 'eth0')),
      'the host end is gone',
    );
  });
