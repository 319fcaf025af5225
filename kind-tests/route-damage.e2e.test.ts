// Route damage on any cluster the driver opens (a 2-node process lab here, the
// real-node lab with WIREMESH_E2E_CLUSTER=real): under a ping train of 100 packets a
// second between pods on two nodes, someone on the destination's node runs
// `ip route flush table main` (every pod host route, mesh route and the underlay's
// connected route gone at once), and then `ip route del` of one pod's host route.
// The agent's route watch must have the pods reaching each other again within a
// second: the longest gap between replies is asserted below 1 s, and the lost
// packets, the gap and the agent's own repair time are printed (`route-damage ...`
// lines). The routes the agent does not own (an operator's static or service route)
// are not the agent's to restore: the suite checks they are the only ones missing
// afterwards and puts them back itself.
import test from 'ava';
import { openCluster } from './lab-driver.ts';
import type { ClusterDriver, ClusterPod } from './driver.ts';
import { eventually, pingLoss } from './probes.ts';

const NAMESPACE = 'wiremesh-e2e-routes';
/** The bound the issue sets: pods reachable again within a second. */
const RECOVERY_BOUND_MS = 1000;
let driver: ClusterDriver | undefined;
let src: ClusterPod | undefined;
let dst: ClusterPod | undefined;

const d = (): ClusterDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};

test.before(async () => {
  driver = await openCluster({
    name: 'routes',
    nodes: 2,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
  });
  const [a, b] = driver.nodeNames().slice(-2);
  if (!a || !b || a === b) throw new Error('the route damage suite needs 2 nodes');
  src = await driver.createPod(a, NAMESPACE, 'route-src');
  dst = await driver.createPod(b, NAMESPACE, 'route-dst');
});

test.after.always(async () => {
  try {
    for (const p of [src, dst]) if (p) await d().deletePod(p.namespace, p.name);
  } finally {
    if (driver) await driver.close();
  }
});

function ipOf(pod: ClusterPod | undefined): string {
  const ip = pod?.ips.find((a) => !a.includes(':'));
  if (!ip) throw new Error(`pod ${pod?.name ?? '(none)'} has no IPv4 address`);
  return ip;
}

function pods(): [ClusterPod, ClusterPod] {
  if (!src || !dst) throw new Error('no pods: test.before failed');
  return [src, dst];
}

async function reaches(from: ClusterPod, to: ClusterPod): Promise<boolean> {
  const res = await d().execInPod(
    from.namespace,
    from.name,
    ['ping', '-n', '-c', '1', '-W', '1', ipOf(to)],
    { allowFailure: true },
  );
  return res.code === 0;
}

interface Train {
  sent: number;
  received: number;
  /** Longest time between two consecutive replies, ms. */
  longestGapMs: number;
  /** Replies before the fault and after it. */
  before: number;
  after: number;
  /** The first reply after the longest gap, ms after the fault began. */
  recoveredAfterMs: number | null;
}

/**
 * Pings at 100/s for `seconds` and, once 60 replies are in, runs `fault` (argv) on
 * `node`. Starting a process in a pod or a node takes a moment, longer on a busy
 * machine, so the ping writes to a file in the pod that is read until replies flow.
 * Replies count as before the fault up to the moment the fault was sent, and as after
 * it from the moment its command returned.
 */
async function pingTrain(
  from: ClusterPod,
  to: ClusterPod,
  seconds: number,
  node: string,
  fault: readonly string[],
): Promise<Train> {
  const file = `/tmp/wiremesh-route-damage-${process.pid}.ping`;
  const inPod = (argv: string[]) =>
    d().execInPod(from.namespace, from.name, argv, { allowFailure: true });
  const ping = `ping -n -D -i 0.01 -W 1 -c ${seconds * 100} ${ipOf(to)}`;
  const run = inPod(['sh', '-c', `exec ${ping} > ${file}`]);
  try {
    const replies = async () => ((await inPod(['cat', file])).stdout.match(/time=/g) ?? []).length;
    await eventually('the ping train to flow', async () => (await replies()) >= 60, 20_000, 50);
    // The fault lands somewhere between these two readings.
    const faultAt = Date.now();
    await d().execInNode(node, fault);
    const faultDone = Date.now();
    await run;
    const out = (await inPod(['cat', file])).stdout;
    const { sent, received } = pingLoss(out);
    const stamps = [...out.matchAll(/^\[(\d+\.\d+)\].*time=/gm)].map((m) => Number(m[1]) * 1000);
    let longestGapMs = 0;
    let gapEnd: number | null = null;
    for (let i = 1; i < stamps.length; i++) {
      const gap = (stamps[i] ?? 0) - (stamps[i - 1] ?? 0);
      if (gap > longestGapMs) {
        longestGapMs = gap;
        gapEnd = stamps[i] ?? null;
      }
    }
    return {
      sent,
      received,
      longestGapMs,
      before: stamps.filter((s) => s < faultAt).length,
      after: stamps.filter((s) => s >= faultDone).length,
      recoveredAfterMs: gapEnd === null || gapEnd < faultAt ? null : gapEnd - faultAt,
    };
  } finally {
    await run;
    await inPod(['rm', '-f', file]);
  }
}

/** `ip -4 route show table main` on a node, one line per route (next hops joined). */
async function mainRoutes(node: string): Promise<string[]> {
  const out = (await d().execInNode(node, ['ip', '-4', 'route', 'show', 'table', 'main'])).stdout;
  return out
    .replace(/\n\s+/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** Routes the node needs that the agent keeps: its protocols and the kernel's connected ones. */
const agentKept = (line: string) => /\bproto (251|252|253|kernel)\b/.test(line);
const routeKey = (line: string) => line.split(/\s+/).slice(0, 3).join(' ');

/**
 * Puts back the routes of `before` that `now` lacks (the operator's, which the agent
 * leaves alone), as `ip route replace` of their printed form.
 */
async function restoreOperatorRoutes(node: string, before: readonly string[]): Promise<string[]> {
  const now = new Set((await mainRoutes(node)).map(routeKey));
  const missing = before.filter((l) => !now.has(routeKey(l)));
  for (const line of missing) {
    const args = line.split(/\s+/).filter((w) => !['linkdown', 'dead', 'offload'].includes(w));
    await d().execInNode(node, ['ip', 'route', 'replace', ...args], { allowFailure: true });
  }
  return missing;
}

function report(t: { log: (...v: unknown[]) => void }, name: string, train: Train, extra: string) {
  const line =
    `route-damage ${name}: lost ${train.sent - train.received}/${train.sent} pings at 100/s, ` +
    `longest gap ${Math.round(train.longestGapMs)} ms, replies again ${train.recoveredAfterMs === null ? '-' : Math.round(train.recoveredAfterMs)} ms after the fault began; ${extra}`;
  t.log(line);
  console.log(line);
}

test.serial(
  '`ip route flush table main` on a node: its pods are reachable again within a second',
  async (t) => {
    const [from, to] = pods();
    const node = to.node;
    await eventually('the pods to reach each other', () => reaches(from, to), 60_000, 200);
    const statusBefore = await d().agentStatus(node);
    t.true(statusBefore.routes?.watching, 'the agent watches the routes');
    const before = await mainRoutes(node);
    t.true(
      before.some((l) => l.startsWith(`${ipOf(to)} `) && /proto 252/.test(l)),
      `${node} has the pod's host route (${before.join('; ')})`,
    );
    try {
      const train = await pingTrain(from, to, 5, node, ['ip', 'route', 'flush', 'table', 'main']);
      const statusAfter = await d().agentStatus(node);
      const after = await mainRoutes(node);
      // Every route the agent keeps is back, as it was.
      const afterKeys = new Set(after.map(routeKey));
      t.deepEqual(
        before.filter(agentKept).filter((l) => !afterKeys.has(routeKey(l))),
        [],
        'the pod host routes, mesh routes and the underlay’s connected route are back',
      );
      const operatorMissing = await restoreOperatorRoutes(node, before);
      t.true(
        operatorMissing.every((l) => !agentKept(l)),
        'only the operator’s routes are missing',
      );
      const repairs = (statusAfter.routes?.repairs ?? 0) - (statusBefore.routes?.repairs ?? 0);
      const last = statusAfter.routes?.lastRepair;
      report(
        t,
        'flush',
        train,
        `agent: ${last?.count ?? 0} routes removed, written back in ${Math.round(last?.restoredMs ?? -1)} ms, verified in ${Math.round(last?.repairedMs ?? -1)} ms, ${repairs} repair pass(es); ` +
          `left to the operator: ${operatorMissing.length ? operatorMissing.join(', ') : 'none'}`,
      );
      t.true(train.before > 50, `pings flowed before the fault (${train.before} replies)`);
      t.true(
        train.after > 100,
        `the train ran on a second past the flush (${train.after} replies)`,
      );
      t.true(
        train.longestGapMs < RECOVERY_BOUND_MS,
        `longest gap ${Math.round(train.longestGapMs)} ms (bound ${RECOVERY_BOUND_MS} ms)`,
      );
      t.is(repairs, 1, 'one flush, one repair: no storm of passes');
      t.true(
        last?.removed.some((l) => l.startsWith(`${ipOf(to)} dev `)),
        `the agent names the pod's route among what went (${last?.removed.join('; ')})`,
      );
    } finally {
      await restoreOperatorRoutes(node, before);
    }
  },
);

test.serial('one pod’s host route deleted by hand: back within a second', async (t) => {
  const [from, to] = pods();
  const node = to.node;
  await eventually('the pods to reach each other', () => reaches(from, to), 30_000, 200);
  const statusBefore = await d().agentStatus(node);
  const route = (await mainRoutes(node)).find((l) => l.startsWith(`${ipOf(to)} `));
  if (!route) return t.fail(`${node} has no host route to ${ipOf(to)}`);
  const train = await pingTrain(from, to, 4, node, ['ip', 'route', 'del', `${ipOf(to)}/32`]);
  const statusAfter = await d().agentStatus(node);
  const last = statusAfter.routes?.lastRepair;
  report(
    t,
    'pod-route-deleted',
    train,
    `agent: written back in ${Math.round(last?.restoredMs ?? -1)} ms, verified in ${Math.round(last?.repairedMs ?? -1)} ms`,
  );
  t.true(train.before > 50, `pings flowed before the fault (${train.before} replies)`);
  t.true(train.after > 100, `the train ran on a second past the fault (${train.after} replies)`);
  t.true(
    train.longestGapMs < RECOVERY_BOUND_MS,
    `longest gap ${Math.round(train.longestGapMs)} ms (bound ${RECOVERY_BOUND_MS} ms)`,
  );
  t.is((statusAfter.routes?.repairs ?? 0) - (statusBefore.routes?.repairs ?? 0), 1);
  t.is(last?.count, 1);
  t.true(last?.removed[0]?.startsWith(`${ipOf(to)} dev `), `named: ${last?.removed.join('; ')}`);
  t.true((await mainRoutes(node)).includes(route), 'the route is back as it was');
});
