// The CNI plugin under load and across an agent crash, end to end on a 2-node lab:
// 2 nodes x 100 concurrent ADDs through the installed relay; then 100 more on one
// node with its agent killed by SIGKILL after about 30 of them and restarted, the
// failed ADDs retried as a kubelet would (a new sandbox id for the same pod). Then:
// no address twice among the results, in the IPAMBlock objects or on the pods'
// links; the runtime's GC with the live attachments takes back only the allocations
// whose result was lost in the crash; and after DEL of everything and a GC with no
// valid attachment, no allocation, veth or route of these pods is left. Then
// sandbox churn: two sandboxes of one pod are each wired on their own and DEL of the
// old one leaves the new one; and 50 pods through 4 sandboxes each (200 ADDs, 150
// DELs of the previous sandbox, concurrently with its successor's ADD or after it)
// end with every live sandbox wired, no address twice and nothing of a dead one left.
//
// The pods are network namespaces of their own (prefix wmc-<lab>-, removed in
// after.always: the lab does not know them) with Pod objects in namespace `conc`
// bound to their node, as a kubelet would have: without them the agent's own
// garbage collection (60 s grace) would take their addresses back mid-test.
// Lab-only: it SIGKILLs the lab's agent process mid-ADD and drives the relay with
// its own network namespaces, which the cluster-driver interface does not offer.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { Lab } from '../lab/index.ts';
import { ensureNamespace } from '../lab/kube.ts';
import { hostVethName } from '../cni/index.ts';
import { defaultRunner, systemEnv } from '../sys/index.ts';
import { eventually } from './probes.ts';

/** The lab's name; another one for a run beside the test tiers' own. */
const LAB = process.env.WIREMESH_E2E_CONC_LAB ?? 'e2econc';
const NS = 'conc';
const NETNS_PREFIX = `wmc-${LAB}-`;
const PER_NODE = 100;
/** ADDs in flight per node: all of them at once in the first round. */
const PARALLEL = 100;
/** In the crash round: the agent is killed once this many ADDs have completed. */
const KILL_AFTER = 30;
const CRASH_PARALLEL = 25;

let lab: Lab | undefined;
let core: CoreV1Api;
let objects: CustomObjectsApi;

interface Pod {
  node: string;
  name: string;
  netns: string;
}

interface Attachment extends Pod {
  containerID: string;
  address: string;
}

interface AddOutcome {
  pod: Pod;
  containerID: string;
  ms: number;
  /** The relay's exit code. */
  exit: number;
  /** The CNI error code when it failed. */
  cniCode?: number;
  address?: string;
  stdout: string;
}

const pods: Pod[] = [];
/** Every successful ADD, in the order they completed. */
const attached: Attachment[] = [];
/** The container id of every ADD tried, failed ones too (their pairs must go as well). */
const tried = new Set<string>();

test.before(async () => {
  lab = await Lab.up({ name: LAB, nodes: 2, podsPerNode: 0, agents: true, cni: 'wiremesh' });
  const kc = new KubeConfig();
  kc.loadFromFile(lab.state.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  objects = kc.makeApiClient(CustomObjectsApi);
  await ensureNamespace(core, NS); // with its default ServiceAccount, which a Pod needs
});

test.after.always(async () => {
  const res = await defaultRunner.run(['ip', '-j', 'netns', 'list'], { allowFailure: true });
  const names = res.stdout.trim()
    ? (JSON.parse(res.stdout) as { name: string }[]).map((n) => n.name)
    : [];
  await pool(
    names.filter((n) => n.startsWith(NETNS_PREFIX)),
    16,
    (n) => defaultRunner.run(['ip', 'netns', 'del', n], { allowFailure: true }),
  );
  if (lab) await lab.down();
});

function theLab(): Lab {
  if (!lab) throw new Error('the lab did not come up');
  return lab;
}

function nodeNames(): [string, string] {
  const [a, b] = theLab().plan.nodes;
  if (!a || !b) throw new Error('the lab has fewer than 2 nodes');
  return [a.name, b.name];
}

/** Run `fn` over `items` with at most `limit` in flight; results in input order. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (x: T) => Promise<R>) {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

const newContainerID = () => randomBytes(16).toString('hex');
const handleOf = (containerID: string) => `wiremesh.${containerID}.eth0`;

/** Run the installed plugin binary on a node, as a container runtime does. */
function runPlugin(node: string, env: Record<string, string>, stdin: string) {
  return theLab().execInNode(node, ['/opt/cni/bin/wiremesh'], {
    env: systemEnv({ CNI_PATH: '/opt/cni/bin', ...env }),
    input: stdin,
    allowFailure: true,
    timeoutMs: 120_000,
  });
}

const CONF = JSON.stringify({ cniVersion: '1.1.0', name: 'wiremesh', type: 'wiremesh' });

function podEnv(pod: Pod, containerID: string, command: 'ADD' | 'DEL') {
  return {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerID,
    CNI_NETNS: `/run/netns/${pod.netns}`,
    CNI_IFNAME: 'eth0',
    CNI_ARGS: `K8S_POD_NAMESPACE=${NS};K8S_POD_NAME=${pod.name}`,
  };
}

async function add(
  pod: Pod,
  containerID = newContainerID(),
  relayEnv: Record<string, string> = {},
): Promise<AddOutcome> {
  tried.add(containerID);
  const started = performance.now();
  const res = await runPlugin(pod.node, { ...podEnv(pod, containerID, 'ADD'), ...relayEnv }, CONF);
  const ms = performance.now() - started;
  const outcome: AddOutcome = { pod, containerID, ms, exit: res.code, stdout: res.stdout };
  let body: { code?: number; ips?: { address: string }[] } = {};
  try {
    body = JSON.parse(res.stdout) as typeof body;
  } catch {
    /* kept in stdout for the report */
  }
  if (res.code === 0) {
    const ips = (body.ips ?? []).map((ip) => ip.address.replace(/\/\d+$/, ''));
    if (ips.length !== 1) throw new Error(`ADD ${pod.name}: expected one address: ${res.stdout}`);
    outcome.address = ips[0];
    attached.push({ ...pod, containerID, address: ips[0] ?? '' });
  } else {
    outcome.cniCode = body.code;
  }
  return outcome;
}

/** Create the pods' namespaces and their Pod objects (bound to the node, as scheduled). */
async function makePods(node: string, tag: string, count = PER_NODE): Promise<Pod[]> {
  const made = Array.from({ length: count }, (_, i) => {
    const name = `${tag}-${String(i).padStart(3, '0')}`;
    return { node, name, netns: `${NETNS_PREFIX}${name}` };
  });
  await pool(made, 16, async (p) => {
    await defaultRunner.run(['ip', 'netns', 'add', p.netns]);
    await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: p.name, namespace: NS },
        spec: {
          nodeName: node,
          automountServiceAccountToken: false,
          containers: [{ name: 'probe', image: 'wiremesh.io/lab-probe:none' }],
        },
      },
    });
  });
  pods.push(...made);
  return made;
}

function percentile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] ?? NaN;
}

const stats = (ms: readonly number[]) =>
  `n=${ms.length} p50=${percentile(ms, 0.5).toFixed(1)} ms p99=${percentile(ms, 0.99).toFixed(1)} ms max=${Math.max(...ms).toFixed(1)} ms`;

interface BlockObject {
  metadata: { name: string };
  spec: {
    cidr: string;
    node: string;
    allocations?: Record<
      string,
      { address: string; namespace?: string; pod?: string; containerID?: string }
    >;
  };
}

async function listBlocks(): Promise<BlockObject[]> {
  const list = (await objects.listClusterCustomObject({
    group: 'wiremesh.io',
    version: 'v1alpha1',
    plural: 'ipamblocks',
  })) as { items: BlockObject[] };
  return list.items;
}

interface Held {
  block: string;
  node: string;
  handle: string;
  address: string;
  namespace: string;
}

function allocationsOf(blocks: readonly BlockObject[]): Held[] {
  return blocks.flatMap((b) =>
    Object.entries(b.spec.allocations ?? {}).map(([handle, a]) => ({
      block: b.spec.cidr,
      node: b.spec.node,
      handle,
      address: a.address,
      namespace: a.namespace ?? '',
    })),
  );
}

/** Addresses held by more than one allocation, with their handles. */
function duplicates(held: readonly Held[]): string[] {
  const by = new Map<string, string[]>();
  for (const h of held) by.set(h.address, [...(by.get(h.address) ?? []), h.handle]);
  return [...by].filter(([, hs]) => hs.length > 1).map(([a, hs]) => `${a}: ${hs.join(', ')}`);
}

/** What is wrong with the API's view of the live attachments (empty when it matches). */
function apiMismatches(held: readonly Held[], live: readonly Attachment[]): string[] {
  const problems: string[] = [];
  for (const a of live) {
    const found = held.filter((h) => h.address === a.address);
    const mine = found.filter((h) => h.handle === handleOf(a.containerID) && h.node === a.node);
    if (found.length !== 1 || mine.length !== 1)
      problems.push(
        `${a.node}/${a.name} ${a.address}: ${found.map((h) => `${h.handle}@${h.node}`).join(', ') || 'absent'}`,
      );
  }
  return problems;
}

/** Every live attachment's eth0 holds exactly its address; its node routes it to the pod's veth. */
async function linkMismatches(live: readonly Attachment[]): Promise<string[]> {
  const problems: string[] = [];
  const onLinks = await pool(live, 32, async (a) => {
    const res = await defaultRunner.run(
      ['ip', '-n', a.netns, '-j', 'addr', 'show', 'dev', 'eth0'],
      {
        allowFailure: true,
      },
    );
    if (res.code !== 0) return [];
    const [link] = JSON.parse(res.stdout) as { addr_info?: { family: string; local: string }[] }[];
    return (link?.addr_info ?? []).filter((x) => x.family === 'inet').map((x) => x.local);
  });
  const seen = new Map<string, string>();
  live.forEach((a, i) => {
    const addrs = onLinks[i] ?? [];
    if (addrs.length !== 1 || addrs[0] !== a.address)
      problems.push(`${a.name}: eth0 has [${addrs.join(', ')}], ADD returned ${a.address}`);
    for (const ip of addrs) {
      const other = seen.get(ip);
      if (other) problems.push(`${ip} is on both ${other} and ${a.name}`);
      seen.set(ip, a.name);
    }
  });
  for (const node of nodeNames()) {
    const mine = live.filter((a) => a.node === node);
    const routes = JSON.parse(
      (await theLab().execInNode(node, ['ip', '-j', 'route', 'show', 'proto', '252'])).stdout ||
        '[]',
    ) as { dst: string; dev: string }[];
    const veths = await hostVeths(node);
    for (const a of mine) {
      const dev = hostVethName(a.containerID, 'eth0');
      const r = routes.filter((x) => x.dst === a.address);
      if (r.length !== 1 || r[0]?.dev !== dev)
        problems.push(`${node}: route to ${a.address} is [${r.map((x) => x.dev).join(', ')}]`);
      if (!veths.has(dev)) problems.push(`${node}: host veth ${dev} of ${a.name} is missing`);
    }
  }
  return problems;
}

/** The host ends of pod veths (`wm` + 11 hex) on a node. */
async function hostVeths(node: string): Promise<Set<string>> {
  const links = JSON.parse(
    (await theLab().execInNode(node, ['ip', '-j', 'link', 'show'])).stdout,
  ) as { ifname: string }[];
  return new Set(links.map((l) => l.ifname).filter((n) => /^wm[0-9a-f]{11}$/.test(n)));
}

async function gc(node: string, valid: readonly Attachment[]) {
  const conf = {
    cniVersion: '1.1.0',
    name: 'wiremesh',
    type: 'wiremesh',
    'cni.dev/valid-attachments': valid.map((a) => ({ containerID: a.containerID, ifname: 'eth0' })),
  };
  return runPlugin(node, { CNI_COMMAND: 'GC' }, JSON.stringify(conf));
}

test.serial('2 nodes x 100 concurrent ADDs all succeed with distinct addresses', async (t) => {
  const [n1, n2] = nodeNames();
  const batches = [await makePods(n1, 'a1'), await makePods(n2, 'a2')];
  const started = performance.now();
  const results = await Promise.all(batches.map((b) => pool(b, PARALLEL, (p) => add(p))));
  const wall = performance.now() - started;
  const all = results.flat();
  const bad = all.filter((r) => r.exit !== 0);
  t.deepEqual(
    bad.map((r) => `${r.pod.name}: ${r.stdout.trim()}`),
    [],
    'every ADD succeeds',
  );
  const addrs = all.map((r) => r.address);
  t.is(new Set(addrs).size, 2 * PER_NODE, 'no address twice');
  t.log(
    `round 1: ${all.length} ADDs, ${PARALLEL} in flight per node, both nodes at once: wall ${(wall / 1000).toFixed(1)} s, ${(all.length / (wall / 1000)).toFixed(0)} ADD/s, ${stats(all.map((r) => r.ms))}`,
  );
});

test.serial(
  '100 more ADDs with the agent SIGKILLed after 30 and restarted: the retried ADDs all succeed',
  async (t) => {
    const l = theLab();
    const [n1] = nodeNames();
    const batch = await makePods(n1, 'b1');
    let completed = 0;
    let restart: Promise<{ killAt: number; downMs: number; startMs: number }> | undefined;
    // The relay waits up to 20 s for a restarting agent, which this restart would
    // hide: told not to wait, it fails what a longer outage fails, and the retries
    // and the GC below are what the kubelet and the runtime then do.
    const firstRound = await pool(batch, CRASH_PARALLEL, async (p) => {
      const r = await add(p, undefined, { WIREMESH_CNI_CONNECT_WAIT: '0' });
      if (++completed === KILL_AFTER && !restart) {
        restart = (async () => {
          const killAt = performance.now();
          await l.stopAgent(n1, 'SIGKILL');
          const down = performance.now();
          await l.startAgent(n1);
          await l.waitAgentReady(n1, 60_000);
          const ready = performance.now();
          return { killAt, downMs: down - killAt, startMs: ready - down };
        })();
      }
      return r;
    });
    if (!restart) throw new Error('the agent was never killed');
    const { downMs, startMs } = await restart;
    const failedFirst = firstRound.filter((r) => r.exit !== 0);
    t.true(failedFirst.length > 0, 'the crash made some ADDs fail');
    t.deepEqual(
      failedFirst.filter((r) => r.cniCode !== 11).map((r) => `${r.pod.name}: ${r.stdout.trim()}`),
      [],
      'an ADD that fails while the agent is down answers code 11 (try again later)',
    );
    // The kubelet's retry: a new sandbox (container id and network namespace) for the
    // same pod. What the killed ADD left in the old namespace is the GC's, below.
    let pending = failedFirst.map((r) => r.pod);
    let lastErrors: string[] = [];
    let retries = 0;
    for (let round = 0; pending.length && round < 5; round++) {
      retries += pending.length;
      const again = await pool(pending, CRASH_PARALLEL, async (p) =>
        add(await sandboxOf(p, 100 + round)),
      );
      const failed = again.filter((r) => r.exit !== 0);
      pending = failed.map((r) => r.pod);
      lastErrors = failed.map((r) => `${r.pod.name}: ${r.stdout.trim()}`);
      if (pending.length) await new Promise((r) => setTimeout(r, 1000));
    }
    t.deepEqual(lastErrors, [], 'every pod is attached after the retries');
    const mine = attached.filter((a) => a.node === n1 && a.name.startsWith('b1-'));
    t.is(mine.length, PER_NODE);
    t.is(new Set(mine.map((a) => a.name)).size, PER_NODE, 'one attachment per pod');
    const ok = firstRound.filter((r) => r.exit === 0);
    t.log(
      `round 2: agent on ${n1} SIGKILLed after ${KILL_AFTER} ADDs (${CRASH_PARALLEL} in flight); stopped in ${downMs.toFixed(0)} ms, restarted and ready in ${startMs.toFixed(0)} ms`,
    );
    t.log(
      `round 2: ${ok.length} ADDs succeeded first time (${stats(ok.map((r) => r.ms))}); ${failedFirst.length} failed with code 11 and were retried (${retries} retries in all)`,
    );
  },
);

test.serial(
  'no address twice: among the ADD results, in the IPAMBlocks, on the links',
  async (t) => {
    t.is(attached.length, 3 * PER_NODE);
    const addrs = attached.map((a) => a.address);
    t.is(new Set(addrs).size, addrs.length, '(a) the 300 results hold 300 distinct addresses');

    const dupsSeen = new Set<string>();
    let held: Held[] = [];
    const ms = await eventually(
      'every attachment to be in exactly one IPAMBlock allocation',
      async () => {
        held = allocationsOf(await listBlocks());
        for (const d of duplicates(held)) dupsSeen.add(d);
        return apiMismatches(held, attached).length === 0;
      },
      30_000,
      250,
    ).catch((e: unknown) => {
      t.fail(`${(e as Error).message}: ${apiMismatches(held, attached).slice(0, 10).join('; ')}`);
      return -1;
    });
    t.deepEqual([...dupsSeen], [], '(b) no address in two allocations, in any snapshot');
    const live = new Set(attached.map((a) => handleOf(a.containerID)));
    const lost = held.filter((h) => h.namespace === NS && !live.has(h.handle));
    t.log(
      `IPAMBlocks: ${held.length} allocations in ${new Set(held.map((h) => h.block)).size} blocks, in sync after ${ms} ms; ${lost.length} allocation(s) whose ADD result was lost in the crash`,
    );

    t.deepEqual(await linkMismatches(attached), [], '(c) each pod holds its address, no two alike');
  },
);

test.serial(
  "the runtime's GC with the live attachments takes back only what the crash lost",
  async (t) => {
    t.is(attached.length, 3 * PER_NODE, 'the earlier steps attached every pod');
    for (const node of nodeNames()) {
      const res = await gc(
        node,
        attached.filter((a) => a.node === node),
      );
      t.is(res.code, 0, `GC on ${node}: ${res.stdout}`);
    }
    const live = new Set(attached.map((a) => handleOf(a.containerID)));
    let held: Held[] = [];
    await eventually(
      'the lost allocations to leave the IPAMBlocks',
      async () => {
        held = allocationsOf(await listBlocks());
        return held.every((h) => h.namespace !== NS || live.has(h.handle));
      },
      30_000,
      250,
    ).catch((e: unknown) => t.fail((e as Error).message));
    t.deepEqual(apiMismatches(held, attached), [], 'every live attachment keeps its allocation');
    t.deepEqual(await linkMismatches(attached), [], 'every live pod keeps its wiring');
  },
);

test.serial(
  'after DEL of every attachment and GC, no allocation, veth or route of the pods is left',
  async (t) => {
    t.is(attached.length, 3 * PER_NODE, 'the earlier steps attached every pod');
    const dels = await pool(attached, 32, async (a) => {
      const res = await runPlugin(a.node, podEnv(a, a.containerID, 'DEL'), CONF);
      return res.code === 0 ? '' : `${a.name}: ${res.stdout.trim()}`;
    });
    t.deepEqual(dels.filter(Boolean), [], 'every DEL succeeds');
    const vethsOf = new Set([...tried].map((id) => hostVethName(id, 'eth0')));
    for (const node of nodeNames()) {
      const left = [...(await hostVeths(node))].filter((v) => vethsOf.has(v));
      t.deepEqual(left, [], `no host veth of these pods is left on ${node} after DEL`);
    }
    await pool(pods, 16, async (p) => {
      await defaultRunner.run(['ip', 'netns', 'del', p.netns], { allowFailure: true });
      await core.deleteNamespacedPod({ namespace: NS, name: p.name, gracePeriodSeconds: 0 });
    });
    for (const node of nodeNames()) {
      const res = await gc(node, []);
      t.is(res.code, 0, `GC on ${node}: ${res.stdout}`);
    }
    let held: Held[] = [];
    const ms = await eventually(
      `no allocation of namespace ${NS} in the IPAMBlocks`,
      async () => {
        held = allocationsOf(await listBlocks()).filter((h) => h.namespace === NS);
        return held.length === 0;
      },
      30_000,
      250,
    ).catch((e: unknown) => {
      t.fail(`${(e as Error).message}: ${held.map((h) => `${h.handle} ${h.address}`).join('; ')}`);
      return -1;
    });
    const addresses = new Set(attached.map((a) => a.address));
    for (const node of nodeNames()) {
      const left = [...(await hostVeths(node))].filter((v) => vethsOf.has(v));
      t.deepEqual(left, [], `no host veth of these pods is left on ${node}`);
      const routes = JSON.parse(
        (await theLab().execInNode(node, ['ip', '-j', 'route', 'show', 'proto', '252'])).stdout ||
          '[]',
      ) as { dst: string }[];
      t.deepEqual(
        routes.filter((r) => addresses.has(r.dst)).map((r) => r.dst),
        [],
        `no route to these pods is left on ${node}`,
      );
    }
    t.log(`after DEL and GC the IPAMBlocks held no allocation of ${NS} within ${ms} ms`);
  },
);

/** A further sandbox of a pod: its own network namespace, the pod's name. */
async function sandboxOf(pod: Pod, n: number): Promise<Pod> {
  const netns = `${pod.netns}-s${n}`;
  await defaultRunner.run(['ip', 'netns', 'add', netns]);
  return { ...pod, netns };
}

async function del(a: Attachment): Promise<string> {
  const res = await runPlugin(a.node, podEnv(a, a.containerID, 'DEL'), CONF);
  return res.code === 0 ? '' : `DEL ${a.name} ${a.containerID}: ${res.stdout.trim()}`;
}

function attachmentOf(r: AddOutcome): Attachment {
  if (r.exit !== 0 || !r.address)
    throw new Error(`ADD ${r.pod.name} ${r.containerID} failed: ${r.stdout.trim()}`);
  return { ...r.pod, containerID: r.containerID, address: r.address };
}

test.serial(
  'two sandboxes of one pod are wired on their own; DEL of the old one leaves the new one',
  async (t) => {
    const [n1] = nodeNames();
    const [pod] = await makePods(n1, 'twin', 1);
    if (!pod) throw new Error('no pod');
    const first = attachmentOf(await add(pod));
    const second = attachmentOf(await add(await sandboxOf(pod, 2)));
    t.teardown(async () => {
      await del(second);
      await core.deleteNamespacedPod({ namespace: NS, name: pod.name, gracePeriodSeconds: 0 });
    });
    t.not(first.address, second.address);
    t.deepEqual(await linkMismatches([first, second]), [], 'both sandboxes are wired');
    const ping = await defaultRunner.run(
      ['ip', 'netns', 'exec', first.netns, 'ping', '-c', '1', '-W', '2', second.address],
      { allowFailure: true },
    );
    t.regex(ping.stdout, / 0% packet loss/, 'the old sandbox reaches the new one');
    t.is(await del(first), '');
    t.deepEqual(await linkMismatches([second]), [], 'the new sandbox is still wired');
    t.false(
      (await hostVeths(n1)).has(hostVethName(first.containerID, 'eth0')),
      "the old sandbox's pair is gone",
    );
    let held: Held[] = [];
    await eventually(
      "the old sandbox's allocation to leave the IPAMBlocks",
      async () => {
        held = allocationsOf(await listBlocks());
        return !held.some((h) => h.handle === handleOf(first.containerID));
      },
      30_000,
      250,
    ).catch((e: unknown) => t.fail((e as Error).message));
    t.deepEqual(apiMismatches(held, [second]), [], 'the new sandbox keeps its allocation');
  },
);

test.serial(
  '50 pods through 4 sandboxes each (200 ADDs, 150 DELs, concurrently): every live sandbox wired, no address twice, nothing of a dead one left',
  async (t) => {
    const [n1] = nodeNames();
    const churn = await makePods(n1, 'churn', 50);
    const live = new Map<string, Attachment>();
    const dead: Attachment[] = [];
    const failures: string[] = [];
    t.teardown(async () => {
      await pool([...live.values()], 32, del);
      await pool(churn, 16, (p) =>
        core.deleteNamespacedPod({ namespace: NS, name: p.name, gracePeriodSeconds: 0 }),
      );
    });
    const started = performance.now();
    await pool(churn, 50, async (pod) => {
      for (let n = 1; n <= 4; n++) {
        const sandbox = n === 1 ? pod : await sandboxOf(pod, n);
        const old = live.get(pod.name);
        // Half the pods lose their old sandbox while the new one is being added, the
        // other half once it is up (the kubelet's order after a sandbox died).
        const concurrent = Number(pod.name.slice(-3)) % 2 === 0;
        const [r, gone] = await Promise.all([
          add(sandbox),
          concurrent && old ? del(old) : Promise.resolve(''),
        ]);
        const after = !concurrent && old ? await del(old) : '';
        for (const f of [gone, after]) if (f) failures.push(f);
        if (old) dead.push(old);
        if (r.exit !== 0) {
          failures.push(`ADD ${pod.name} #${n}: ${r.stdout.trim()}`);
          live.delete(pod.name);
          continue;
        }
        live.set(pod.name, attachmentOf(r));
      }
    });
    const wall = performance.now() - started;
    t.deepEqual(failures, [], 'every ADD and DEL succeeds');
    t.is(live.size, churn.length);
    t.is(dead.length, 150);
    t.log(`200 ADDs and 150 DELs over 50 pods, 50 at a time: ${(wall / 1000).toFixed(1)} s`);
    const now = [...live.values()];
    t.deepEqual(await linkMismatches(now), [], 'every live sandbox holds its address and route');
    let held: Held[] = [];
    const deadHandles = new Set(dead.map((a) => handleOf(a.containerID)));
    await eventually(
      "the IPAMBlocks to hold the live sandboxes' allocations and no dead one's",
      async () => {
        held = allocationsOf(await listBlocks());
        return (
          apiMismatches(held, now).length === 0 && !held.some((h) => deadHandles.has(h.handle))
        );
      },
      30_000,
      250,
    ).catch((e: unknown) =>
      t.fail(`${(e as Error).message}: ${apiMismatches(held, now).join('; ')}`),
    );
    t.deepEqual(duplicates(held), [], 'no address in two allocations');
    const veths = await hostVeths(n1);
    t.deepEqual(
      dead.map((a) => hostVethName(a.containerID, 'eth0')).filter((v) => veths.has(v)),
      [],
      'no pair of a dead sandbox is left',
    );
    const leftInDead = await pool(dead, 32, async (a) => {
      const res = await defaultRunner.run(['ip', '-n', a.netns, 'link', 'show', 'eth0'], {
        allowFailure: true,
      });
      return res.code === 0 ? a.netns : '';
    });
    t.deepEqual(leftInDead.filter(Boolean), [], 'no dead sandbox still has an eth0');
  },
);
