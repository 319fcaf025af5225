// The WireGuard mesh under faults, on a 3-node lab running the real agent with its
// ServiceAccount: key persistence across an agent crash, node removal and return,
// forged annotations refused with Events, key rotation, wireguard-go killed, and
// host-to-host encryption. Lab-only: these stop and restart the agent process with
// other flags, kill wireguard-go by pid, re-register Nodes and read the agent's log
// file, which the cluster-driver interface does not offer. Handshakes, traffic
// and the underlay capture run on any cluster in mesh.e2e.test.ts.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { CoreV1Api, KubeConfig, type CoreV1Event } from '@kubernetes/client-node';
import { Lab } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { startCapture, background, pingLoss, eventually } from './probes.ts';
import type { AgentStatus } from '../agent/index.ts';
import { registerNode, annotatedNode } from '../lab/kube.ts';
import { defaultRunner } from '../sys/index.ts';

let driver: LabDriver | undefined;
let lab: Lab;
let core: CoreV1Api;

test.before(async () => {
  driver = await LabDriver.open({ name: 'e2emesh', nodes: 3, podsPerNode: 0, agents: true });
  lab = driver.lab;
  const kc = new KubeConfig();
  kc.loadFromFile(lab.state.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  const all = names();
  await eventually(
    'every agent to have a peer per other node',
    async () => {
      for (const n of all) if ((await wgPeerKeys(n)).length !== all.length - 1) return false;
      return true;
    },
    30_000,
  );
  // An iperf3 server on every node's tunnel address, for the streams across faults.
  for (const n of all) {
    await lab.stopProcess(`iperf3-${n}`); // from an earlier run on a shared lab
    await lab.spawnInNode(n, `iperf3-${n}`, ['iperf3', '-s', '-B', await tunnelIP(n)]);
  }
  for (const a of all)
    for (const b of all)
      if (a !== b) await eventually(`ping ${a} -> ${b}`, async () => ping(a, await tunnelIP(b)));
});

test.after.always(async () => {
  // The iperf3 servers stay for the whole suite; a shared lab outlives it.
  for (const n of lab?.plan.nodes ?? []) await lab.stopProcess(`iperf3-${n.name}`).catch(() => {});
  if (driver) await driver.close();
});

function status(node: string): Promise<AgentStatus> {
  return lab.agentStatus(node);
}

async function wgPeerKeys(node: string): Promise<string[]> {
  const res = await lab.execInNode(node, ['wg', 'show', 'wiremesh.wg', 'peers']);
  return res.stdout.split('\n').filter(Boolean).sort();
}

async function tunnelIP(node: string): Promise<string> {
  const ip = (await status(node)).wireguard.tunnelAddress;
  if (!ip) throw new Error(`${node} has no tunnel address yet`);
  return ip;
}

function names(): string[] {
  return lab.plan.nodes.map((n) => n.name);
}

async function nodeKey(node: string): Promise<string | undefined> {
  return (await core.readNode({ name: node })).metadata?.annotations?.[
    'wiremesh.io/wireguard-public-key'
  ];
}

async function ping(from: string, to: string, count = 3): Promise<boolean> {
  const res = await lab.execInNode(
    from,
    ['ping', '-c', String(count), '-i', '0.2', '-W', '1', to],
    { allowFailure: true },
  );
  return res.code === 0;
}

test.serial(
  'an agent crash and restart keeps the key and does not break a running stream',
  async (t) => {
    const [a, b] = names();
    if (!a || !b) throw new Error('need 2 nodes');
    const keyBefore = await nodeKey(a);
    const ipA = await tunnelIP(a);
    const stream = background([
      ...lab.execPrefix({ node: b }),
      'iperf3',
      '-c',
      ipA,
      '-t',
      '6',
      '-J',
    ]);
    const pinger = background([
      ...lab.execPrefix({ node: b }),
      'ping',
      '-i',
      '0.05',
      '-c',
      '120',
      '-W',
      '1',
      ipA,
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    await lab.stopAgent(a, 'SIGKILL');
    await lab.startAgent(a);
    await lab.waitAgentReady(a);
    const res = await stream.wait();
    const loss = pingLoss((await pinger.wait()).stdout);
    t.log(`agent restart on ${a}: ${loss.sent - loss.received} of ${loss.sent} pings lost`);
    t.is(res.code, 0, `the TCP stream survived: ${res.stderr.slice(0, 300)}`);
    t.true(
      (JSON.parse(res.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received
        .bytes > 0,
    );
    t.is(await nodeKey(a), keyBefore, 'the public key is unchanged');
    t.true(loss.received >= loss.sent - 5, `at most 5 of ${loss.sent} pings lost`);
  },
);

test.serial(
  'a node deleted from the API disappears from every peer list; added back, it joins again',
  async (t) => {
    const [a, b, c] = names();
    if (!a || !b || !c) throw new Error('need 3 nodes');
    const keyC = await nodeKey(c);
    if (!keyC) throw new Error(`${c} has no key`);
    await core.deleteNode({ name: c });
    const gone = await eventually(
      `${c} to leave the peers of ${a} and ${b}`,
      async () => !(await wgPeerKeys(a)).includes(keyC) && !(await wgPeerKeys(b)).includes(keyC),
    );
    t.log(`removed from peers ${gone} ms after the delete`);
    const routes = await lab.execInNode(a, ['ip', 'route', 'show', 'dev', 'wiremesh.wg']);
    t.is(
      routes.stdout.trim().split('\n').filter(Boolean).length,
      1,
      `one route left on ${a}: ${routes.stdout}`,
    );

    const node = lab.node(c);
    await registerNode(core, node.name, node.underlayIP);
    const back = await eventually(
      `${c} to join again`,
      async () => (await wgPeerKeys(a)).includes(keyC) && (await wgPeerKeys(b)).includes(keyC),
    );
    t.log(`re-registered ${c} became a peer again after ${back} ms`);
    const ipC = await tunnelIP(c);
    await eventually(`ping ${a} -> ${c}`, () => ping(a, ipC));
    t.pass();
  },
);

test.serial('forged annotations are refused with Events; the others are unaffected', async (t) => {
  const [a, b, c] = names();
  if (!a || !b || !c) throw new Error('need 3 nodes');
  const keyB = await nodeKey(b);
  const keyC = await nodeKey(c);
  if (!keyB || !keyC) throw new Error('keys missing');
  const forged: Record<string, string> = {
    'forged-b64': '!!!!not-base64!!!!',
    'forged-31': Buffer.alloc(31, 9).toString('base64'),
    'forged-dup': keyB,
  };
  for (const [name, key] of Object.entries(forged)) {
    await core.createNode({ body: annotatedNode(name, key, '198.18.250.250:51825') });
  }
  try {
    await eventually(
      `${a} to drop ${b} (its key is claimed twice)`,
      async () => !(await wgPeerKeys(a)).includes(keyB),
    );
    const peers = await wgPeerKeys(a);
    t.deepEqual(peers, [keyC], `${a} keeps only ${c}`);
    const events = async (): Promise<CoreV1Event[]> =>
      (await core.listNamespacedEvent({ namespace: 'default' })).items;
    await eventually('the Events', async () => {
      const ev = await events();
      const has = (node: string, reason: string) =>
        ev.some((e) => e.involvedObject.name === node && e.reason === reason);
      return (
        has('forged-b64', 'InvalidPublicKey') &&
        has('forged-31', 'InvalidPublicKey') &&
        has('forged-dup', 'DuplicatePublicKey') &&
        has(b, 'DuplicatePublicKey')
      );
    });
    const msg = (await events()).find((e) => e.involvedObject.name === 'forged-31')?.message ?? '';
    t.regex(msg, /31 bytes/);
    const log = readFileSync(
      lab.state.procs.find((p) => p.name === lab.agentProcName(a))?.log ?? '',
      'utf8',
    );
    t.regex(log, /"reason":"DuplicatePublicKey"/, 'the agent logs why');
  } finally {
    for (const name of Object.keys(forged)) await core.deleteNode({ name }).catch(() => {});
  }
  await eventually(`${b} to return to ${a}'s peers`, async () =>
    (await wgPeerKeys(a)).includes(keyB),
  );
  t.pass();
});

test.serial(
  'rotate-key: peers follow, and traffic resumes after a short interruption',
  async (t) => {
    const [a, b] = names();
    if (!a || !b) throw new Error('need 2 nodes');
    const before = await nodeKey(a);
    const ipA = await tunnelIP(a);
    await eventually('traffic before rotation', () => ping(b, ipA));
    const pinger = background([
      ...lab.execPrefix({ node: b }),
      'ping',
      '-D',
      '-i',
      '0.02',
      '-c',
      '400',
      '-W',
      '1',
      ipA,
    ]);
    await new Promise((r) => setTimeout(r, 1000));
    const res = await lab.execInNode(a, [
      process.execPath,
      '--disable-warning=ExperimentalWarning',
      new URL('../cli/main.ts', import.meta.url).pathname,
      'rotate-key',
    ]);
    t.regex(res.stdout, /new public key/);
    const out = (await pinger.wait()).stdout;
    const after = await nodeKey(a);
    t.not(after, before, 'the annotation carries the new key');
    await eventually(`${b} to know the new key`, async () =>
      (await wgPeerKeys(b)).includes(after ?? ''),
    );
    // The longest gap between consecutive replies (ping -D prints a timestamp per reply).
    const stamps = [...out.matchAll(/^\[(\d+\.\d+)\].*time=/gm)].map((m) => Number(m[1]));
    let gap = 0;
    for (let i = 1; i < stamps.length; i++)
      gap = Math.max(gap, (stamps[i] ?? 0) - (stamps[i - 1] ?? 0));
    const loss = pingLoss(out);
    t.log(
      `rotation: longest gap ${(gap * 1000).toFixed(0)} ms, ${loss.sent - loss.received} of ${loss.sent} pings lost`,
    );
    await eventually('traffic after rotation', () => ping(b, ipA));
    t.true(stamps.length > 0);
  },
);

/** The wireguard-go process inside a node (lab namespaces hold only what the lab started). */
async function wireguardGoPid(node: string): Promise<number | undefined> {
  const pids = (await defaultRunner.run(['ip', 'netns', 'pids', lab.node(node).netns])).stdout
    .split(/\s+/)
    .filter(Boolean);
  for (const pid of pids) {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (comm === 'wireguard-go') return Number(pid);
  }
  return undefined;
}

test.serial(
  'wireguard-go killed: the agent brings the device back and traffic resumes',
  async (t) => {
    const [a, b] = names();
    if (!a || !b) throw new Error('need 2 nodes');
    const ipA = await tunnelIP(a);
    await eventually('traffic before the kill', () => ping(b, ipA));
    const pid = await wireguardGoPid(a);
    if (!pid) throw new Error(`no wireguard-go in ${a}`);
    process.kill(pid, 'SIGKILL');
    const recovered = await eventually('traffic after the kill', () => ping(b, ipA, 1), 20_000, 50);
    t.log(`wireguard-go killed on ${a}: traffic back after ${recovered} ms`);
    const again = await wireguardGoPid(a);
    t.truthy(again);
    t.not(again, pid);
  },
);

test.serial(
  'host-to-host encryption: node traffic between two opted-in nodes is WireGuard only; others stay plain',
  async (t) => {
    const [a, b, c] = names();
    if (!a || !b || !c) throw new Error('need 3 nodes');
    const nodeB = lab.node(b);
    const nodeC = lab.node(c);
    const restart = async (node: string, args: string[]) => {
      await lab.stopAgent(node);
      await lab.startAgent(node, args);
      await lab.waitAgentReady(node);
    };
    await restart(a, ['--host-encryption']);
    await restart(b, ['--host-encryption']);
    try {
      await eventually(`${a} to route ${b}'s node address through the tunnel`, async () =>
        (await lab.execInNode(a, ['wg', 'show', 'wiremesh.wg', 'allowed-ips'])).stdout.includes(
          `${nodeB.underlayIP}/32`,
        ),
      );
      const marker = `WIREMESH-HOST-MARKER-${Date.now()}`;
      const wire = await startCapture(
        [],
        lab.plan.bridge,
        `ip and not host ${lab.plan.gatewayIP}`,
        `/tmp/wm-host-${process.pid}.pcap`,
      );
      for (const [node, ip] of [
        [b, nodeB.underlayIP],
        [c, nodeC.underlayIP],
      ] as const) {
        await lab.spawnInNode(node, `host-sink-${node}`, [
          'socat',
          '-u',
          `TCP-LISTEN:7003,bind=${ip},reuseaddr`,
          'OPEN:/dev/null',
        ]);
        await eventually('the sink', async () =>
          (await lab.execInNode(node, ['ss', '-Hltn', 'sport = :7003'])).stdout.includes('7003'),
        );
        await lab.execInNode(a, ['socat', '-u', 'STDIN', `TCP:${ip}:7003`], {
          input: `${marker}-${node}\n`.repeat(100),
          timeoutMs: 10_000,
        });
        await lab.stopProcess(`host-sink-${node}`);
      }
      const { raw, lines } = await wire.stop();
      t.false(raw.includes(`${marker}-${b}`), `${a} -> ${b} (both opted in) never shows plaintext`);
      t.true(
        raw.includes(`${marker}-${c}`),
        `control: ${a} -> ${c} (${c} not opted in) stays plain, and the capture sees it`,
      );
      const between = lines.filter(
        (l) => l.includes(lab.node(a).underlayIP) && l.includes(nodeB.underlayIP),
      );
      t.true(between.length > 0);
      for (const l of between)
        t.regex(l, /\.51825[ :].*UDP|UDP.*\.51825/, `only WireGuard between ${a} and ${b}: ${l}`);
    } finally {
      await restart(a, []);
      await restart(b, []);
    }
    await eventually(
      `${a} to drop its host routing`,
      async () => !(await lab.execInNode(a, ['ip', 'rule', 'show'])).stdout.includes('51825'),
    );
    t.pass();
  },
);
