// One compromised node must not take over anyone else's traffic. On a real-node
// cluster of three (attacker, victim, observer), every attack is made with the
// attacker node's own agent credentials: a token of the wiremesh-agent
// ServiceAccount bound to the attacker's agent pod, as the kubelet projects it (it
// names the node), never admin. Each write is either refused by the apiserver
// (deploy/admission.yaml), or, where the object is admissible, routed by no node
// (agent/blocks.ts, agent/plan.ts): nothing of the victim's pods reaches the
// attacker's wiremesh.wg, the victim's pod stays reachable from the observer's
// throughout, and its host route stays. The legitimate paths too: a node claims and
// frees its blocks (owned by its Node), a deleted Node's blocks are collected by
// Kubernetes' garbage collector, the admin sets an endpoint override that stays,
// and an agent puts back its own annotations. Run by the cluster tier
// (WIREMESH_E2E_CLUSTER=real).
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCluster } from '../lab-driver.ts';
import { KindDriver, Kubectl } from '../kind-driver.ts';
import type { ClusterPod } from '../driver.ts';
import { eventually } from '../probes.ts';
import { generateKeyPair } from '../../crypto/index.ts';
import type { RunResult } from '../../sys/index.ts';

const NAMESPACE = 'wiremesh-e2e-authz';
const POOL_NAMESPACE = 'wiremesh-e2e-authz-pool';
const E2E_POOL = 'authz-e2e';
const GHOST = 'authz-e2e-ghost';
const KEY = 'wiremesh.io/wireguard-public-key';
const ENDPOINT = 'wiremesh.io/endpoint';
const OVERRIDE = 'wiremesh.io/endpoint-override';

let driver: KindDriver | undefined;
let attacker = '';
let victim = '';
let observer = '';
let victimPod: ClusterPod | undefined;
let client: ClusterPod | undefined;
let tmp = '';
/** kubectl with the attacker's agent token (and only it). */
let asAttacker: Kubectl | undefined;
/** Forged blocks to remove whatever happens (admin). */
const forged = new Set<string>();

const d = (): KindDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};
const attackerKubectl = (): Kubectl => {
  if (!asAttacker) throw new Error('no attacker credentials: test.before failed');
  return asAttacker;
};
const pods = (): { victimPod: ClusterPod; client: ClusterPod } => {
  if (!victimPod || !client) throw new Error('pods missing: test.before failed');
  return { victimPod, client };
};

/** A kubeconfig for the cluster with a bearer token and nothing else. */
async function tokenKubeconfig(name: string, token: string): Promise<string> {
  const admin = await d().kubectl.json<{
    clusters: { cluster: Record<string, unknown> }[];
  }>(['config', 'view', '--raw', '--minify', '-o', 'json']);
  const cluster = admin.clusters[0]?.cluster;
  if (!cluster) throw new Error('the admin kubeconfig names no cluster');
  const path = join(tmp, `${name}.kubeconfig`);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'cluster', cluster }],
    users: [{ name, user: { token } }],
    contexts: [{ name, context: { cluster: 'cluster', user: name } }],
    'current-context': name,
  };
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  return path;
}

async function agentPod(node: string): Promise<string> {
  const [pod] = (await d().kubectl.pods('kube-system', 'app.kubernetes.io/name=wiremesh')).filter(
    (p) => p.spec.nodeName === node,
  );
  if (!pod) throw new Error(`no wiremesh agent pod on ${node}`);
  return pod.metadata.name;
}

/** A wiremesh-agent token as the kubelet projects it into the pod on `node`. */
async function agentToken(node: string): Promise<string> {
  const res = await d().kubectl.run([
    ...['create', 'token', 'wiremesh-agent', '-n', 'kube-system'],
    ...['--bound-object-kind', 'Pod', '--bound-object-name', await agentPod(node)],
    ...['--duration', '1h'],
  ]);
  return res.stdout.trim();
}

async function nodeObject(name: string): Promise<{
  metadata: { uid: string; annotations?: Record<string, string>; labels?: Record<string, string> };
  spec: { unschedulable?: boolean };
}> {
  return d().kubectl.json(['get', 'node', name, '-o', 'json']);
}

/** The wiremesh.wg peers of a node as its kernel has them (the agent's `wg`), by key. */
async function wgPeers(
  node: string,
): Promise<{ key: string; endpoint: string; allowedIPs: string[] }[]> {
  const res = await d().kubectl.run([
    ...['exec', '-n', 'kube-system', await agentPod(node), '-c', 'agent', '--'],
    ...['wg', 'show', 'wiremesh.wg', 'dump'],
  ]);
  return res.stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((line) => line.split('\t'))
    .map(([key, , endpoint, allowed]) => ({
      key: key ?? '',
      endpoint: endpoint ?? '',
      allowedIPs: (allowed ?? '')
        .split(',')
        .filter((a) => a && a !== '(none)')
        .sort(),
    }))
    .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
}

/** A refusal by the apiserver: the command fails with Forbidden. */
function refused(t: ExecutionContext, what: string, res: RunResult, why: RegExp): void {
  t.not(res.code, 0, `${what} must be refused: ${res.stdout}`);
  t.regex(res.stderr, /forbidden/i, what);
  t.regex(res.stderr, why, what);
}

/** The object name IPAM derives from a CIDR (the CRD insists on it). */
function blockName(cidr: string): string {
  return (cidr.startsWith(':') ? '0' : '') + cidr.replace(/[.:/]/g, '-');
}

function blockObject(
  cidr: string,
  node: string,
  pool: string,
  owner?: { name: string; uid: string },
): string {
  const name = blockName(cidr);
  return JSON.stringify({
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'IPAMBlock',
    metadata: {
      name,
      ...(owner ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', ...owner }] } : {}),
    },
    spec: { cidr, pool, node },
  });
}

/** Run `during` while the client pings the victim's pod 5 times a second; the pings lost. */
async function pingsLostDuring(during: () => Promise<void>, seconds: number): Promise<number> {
  const { client: c, victimPod: v } = pods();
  const count = seconds * 5;
  const ping = d().execInPod(
    c.namespace,
    c.name,
    ['ping', '-c', String(count), '-i', '0.2', '-W', '1', v.ips[0] ?? ''],
    { allowFailure: true, timeoutMs: (seconds + 30) * 1000 },
  );
  let failed: { error: unknown } | undefined;
  await during().catch((error: unknown) => (failed = { error }));
  const res = await ping;
  if (failed) throw failed.error;
  const m = /(\d+) packets transmitted, (\d+) (packets )?received/.exec(res.stdout);
  if (!m) throw new Error(`ping printed no summary: ${res.stdout}${res.stderr}`);
  return Number(m[1]) - Number(m[2]);
}

test.before(async () => {
  const opened = await openCluster({ name: 'authz', nodes: 3, podsPerNode: 0 });
  if (!(opened instanceof KindDriver))
    throw new Error('this suite needs a kubeadm cluster (WIREMESH_E2E_CLUSTER=real or kind)');
  driver = opened;
  const nodes = driver.nodeNames().sort();
  const controlPlane = (
    await driver.kubectl.json<{ items: { metadata: { name: string } }[] }>([
      ...['get', 'nodes', '-l', 'node-role.kubernetes.io/control-plane'],
    ])
  ).items.map((n) => n.metadata.name);
  // The observer holds the control plane; attacker and victim are workers.
  const workers = nodes.filter((n) => !controlPlane.includes(n));
  [attacker, victim] = [workers[0] ?? '', workers[1] ?? ''];
  observer = nodes.find((n) => n !== attacker && n !== victim) ?? '';
  if (!attacker || !victim || !observer)
    throw new Error(`need 3 nodes, 2 workers: ${nodes.join(', ')}`);
  victimPod = await driver.createPod(victim, NAMESPACE, 'victim');
  client = await driver.createPod(observer, NAMESPACE, 'client');
  await driver.createPod(attacker, NAMESPACE, 'attacker');
  tmp = mkdtempSync(join(tmpdir(), 'wiremesh-authz-'));
  asAttacker = new Kubectl(
    await tokenKubeconfig('attacker', await agentToken(attacker)),
    driver.kubectl.binary,
  );
  const v = victimPod;
  await eventually(
    `${victim}'s pod reachable from ${observer}'s`,
    async () =>
      (
        await d().execInPod(NAMESPACE, 'client', ['ping', '-c', '1', '-W', '1', v.ips[0] ?? ''], {
          allowFailure: true,
        })
      ).code === 0,
    60_000,
    500,
  );
});

test.after.always(async () => {
  if (driver) {
    const k = driver.kubectl;
    const quiet = { allowFailure: true };
    if (forged.size) await k.run(['delete', 'ipamblock', '--ignore-not-found', ...forged], quiet);
    await k.run(['delete', 'node', GHOST, '--ignore-not-found'], quiet);
    await k.run(['annotate', 'node', victim, `${OVERRIDE}-`], quiet);
    await k.deleteNamespace(POOL_NAMESPACE).catch(() => {});
    await k.run(['delete', 'ippool', E2E_POOL, '--ignore-not-found'], quiet);
    await k.deleteNamespace(NAMESPACE).catch(() => {});
    await driver.close();
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test.serial(
  "an agent's token names its node; writes beyond its own Node are refused",
  async (t) => {
    const a = attackerKubectl();
    const who = await a.json<{
      status: { userInfo: { username: string; extra: Record<string, string[]> } };
    }>(['auth', 'whoami', '-o', 'json']);
    t.is(who.status.userInfo.username, 'system:serviceaccount:kube-system:wiremesh-agent');
    t.deepEqual(who.status.userInfo.extra['authentication.kubernetes.io/node-name'], [attacker]);
    const run = (args: string[]) => a.run(args, { allowFailure: true });
    const before = await nodeObject(victim);
    const elsewhere = /may update only its own Node/;
    refused(
      t,
      'override on the victim',
      await run(['annotate', 'node', victim, `${OVERRIDE}=198.18.0.250:51825`]),
      elsewhere,
    );
    refused(
      t,
      "the victim's key",
      await run([
        'annotate',
        '--overwrite',
        'node',
        victim,
        `${KEY}=${generateKeyPair().publicKey}`,
      ]),
      elsewhere,
    );
    refused(
      t,
      'a label on the victim',
      await run(['label', 'node', victim, 'wiremesh-e2e=1']),
      elsewhere,
    );
    // `kubectl cordon` exits 0 on a refusal: the patch it sends, by hand.
    const cordon = ['--type', 'merge', '-p', '{"spec":{"unschedulable":true}}'];
    refused(t, 'cordon the victim', await run(['patch', 'node', victim, ...cordon]), elsewhere);
    refused(
      t,
      'delete the victim',
      await run(['delete', 'node', victim]),
      /cannot delete|forbidden/,
    );
    // Its own Node: only the annotations the agent publishes.
    refused(
      t,
      'override on its own Node',
      await run(['annotate', 'node', attacker, `${OVERRIDE}=198.18.0.250:51825`]),
      /may change only its Node's wiremesh.io\/wireguard-public-key/,
    );
    refused(
      t,
      'a label on its own Node',
      await run(['label', 'node', attacker, 'wiremesh-e2e=1']),
      /labels, finalizers, owners or spec/,
    );
    refused(
      t,
      'cordon its own Node',
      await run(['patch', 'node', attacker, ...cordon]),
      /labels, finalizers, owners or spec/,
    );
    // The ServiceAccount without a node in its token (not its pod's) may write no Node at all.
    const unbound = (
      await d().kubectl.run([
        'create',
        'token',
        'wiremesh-agent',
        '-n',
        'kube-system',
        '--duration',
        '10m',
      ])
    ).stdout.trim();
    const anonymous = new Kubectl(await tokenKubeconfig('unbound', unbound), d().kubectl.binary);
    refused(
      t,
      'a token without a node',
      await anonymous.run(
        ['annotate', '--overwrite', 'node', attacker, 'wiremesh.io/host-encryption=false'],
        { allowFailure: true },
      ),
      /names its node/,
    );
    const after = await nodeObject(victim);
    t.deepEqual(
      after.metadata.annotations,
      before.metadata.annotations,
      "the victim's annotations",
    );
    t.deepEqual(after.metadata.labels, before.metadata.labels, "the victim's labels");
    t.falsy(after.spec.unschedulable);
  },
);

test.serial(
  "forged IPAMBlocks: another node's refused; the admissible ones route nothing, the victim stays reachable",
  async (t) => {
    const a = attackerKubectl();
    const { victimPod: v } = pods();
    const victimIP = v.ips[0] ?? '';
    const create = (body: string) =>
      a.run(['create', '-f', '-'], { input: body, allowFailure: true });
    const own = { name: attacker, uid: (await nodeObject(attacker)).metadata.uid };
    const blocks = await d().kubectl.json<{
      items: { metadata: { name: string }; spec: { node: string; cidr: string } }[];
    }>(['get', 'ipamblocks', '-o', 'json']);
    const victimBlock = blocks.items.find((b) => b.spec.node === victim)?.metadata.name ?? '';
    t.truthy(victimBlock, `${victim} holds a block`);
    const onlyOwn = /only IPAMBlocks of its own node/;
    refused(
      t,
      "a block of the victim's",
      await create(blockObject(`${victimIP}/32`, victim, 'default-ipv4', own)),
      onlyOwn,
    );
    refused(
      t,
      'a block without its Node as owner',
      await create(blockObject(`${victimIP}/32`, attacker, 'default-ipv4')),
      /exactly one ownerReference/,
    );
    refused(
      t,
      "deleting the victim's block",
      await a.run(['delete', 'ipamblock', victimBlock], { allowFailure: true }),
      onlyOwn,
    );
    refused(
      t,
      "emptying the victim's block",
      await a.run(
        ['patch', 'ipamblock', victimBlock, '--type', 'merge', '-p', '{"spec":{"allocations":{}}}'],
        { allowFailure: true },
      ),
      onlyOwn,
    );
    refused(
      t,
      'a pool of its own',
      await create(
        JSON.stringify({
          apiVersion: 'wiremesh.io/v1alpha1',
          kind: 'IPPool',
          metadata: { name: 'authz-e2e-evil' },
          spec: { cidr: '10.99.0.0/16', blockSize: 32 },
        }),
      ),
      /only the default pool/,
    );

    // Admissible: its own node's blocks, but none an IPAM could have made.
    const junk = [
      [`${victimIP}/32`, 'default-ipv4', 'WrongBlockSize'],
      ['10.99.99.99/32', 'authz-e2e-none', 'UnknownPool'],
      ['0.0.0.0/0', 'default-ipv4', 'OutsidePool'],
    ] as const;
    const peersBefore = await wgPeers(observer);
    const routeBefore = (
      await d().execInNode(victim, ['ip', 'route', 'show', victimIP])
    ).stdout.trim();
    t.regex(routeBefore, /dev wm/, "the victim pod's host route");
    const capture = await d().captureInNode(attacker, 'wiremesh.wg', `host ${victimIP}`);
    let lines: string[] = [];
    const lost = await pingsLostDuring(async () => {
      try {
        for (const [cidr, pool] of junk) {
          const res = await create(blockObject(cidr, attacker, pool, own));
          t.is(res.code, 0, `${cidr} is its own node's block: ${res.stderr}`);
          forged.add(blockName(cidr));
        }
        // Every agent refuses each with a Warning Event on the block.
        await eventually(
          'the refusals on every node',
          async () => {
            const events = await d().kubectl.json<{
              items: {
                involvedObject: { kind: string; name: string };
                reason: string;
                message: string;
              }[];
            }>(['get', 'events', '-n', 'default', '-o', 'json']);
            return junk.every(([cidr, , reason]) =>
              [attacker, victim, observer].every((n) =>
                events.items.some(
                  (e) =>
                    e.involvedObject.kind === 'IPAMBlock' &&
                    e.reason === reason &&
                    e.message.includes(`wiremesh on ${n}:`) &&
                    e.message.includes(`(${cidr},`),
                ),
              ),
            );
          },
          20_000,
          500,
        );
        // Delete them as the attacker (its own blocks): the victim's route must stay.
        for (const name of forged) {
          const res = await a.run(['delete', 'ipamblock', name], { allowFailure: true });
          t.is(res.code, 0, res.stderr);
        }
        await new Promise((r) => setTimeout(r, 3000));
      } finally {
        lines = (await capture.stop()).lines;
      }
    }, 25);
    t.deepEqual(lines, [], `no packet of ${victimIP} on ${attacker}'s wiremesh.wg`);
    t.is(lost, 0, `the victim's pod answered every ping`);
    const peersAfter = await wgPeers(observer);
    t.deepEqual(
      peersAfter.map((p) => [p.key, [...p.allowedIPs].sort()]),
      peersBefore.map((p) => [p.key, [...p.allowedIPs].sort()]),
      `${observer}'s peers and AllowedIPs did not change`,
    );
    const routeAfter = (
      await d().execInNode(victim, ['ip', 'route', 'show', victimIP])
    ).stdout.trim();
    t.is(routeAfter, routeBefore, "the victim pod's host route is untouched");
  },
);

test.serial('a copied key stays with the node that published it first', async (t) => {
  const a = attackerKubectl();
  const victimKey = (await nodeObject(victim)).metadata.annotations?.[KEY] ?? '';
  const ownKey = (await nodeObject(attacker)).metadata.annotations?.[KEY] ?? '';
  const victimEndpoint = (await nodeObject(victim)).metadata.annotations?.[ENDPOINT] ?? '';
  t.truthy(victimKey);
  const samples: { endpoint: string; allowed: number }[] = [];
  const lost = await pingsLostDuring(async () => {
    // The attacker's own agent puts its key back at once, so keep copying: at least
    // 10 s and 6 copies, each followed by a look at the observer's kernel.
    const until = Date.now() + 10_000;
    for (let i = 0; i < 6 || Date.now() < until; i++) {
      const res = await a.run(
        ['annotate', '--overwrite', 'node', attacker, `${KEY}=${victimKey}`],
        {
          allowFailure: true,
        },
      );
      t.is(res.code, 0, `its own key annotation is its to write: ${res.stderr}`);
      const peer = (await wgPeers(observer)).find((p) => p.key === victimKey);
      samples.push({ endpoint: peer?.endpoint ?? 'absent', allowed: peer?.allowedIPs.length ?? 0 });
    }
  }, 30);
  t.true(samples.length >= 6, `${samples.length} samples`);
  for (const s of samples)
    t.is(s.endpoint, victimEndpoint, `${observer} keeps ${victim} at its endpoint`);
  t.is(lost, 0, "the victim's pod answered every ping");
  const events = await d().kubectl.json<{
    items: { involvedObject: { name: string }; reason: string; message: string }[];
  }>(['get', 'events', '-n', 'default', '-o', 'json']);
  t.true(
    events.items.some(
      (e) =>
        e.involvedObject.name === attacker &&
        e.reason === 'DuplicatePublicKey' &&
        e.message.includes(`published first by ${victim}`),
    ),
    'the attacker is refused, with an Event naming the first publisher',
  );
  t.false(
    events.items.some((e) => e.involvedObject.name === victim && e.reason === 'DuplicatePublicKey'),
  );
  await eventually(
    `${attacker}'s agent to put its own key back`,
    async () => (await nodeObject(attacker)).metadata.annotations?.[KEY] === ownKey,
    20_000,
    500,
  );
});

test.serial("an agent restores its annotations; the admin's endpoint override stays", async (t) => {
  const k = d().kubectl;
  const before = (await nodeObject(victim)).metadata.annotations ?? {};
  const key = before[KEY] ?? '';
  const endpoint = before[ENDPOINT] ?? '';
  // Someone with write access to the Node (here the admin) changes what the agent publishes.
  await k.run([
    ...['annotate', '--overwrite', 'node', victim],
    `${KEY}=${generateKeyPair().publicKey}`,
    `${ENDPOINT}=198.18.0.250:51825`,
  ]);
  const restored = await eventually(
    `${victim}'s agent to restore its key and endpoint`,
    async () => {
      const now = (await nodeObject(victim)).metadata.annotations ?? {};
      return now[KEY] === key && now[ENDPOINT] === endpoint;
    },
    15_000,
    200,
  );
  t.log(`restored after ${restored} ms`);
  // The operator's override: the admin sets it, every peer uses it, no agent removes it.
  const bogus = `${endpoint.replace(/\.\d+:\d+$/, '.250')}:51825`;
  await k.run(['annotate', '--overwrite', 'node', victim, `${OVERRIDE}=${bogus}`]);
  try {
    await eventually(
      `${observer} to use the override for ${victim}`,
      async () => (await wgPeers(observer)).find((p) => p.key === key)?.endpoint === bogus,
      15_000,
      300,
    );
    await new Promise((r) => setTimeout(r, 5000));
    t.is((await nodeObject(victim)).metadata.annotations?.[OVERRIDE], bogus, 'the override stays');
  } finally {
    await k.run(['annotate', 'node', victim, `${OVERRIDE}-`]);
  }
  await eventually(
    `${observer} to go back to ${victim}'s own endpoint`,
    async () => (await wgPeers(observer)).find((p) => p.key === key)?.endpoint === endpoint,
    15_000,
    300,
  );
  const { client: c, victimPod: v } = pods();
  await eventually(
    `${victim}'s pod reachable again`,
    async () =>
      (
        await d().execInPod(c.namespace, c.name, ['ping', '-c', '1', '-W', '1', v.ips[0] ?? ''], {
          allowFailure: true,
        })
      ).code === 0,
    30_000,
    500,
  );
  t.pass();
});

test.serial('a node claims its block owned by its Node, and frees it', async (t) => {
  const k = d().kubectl;
  await k.apply(
    '-',
    JSON.stringify({
      apiVersion: 'wiremesh.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: E2E_POOL },
      spec: { cidr: '100.66.0.0/24', blockSize: 28 },
    }),
  );
  await k.apply(
    '-',
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: POOL_NAMESPACE, annotations: { 'wiremesh.io/ippool': E2E_POOL } },
    }),
  );
  const pod = await d().createPod(attacker, POOL_NAMESPACE, 'claimer');
  type Blocks = {
    items: {
      metadata: { name: string; ownerReferences?: { kind: string; name: string; uid: string }[] };
      spec: { node: string; pool: string; cidr: string };
    }[];
  };
  const poolBlocks = async () =>
    (await k.json<Blocks>(['get', 'ipamblocks', '-o', 'json'])).items.filter(
      (b) => b.spec.pool === E2E_POOL,
    );
  const [block] = await poolBlocks();
  t.is(block?.spec.node, attacker);
  t.deepEqual(
    block?.metadata.ownerReferences?.map((r) => [r.kind, r.name, r.uid]),
    [['Node', attacker, (await nodeObject(attacker)).metadata.uid]],
  );
  t.true(pod.ips[0]?.startsWith('100.66.0.'), pod.ips[0]);
  await eventually(
    `${observer} to route ${block?.spec.cidr} to ${attacker}`,
    async () =>
      (await wgPeers(observer)).some((p) => p.allowedIPs.includes(block?.spec.cidr ?? '-')),
    15_000,
    300,
  );
  // Freed: the pod goes, the pool is disabled, and the node gives the empty block back.
  await d().deletePod(POOL_NAMESPACE, 'claimer');
  await k.run(['patch', 'ippool', E2E_POOL, '--type', 'merge', '-p', '{"spec":{"disabled":true}}']);
  const freed = await eventually(
    `${attacker} to free ${block?.spec.cidr}`,
    async () => (await poolBlocks()).length === 0,
    240_000,
    2000,
  );
  t.log(`freed after ${Math.round(freed / 1000)} s`);
});

test.serial("a deleted Node's blocks are collected by Kubernetes' garbage collector", async (t) => {
  const k = d().kubectl;
  await k.apply('-', JSON.stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: GHOST } }));
  // That node's agent identity: a wiremesh-agent token bound to the Node, which names it.
  const token = (
    await k.run([
      ...['create', 'token', 'wiremesh-agent', '-n', 'kube-system'],
      ...['--bound-object-kind', 'Node', '--bound-object-name', GHOST, '--duration', '10m'],
    ])
  ).stdout.trim();
  const ghost = new Kubectl(await tokenKubeconfig('ghost', token), k.binary);
  const uid = (await nodeObject(GHOST)).metadata.uid;
  const body = blockObject('100.64.250.0/26', GHOST, 'default-ipv4', { name: GHOST, uid });
  forged.add('100-64-250-0-26');
  const res = await ghost.run(['create', '-f', '-'], { input: body, allowFailure: true });
  t.is(res.code, 0, res.stderr);
  await k.run(['delete', 'node', GHOST]);
  const gone = await eventually(
    'the garbage collector to delete the block',
    async () =>
      (await k.run(['get', 'ipamblock', '100-64-250-0-26'], { allowFailure: true })).code !== 0,
    60_000,
    500,
  );
  t.log(`collected ${gone} ms after the Node was deleted`);
});
