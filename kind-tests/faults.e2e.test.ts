// The fault suite: on a lab of its own (`faults`, 3 nodes running the real agent),
// each fault is injected under running traffic (a fast ping, -i 0.05, between pods
// on different nodes, and for some a TCP stream), and the suite reports what was
// lost and how long recovery took: one `fault NAME: ...` line each, and every
// figure in .cache/test-logs/faults.json so the notes can quote them. Assertions
// are on correctness only (traffic keeps flowing or resumes, state is restored);
// the timings are reported, never asserted, since these machines are shared.
// The lab is always a fresh one: stopping the apiserver of a shared lab would
// break the suites using it.
import test from 'ava';
import { mkdir, writeFile, readFile, copyFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import type { Lab, LabPod } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { background, pingLossAtStop, eventually, type Background } from './probes.ts';
import { KubeBlockApi, type IpamBlock } from '../ipam/index.ts';
import { defaultRunner } from '../sys/index.ts';
import { annotatedNode } from '../lab/kube.ts';

let driver: LabDriver | undefined;
let lab: Lab;
const FIGURES_DIR = new URL('../.cache/test-logs/', import.meta.url).pathname;
const FIGURES_FILE = `${FIGURES_DIR}faults.json`;
const figures: Record<string, Record<string, unknown>> = {};

test.before(async () => {
  driver = await LabDriver.fresh({
    name: 'faults',
    nodes: 3,
    podsPerNode: 2,
    agents: true,
    cni: 'wiremesh',
  });
  lab = driver.lab;
});

test.after.always(async () => {
  try {
    await mkdir(FIGURES_DIR, { recursive: true });
    await writeFile(
      FIGURES_FILE,
      `${JSON.stringify({ measuredAt: new Date().toISOString(), faults: figures }, null, 2)}\n`,
    );
    // The agents' and the apiserver's logs, as evidence for the figures.
    for (const p of lab?.state.procs ?? [])
      if (p.name.startsWith('agent-') || p.name === 'kube-apiserver')
        await copyFile(p.log, `${FIGURES_DIR}faults-${p.name}.log`).catch(() => {});
  } finally {
    if (driver) await driver.close();
  }
});

function nodeNames(): [string, string, string] {
  const [a, b, c] = lab.plan.nodes.map((n) => n.name);
  if (!a || !b || !c) throw new Error('the fault suite needs 3 nodes');
  return [a, b, c];
}

function podOn(node: string, j = 0): LabPod {
  const pod = lab.state.pods.filter((p) => p.node === node)[j];
  if (!pod) throw new Error(`no pod ${j} on ${node}`);
  return pod;
}

function ipOf(pod: LabPod): string {
  const ip = pod.ips[0];
  if (!ip) throw new Error(`pod ${pod.name} has no address`);
  return ip;
}

/** One ping from a pod; true when it is answered within a second. */
async function reaches(from: LabPod, to: LabPod, count = 1): Promise<boolean> {
  const res = await lab.execInPod(
    from.name,
    ['ping', '-n', '-c', String(count), '-i', '0.2', '-W', '1', ipOf(to)],
    { namespace: from.namespace, allowFailure: true },
  );
  return res.code === 0;
}

interface PingFigures {
  sent: number;
  received: number;
  /** Unanswered before the last reply, or after it if replies had stopped. */
  lost: number;
  /** Requests out when ping was stopped (neither lost nor answered). */
  inFlight: number;
  /** Longest gap between consecutive replies, ms. */
  longestGapMs: number;
  /** Reply times (epoch seconds, from ping -D). */
  stamps: number[];
}

interface TcpFigures {
  code: number;
  bytes: number;
  /** One-second intervals in which the stream moved no byte. */
  stalledSeconds: number;
  stderr: string;
}

/** A fast ping (every 50 ms) and optionally a TCP stream (iperf3) from one pod to another. */
interface Traffic {
  stop(): Promise<{ ping: PingFigures; tcp: TcpFigures | null }>;
}

let nextPort = 5300;

async function startTraffic(from: LabPod, to: LabPod, tcpSeconds = 0): Promise<Traffic> {
  const fromPrefix = lab.execPrefix({ pod: from.name, namespace: from.namespace });
  const toPrefix = lab.execPrefix({ pod: to.name, namespace: to.namespace });
  let server: Background | undefined;
  let client: Background | undefined;
  if (tcpSeconds > 0) {
    const port = String(nextPort++);
    server = background([...toPrefix, 'iperf3', '-s', '-1', '-p', port, '-B', ipOf(to)]);
    await eventually('the iperf3 server to listen', async () =>
      (
        await lab.execInPod(to.name, ['ss', '-Hltn', `sport = :${port}`], {
          namespace: to.namespace,
        })
      ).stdout.includes(port),
    );
    client = background([
      ...fromPrefix,
      'iperf3',
      '-c',
      ipOf(to),
      '-p',
      port,
      '-t',
      String(tcpSeconds),
      '-i',
      '1',
      '-J',
    ]);
  }
  const pinger = background([...fromPrefix, 'ping', '-n', '-D', '-i', '0.05', '-W', '1', ipOf(to)]);
  await sleep(1000); // some traffic before the fault
  return {
    async stop() {
      const stoppedAt = Date.now();
      await pinger.kill(); // SIGINT: ping prints its summary
      const out = (await pinger.wait()).stdout;
      const { sent, received, lost, inFlight } = pingLossAtStop(out, stoppedAt);
      const stamps = [...out.matchAll(/^\[(\d+\.\d+)\].*time=/gm)].map((m) => Number(m[1]));
      let gap = 0;
      for (let i = 1; i < stamps.length; i++)
        gap = Math.max(gap, (stamps[i] ?? 0) - (stamps[i - 1] ?? 0));
      const ping = { sent, received, lost, inFlight, longestGapMs: gap * 1000, stamps };
      let tcp: TcpFigures | null = null;
      if (client && server) {
        const res = await client.wait();
        await server.kill();
        tcp = tcpFigures(res);
      }
      return { ping, tcp };
    },
  };
}

function tcpFigures(res: { stdout: string; stderr: string; code: number }): TcpFigures {
  try {
    const report = JSON.parse(res.stdout) as {
      intervals?: { sum: { bytes: number } }[];
      end?: { sum_received?: { bytes: number } };
      error?: string;
    };
    return {
      code: res.code,
      bytes: report.end?.sum_received?.bytes ?? 0,
      stalledSeconds: (report.intervals ?? []).filter((i) => i.sum.bytes === 0).length,
      stderr: (report.error ?? res.stderr).slice(0, 300),
    };
  } catch {
    return { code: res.code, bytes: 0, stalledSeconds: -1, stderr: res.stderr.slice(0, 300) };
  }
}

/** The first reply at or after `at` (epoch ms), as ms after `at`; null when none came. */
function firstReplyAfter(stamps: readonly number[], at: number): number | null {
  const s = stamps.find((x) => x * 1000 >= at);
  return s === undefined ? null : s * 1000 - at;
}

function repliesBetween(stamps: readonly number[], from: number, to: number): number {
  return stamps.filter((x) => x * 1000 >= from && x * 1000 < to).length;
}

const seconds = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s`);

function record(
  t: { log: (...v: unknown[]) => void },
  fault: string,
  line: string,
  data: Record<string, unknown>,
): void {
  figures[fault] = { summary: line, ...data };
  t.log(`fault ${fault}: ${line}`);
  console.log(`fault ${fault}: ${line}`);
}

async function listBlocks(): Promise<IpamBlock[]> {
  return (await KubeBlockApi.fromFile(lab.state.kubeconfig).listBlocks()).blocks;
}

function inCidr(ip: string, cidr: string): boolean {
  const [base, len] = cidr.split('/');
  const toInt = (a: string) => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  const start = toInt(base ?? '');
  return toInt(ip) >= start && toInt(ip) < start + size;
}

function agentLog(node: string): Promise<string> {
  const rec = lab.state.procs.find((p) => p.name === lab.agentProcName(node));
  if (!rec) throw new Error(`no agent record for ${node}`);
  return readFile(rec.log, 'utf8');
}

test.serial(
  'apiserver stopped for 60 s: traffic flows, a new pod gets an address from its node’s blocks, all resyncs',
  async (t) => {
    const [a, b, c] = nodeNames();
    const src = podOn(a);
    const dst = podOn(b);
    await eventually('traffic before the fault', () => reaches(src, dst), 30_000);
    const blocksBefore = (await listBlocks()).filter((x) => x.node === a).map((x) => x.cidr);
    t.true(blocksBefore.length > 0, `${a} holds a block`);
    const statusBefore = await Promise.all(nodeNames().map((n) => lab.agentStatus(n)));

    const traffic = await startTraffic(src, dst, 66);
    const stoppedAt = Date.now();
    await lab.stopApiserver();
    t.log(`apiserver stopped (${((Date.now() - stoppedAt) / 1000).toFixed(1)} s to stop)`);

    // A pod created while the apiserver is away: the CNI ADD only (its kubelet could
    // not write the Pod object either).
    const addStart = Date.now();
    const fresh = await lab.addPod(a, 'default', 'faults-offline', { app: 'lab-probe' }, [], {
      register: false,
    });
    const addMs = Date.now() - addStart;
    const freshIP = ipOf(fresh);
    t.true(
      blocksBefore.some((cidr) => inCidr(freshIP, cidr)),
      `${freshIP} lies in one of ${a}'s blocks (${blocksBefore.join(', ')})`,
    );
    const reachesWhileDown = await eventually(
      'the new pod to reach a pod on another node while the apiserver is down',
      () => reaches(fresh, podOn(c)),
      15_000,
    ).catch(() => null);

    await sleep(Math.max(0, stoppedAt + 60_000 - Date.now()));
    const statusDown = await Promise.all(nodeNames().map((n) => lab.agentStatus(n)));
    await lab.startApiserver();
    const upAt = Date.now();

    // The agents' watches are back: a Node registered as soon as the apiserver is
    // ready reaches every agent's WireGuard peers, and leaves them when deleted.
    const kc = new KubeConfig();
    kc.loadFromFile(lab.state.kubeconfig);
    const core = kc.makeApiClient(CoreV1Api);
    const probeKey = randomBytes(32).toString('base64');
    const probeNode = 'faults-watch-probe';
    await core.createNode({ body: annotatedNode(probeNode, probeKey, '198.18.250.250:51825') });
    t.teardown(() =>
      core
        .deleteNode({ name: probeNode })
        .then(() => undefined)
        .catch(() => undefined),
    );
    const hasProbe = async (n: string) =>
      (await lab.execInNode(n, ['wg', 'show', 'wiremesh.wg', 'peers'])).stdout.includes(probeKey);
    // Resync: every agent passes a reconcile after the return, and the new pod's
    // allocation reaches the IPAMBlock objects.
    const sinceUp = async (what: string, check: () => Promise<boolean>) => {
      await eventually(what, check, 60_000, 200);
      return Date.now() - upAt;
    };
    const [allocationInApiMs, reconciled, watchMs] = await Promise.all([
      sinceUp(`the allocation of ${freshIP} to appear in the IPAMBlock objects`, async () =>
        (await listBlocks()).some(
          (blk) =>
            blk.node === a &&
            [...blk.allocations.values()].some(
              (x) => x.address === freshIP && x.pod === fresh.name,
            ),
        ),
      ),
      sinceUp('every agent to reconcile successfully after the apiserver returns', async () => {
        for (const n of nodeNames()) {
          const s = await lab.agentStatus(n);
          if (!s.synced || s.reconcile.lastError !== null) return false;
          if ((s.reconcile.lastSuccessAt ?? 0) < upAt) return false;
        }
        return true;
      }),
      sinceUp('a Node created after the return to reach every agent', async () => {
        for (const n of nodeNames()) if (!(await hasProbe(n))) return false;
        return true;
      }),
    ]);
    await core.deleteNode({ name: probeNode });
    await eventually(
      'the deleted Node to leave every agent',
      async () => {
        for (const n of nodeNames()) if (await hasProbe(n)) return false;
        return true;
      },
      30_000,
      200,
    );
    await lab.registerPod(fresh, { app: 'lab-probe' });
    for (const to of [podOn(b), podOn(c)]) {
      await eventually(`${fresh.name} -> ${to.name}`, () => reaches(fresh, to), 20_000);
      await eventually(`${to.name} -> ${fresh.name}`, () => reaches(to, fresh), 20_000);
    }
    const { ping, tcp } = await traffic.stop();
    for (const n of nodeNames()) await lab.waitAgentReady(n);

    const failuresDuring = statusDown.map(
      (s, i) => s.reconcile.failures - (statusBefore[i]?.reconcile.failures ?? 0),
    );
    record(
      t,
      'apiserver-stopped',
      `lost ${ping.lost}/${ping.sent} packets (longest gap ${ping.longestGapMs.toFixed(0)} ms), ` +
        `TCP stalled ${tcp?.stalledSeconds} s of 66; new pod ${freshIP} addressed offline in ${addMs} ms` +
        ` (reached another node while down: ${reachesWhileDown === null ? 'no' : 'yes'}); ` +
        `after the apiserver was ready: the allocation in the API ${seconds(allocationInApiMs)}, every agent reconciled ${seconds(reconciled)}, a Node created then a peer on every node ${seconds(watchMs)}`,
      {
        downSeconds: 60,
        ping: { sent: ping.sent, received: ping.received, longestGapMs: ping.longestGapMs },
        tcp,
        newPod: { ip: freshIP, cniAddMs: addMs, reachedPeerWhileDownAfterMs: reachesWhileDown },
        reconcileFailuresWhileDown: failuresDuring,
        reconcileErrorWhileDown: statusDown.map((s) => s.reconcile.lastError),
        resyncMs: reconciled,
        newNodeSeenByEveryAgentMs: watchMs,
        allocationInApiMs,
      },
    );
    t.true(ping.received > 0);
    t.is(ping.lost, 0, 'existing traffic kept flowing');
    t.truthy(tcp);
    t.is(tcp?.code, 0, `the TCP stream survived: ${tcp?.stderr}`);
    t.is(tcp?.stalledSeconds, 0, 'the TCP stream never stalled');
  },
);

/** Per peer: latest handshake (epoch s) and received bytes, from `wg show` (no keys but public ones). */
async function wgPeers(node: string): Promise<Map<string, { handshake: number; rx: number }>> {
  const hs = await lab.execInNode(node, ['wg', 'show', 'wiremesh.wg', 'latest-handshakes']);
  const tr = await lab.execInNode(node, ['wg', 'show', 'wiremesh.wg', 'transfer']);
  const out = new Map<string, { handshake: number; rx: number }>();
  for (const line of hs.stdout.split('\n').filter(Boolean)) {
    const [key, when] = line.split('\t');
    out.set(key ?? '', { handshake: Number(when), rx: 0 });
  }
  for (const line of tr.stdout.split('\n').filter(Boolean)) {
    const [key, rx] = line.split('\t');
    const p = out.get(key ?? '');
    if (p) p.rx = Number(rx);
  }
  return out;
}

async function linkIndex(node: string, dev: string): Promise<number> {
  const res = await lab.execInNode(node, ['ip', '-j', 'link', 'show', dev]);
  return (JSON.parse(res.stdout) as { ifindex: number }[])[0]?.ifindex ?? -1;
}

test.serial(
  'agent killed with SIGKILL: traffic flows while it is down, the restart rewrites nothing',
  async (t) => {
    const [a, b] = nodeNames();
    const src = podOn(b);
    const dst = podOn(a);
    await eventually('traffic before the fault', () => reaches(src, dst), 20_000);
    const peersBefore = await wgPeers(a);
    const ifindexBefore = await linkIndex(a, 'wiremesh.wg');
    const logBefore = (await agentLog(a)).length;

    const traffic = await startTraffic(src, dst, 12);
    const killedAt = Date.now();
    await lab.stopAgent(a, 'SIGKILL');
    await sleep(5000); // the node runs without its agent
    const restartAt = Date.now();
    await lab.startAgent(a);
    await lab.waitAgentReady(a);
    const readyMs = Date.now() - restartAt;
    await sleep(2000); // traffic after the restart, through a first resync-free period
    const { ping, tcp } = await traffic.stop();

    const peersAfter = await wgPeers(a);
    const ifindexAfter = await linkIndex(a, 'wiremesh.wg');
    const newLog = (await agentLog(a)).slice(logBefore);
    const meshApplied = newLog
      .split('\n')
      .filter((l) => l.includes('"mesh applied"'))
      .map((l) => l.trim());
    const record_ = {
      downMs: restartAt - killedAt,
      readyAfterRestartMs: readyMs,
      ping: { sent: ping.sent, received: ping.received, longestGapMs: ping.longestGapMs },
      tcp,
      repliesWhileDown: repliesBetween(ping.stamps, killedAt + 200, restartAt),
      wireguardDeviceKept: ifindexBefore === ifindexAfter,
      peers: [...peersBefore].map(([key, before]) => ({
        key,
        before,
        after: peersAfter.get(key) ?? null,
      })),
      meshAppliedAfterRestart: meshApplied,
    };
    record(
      t,
      'agent-sigkill',
      `lost ${ping.lost}/${ping.sent} packets (${ping.inFlight} in flight at the stop; longest gap ${ping.longestGapMs.toFixed(0)} ms) with the agent down ${seconds(restartAt - killedAt)}; ` +
        `ready ${seconds(readyMs)} after restart; wiremesh.wg kept: ${record_.wireguardDeviceKept}; ` +
        `"mesh applied" after restart: ${meshApplied.length ? meshApplied.join(' | ') : 'none (nothing rewritten)'}`,
      record_,
    );
    t.true(record_.repliesWhileDown > 0, 'traffic flowed while the agent was down');
    t.is(ping.lost, 0, 'no packet lost across the crash and restart');
    t.is(tcp?.code, 0, `the TCP stream survived: ${tcp?.stderr}`);
    t.true(record_.wireguardDeviceKept, 'the WireGuard device was not recreated');
    t.deepEqual([...peersAfter.keys()].sort(), [...peersBefore.keys()].sort(), 'the same peers');
    for (const p of record_.peers) {
      t.truthy(p.after, `peer ${p.key} still there`);
      // A rewritten (removed and re-added) peer starts from zero bytes and no handshake.
      t.true((p.after?.rx ?? 0) >= p.before.rx, `peer ${p.key}: rx counter not reset`);
      t.true(
        (p.after?.handshake ?? 0) >= p.before.handshake && (p.after?.handshake ?? 0) > 0,
        `peer ${p.key}: handshake kept`,
      );
    }
    for (const line of meshApplied)
      t.notRegex(
        line,
        /"peers(Added|Updated|Removed)":[1-9]/,
        `the restart rewrote no peer: ${line}`,
      );
  },
);

/** The wireguard-go inside a node (a lab node's namespace holds only what the lab started there). */
async function wireguardGoPid(node: string): Promise<number | undefined> {
  const pids = (await defaultRunner.run(['ip', 'netns', 'pids', lab.node(node).netns])).stdout
    .split(/\s+/)
    .filter(Boolean);
  for (const pid of pids) {
    const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '');
    if (comm.trim() === 'wireguard-go') return Number(pid);
  }
  return undefined;
}

function parentPid(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/stat`, 'utf8').then((stat) =>
    Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]),
  );
}

function agentPid(node: string): number {
  const rec = lab.state.procs.find((p) => p.name === lab.agentProcName(node));
  if (!rec) throw new Error(`no agent record for ${node}`);
  return rec.pid;
}

/**
 * Kill a node's wireguard-go under traffic from a pod on `fromNode`. `supervised`: the
 * agent started it and its supervisor restarts it. `adopted`: an agent that restarted
 * after a crash found the device and adopted it (it is not its child); the agent's
 * one-second device watchdog schedules a mesh pass that creates the device anew.
 */
const wireguardGoKilled = test.macro(
  async (t, fault: string, node: 0 | 1 | 2, fromNode: 0 | 1 | 2, how: 'supervised' | 'adopted') => {
    const names = nodeNames();
    const target = names[node];
    const src = podOn(names[fromNode]);
    const dst = podOn(target);
    if (how === 'adopted') {
      // A crashed agent leaves wireguard-go running; its successor adopts the device.
      await lab.stopAgent(target, 'SIGKILL');
      await lab.startAgent(target);
      await lab.waitAgentReady(target);
    }
    await eventually('traffic before the fault', () => reaches(src, dst), 20_000);
    const pid = await wireguardGoPid(target);
    if (!pid) throw new Error(`no wireguard-go runs in ${target}`);
    const isChild = (await parentPid(pid)) === agentPid(target);
    t.is(isChild, how === 'supervised', `wireguard-go is ${how} by the agent on ${target}`);
    const logBefore = (await agentLog(target)).length;

    const traffic = await startTraffic(src, dst, 15);
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const newPidMs = await eventually(
      `a new wireguard-go in ${target}`,
      async () => {
        const p = await wireguardGoPid(target);
        return p !== undefined && p !== pid;
      },
      30_000,
      50,
    );
    const resumed = await eventually(
      'traffic to resume',
      async () => {
        const r = await lab.execInPod(src.name, ['ping', '-n', '-c', '1', '-W', '1', ipOf(dst)], {
          allowFailure: true,
        });
        return r.code === 0;
      },
      30_000,
      50,
    );
    const { ping, tcp } = await traffic.stop();
    const lines = (await agentLog(target)).slice(logBefore).split('\n');
    const evidence =
      how === 'supervised'
        ? lines.find((l) => l.includes('wireguard-go restarted'))
        : lines.find((l) => l.includes('"mesh applied"') && l.includes('"deviceCreated":true'));
    record(
      t,
      fault,
      `lost ${ping.lost}/${ping.sent} packets, longest gap ${ping.longestGapMs.toFixed(0)} ms; ` +
        `new wireguard-go after ${seconds(newPidMs)}, traffic resumed ${seconds(resumed)} after the kill; ` +
        `TCP stream ${tcp?.code === 0 ? 'survived' : 'broke'} (stalled ${tcp?.stalledSeconds} s)`,
      {
        node: target,
        recoveredBy: how === 'supervised' ? 'supervisor' : 'device watchdog + mesh pass',
        ping: { sent: ping.sent, received: ping.received, longestGapMs: ping.longestGapMs },
        tcp,
        newProcessMs: newPidMs,
        trafficResumedMs: resumed,
        firstReplyAfterKillMs: firstReplyAfter(ping.stamps, killedAt + 1),
        agentLog: evidence?.trim() ?? null,
      },
    );
    t.not(await wireguardGoPid(target), pid, 'a new wireguard-go runs');
    t.truthy(evidence, `the agent's log shows the ${how} recovery`);
    t.true(
      ping.stamps.some((s) => s * 1000 > killedAt + resumed),
      'replies after the recovery',
    );
    t.is(tcp?.code, 0, `the TCP stream survived: ${tcp?.stderr}`);
  },
);

test.serial(
  'wireguard-go killed: the agent’s supervisor restarts it and traffic resumes',
  wireguardGoKilled,
  'wireguard-go-killed',
  2,
  1,
  'supervised',
);

test.serial(
  'wireguard-go killed after an agent crash (adopted device): the agent recreates it and traffic resumes',
  wireguardGoKilled,
  'wireguard-go-killed-adopted',
  0,
  1,
  'adopted',
);

test.serial('a node’s underlay link down and up: traffic stops, then resumes', async (t) => {
  const [a, b] = nodeNames();
  const src = podOn(b);
  const dst = podOn(a);
  const veth = lab.node(a).hostVeth;
  await eventually('traffic before the fault', () => reaches(src, dst), 20_000);
  const traffic = await startTraffic(src, dst);
  const downAt = Date.now();
  await defaultRunner.run(['ip', 'link', 'set', veth, 'down']);
  await sleep(5000);
  const upAt = Date.now();
  await defaultRunner.run(['ip', 'link', 'set', veth, 'up']);
  try {
    await eventually('traffic to resume', () => reaches(src, dst), 60_000, 50);
  } finally {
    await defaultRunner.run(['ip', 'link', 'set', veth, 'up']);
  }
  await sleep(1000);
  const { ping } = await traffic.stop();
  const whileDown = repliesBetween(ping.stamps, downAt + 1100, upAt);
  const recovery = firstReplyAfter(ping.stamps, upAt);
  record(
    t,
    'underlay-link-down',
    `lost ${ping.lost}/${ping.sent} packets over ${seconds(upAt - downAt)} down; ` +
      `first reply ${recovery === null ? 'never' : `${recovery.toFixed(0)} ms`} after the link came up (longest gap ${ping.longestGapMs.toFixed(0)} ms)`,
    {
      link: veth,
      downMs: upAt - downAt,
      ping: { sent: ping.sent, received: ping.received, longestGapMs: ping.longestGapMs },
      repliesWhileDown: whileDown,
      recoveryAfterUpMs: recovery,
    },
  );
  t.is(whileDown, 0, 'no reply crossed while the link was down');
  t.not(recovery, null, 'traffic resumed after the link came up');
});

test.serial(
  'the nftables table deleted by hand: restored at once, the policy enforced again',
  async (t) => {
    const [a, b] = nodeNames();
    const guarded = await lab.addPod(b, 'default', 'faults-guarded', { role: 'guarded' });
    const friend = await lab.addPod(a, 'default', 'faults-friend', { role: 'friend' });
    const stranger = podOn(a);
    const kc = new KubeConfig();
    kc.loadFromFile(lab.state.kubeconfig);
    const net = kc.makeApiClient(NetworkingV1Api);
    await net.createNamespacedNetworkPolicy({
      namespace: 'default',
      body: {
        metadata: { name: 'faults-guarded' },
        spec: {
          podSelector: { matchLabels: { role: 'guarded' } },
          policyTypes: ['Ingress'],
          ingress: [{ _from: [{ podSelector: { matchLabels: { role: 'friend' } } }] }],
        },
      },
    });
    t.teardown(() =>
      net
        .deleteNamespacedNetworkPolicy({ namespace: 'default', name: 'faults-guarded' })
        .then(() => undefined)
        .catch(() => undefined),
    );
    const enforced = async () =>
      (await reaches(friend, guarded)) && !(await reaches(stranger, guarded));
    await eventually('the policy to be enforced', enforced, 30_000, 200);

    // The kernel gives every table a new handle: a table with another handle after the
    // delete is one the agent created anew (the agent may restore it before a probe
    // could see it missing).
    const tableHandle = async (): Promise<number | null> => {
      const res = await lab.execInNode(b, ['nft', '-j', 'list', 'tables'], { allowFailure: true });
      const parsed = JSON.parse(res.stdout || '{}') as {
        nftables?: { table?: { family: string; name: string; handle: number } }[];
      };
      const table = (parsed.nftables ?? []).find(
        (o) => o.table?.family === 'inet' && o.table.name === 'wiremesh',
      )?.table;
      return table?.handle ?? null;
    };
    const before = await tableHandle();
    t.not(before, null, 'the table exists before the delete');
    const logBefore = (await agentLog(b)).length;
    const traffic = await startTraffic(friend, guarded);
    await lab.execInNode(b, ['nft', 'delete', 'table', 'inet', 'wiremesh']);
    const missing = (await tableHandle()) === null;
    const strangerWhileMissing = missing ? await reaches(stranger, guarded) : null;
    const restored = await eventually(
      'the table to come back',
      async () => {
        const now = await tableHandle();
        return now !== null && now !== before;
      },
      30_000,
      50,
    );
    const enforcedAgain = await eventually(
      'the policy to be enforced again',
      enforced,
      30_000,
      100,
    );
    await sleep(1000);
    const { ping } = await traffic.stop();
    const deniedAfter = !(await reaches(stranger, guarded, 3));
    const newLog = (await agentLog(b)).slice(logBefore);
    const warned = newLog
      .split('\n')
      .find((l) => l.includes('nftables table changed outside the agent'));
    record(
      t,
      'nftables-table-deleted',
      `table restored ${seconds(restored)} after the delete (resync every 10 s; the agent watches for the deletion), policy enforced again at the first probe after it (${seconds(enforcedAgain)}); ` +
        `allowed pair lost ${ping.lost}/${ping.sent} packets; ` +
        `while missing the denied pair was ${strangerWhileMissing === null ? 'not probed' : strangerWhileMissing ? 'let through (no policy without the table)' : 'still blocked'}`,
      {
        restoredMs: restored,
        policyEnforcedAgainMs: enforcedAgain,
        allowedPairPing: {
          sent: ping.sent,
          received: ping.received,
          longestGapMs: ping.longestGapMs,
        },
        deniedPairReachableWhileMissing: strangerWhileMissing,
        agentLog: warned?.trim() ?? null,
      },
    );
    t.true(deniedAfter, 'the denied pair stays denied after the restore');
    t.true(await reaches(friend, guarded), 'the allowed pair still reaches');
    t.truthy(warned, 'the agent logs that it restored the table');
  },
);
