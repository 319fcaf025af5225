// The WireGuard mesh under faults, on a 3-node lab running the real agent with its
// ServiceAccount: key persistence across an agent crash, node removal and return,
// forged annotations refused with Events, key rotation, wireguard-go killed,
// host-to-host encryption, and pods reaching another node's own address (a server
// there on the node's network, as a hostNetwork pod or an apiserver) from pools that
// are Required, Preferred and plaintext, with host encryption off and on. Lab-only:
// these stop and restart the agent process with other flags, kill wireguard-go by
// pid, re-register Nodes and read the agent's log file, which the cluster-driver
// interface does not offer. Handshakes, traffic and the underlay capture run on any
// cluster in mesh.e2e.test.ts. A test that changes the lab (a node, an agent's flags,
// pools) puts it back in a `finally`, so one failure does not take the next tests down.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { CoreV1Api, KubeConfig, type CoreV1Event } from '@kubernetes/client-node';
import { Lab } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { startCapture, background, pingLoss, eventually } from './probes.ts';
import type { AgentStatus } from '../agent/index.ts';
import { registerNode, annotatedNode } from '../lab/kube.ts';
import { createPoolNamespace, IPPOOL_PATH } from '../lab/index.ts';
import { kubeClient } from '../kube/index.ts';
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

/** Restart a node's agent with these flags (none: the manifest's settings). */
async function restartAgent(node: string, args: string[]): Promise<void> {
  await lab.stopAgent(node);
  await lab.startAgent(node, args);
  await lab.waitAgentReady(node);
}

/** Start the node's agent if a failed test left it stopped. */
async function ensureAgent(node: string): Promise<void> {
  if (lab.state.procs.some((p) => p.name === lab.agentProcName(node))) return;
  await lab.startAgent(node);
  await lab.waitAgentReady(node);
}

/** Whether `node` routes `address` into the tunnel by host encryption (table 51825). */
async function hostRouted(node: string, address: string): Promise<boolean> {
  const res = await lab.execInNode(node, ['ip', 'route', 'show', 'table', '51825'], {
    allowFailure: true,
  });
  return res.stdout.split('\n').some((l) => l.startsWith(`${address} `));
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
    try {
      await lab.stopAgent(a, 'SIGKILL');
      await lab.startAgent(a);
      await lab.waitAgentReady(a);
    } finally {
      await ensureAgent(a);
    }
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
  'a node deleted from the API disappears from every peer list, its routes first; added back, it joins again',
  async (t) => {
    const [a, b, c] = names();
    if (!a || !b || !c) throw new Error('need 3 nodes');
    const keyC = await nodeKey(c);
    if (!keyC) throw new Error(`${c} has no key`);
    const [ipB, ipC] = [await tunnelIP(b), await tunnelIP(c)];
    const node = lab.node(c);
    await core.deleteNode({ name: c });
    try {
      const gone = await eventually(
        `${c} to leave the peers of ${a} and ${b}`,
        async () => !(await wgPeerKeys(a)).includes(keyC) && !(await wgPeerKeys(b)).includes(keyC),
      );
      t.log(`removed from peers ${gone} ms after the delete`);
      // The driver withdraws a peer's routes before the peer: none may be left now.
      const routes = (await lab.execInNode(a, ['ip', 'route', 'show', 'dev', 'wiremesh.wg']))
        .stdout;
      t.false(routes.includes(`${ipC} `), `no route to ${c}'s tunnel address on ${a}: ${routes}`);
      t.true(routes.includes(`${ipB} `), `${b}'s route stays: ${routes}`);

      await registerNode(core, node.name, node.underlayIP);
      const back = await eventually(
        `${c} to join again`,
        async () => (await wgPeerKeys(a)).includes(keyC) && (await wgPeerKeys(b)).includes(keyC),
      );
      t.log(`re-registered ${c} became a peer again after ${back} ms`);
      await eventually(`ping ${a} -> ${c}`, async () => ping(a, await tunnelIP(c)));
    } finally {
      // Whatever failed above, the next tests need the node back.
      const exists = await core.readNode({ name: c }).then(
        () => true,
        () => false,
      );
      if (!exists) await registerNode(core, node.name, node.underlayIP);
      await eventually(`${c} to be a peer of ${a} again`, async () =>
        (await wgPeerKeys(a)).includes(keyC),
      ).catch((e: unknown) => t.log(`restoring ${c}: ${(e as Error).message}`));
    }
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
    const events = async (): Promise<CoreV1Event[]> =>
      (await core.listNamespacedEvent({ namespace: 'default' })).items;
    await eventually('the Events', async () => {
      const ev = await events();
      const has = (node: string, reason: string) =>
        ev.some((e) => e.involvedObject.name === node && e.reason === reason);
      return (
        has('forged-b64', 'InvalidPublicKey') &&
        has('forged-31', 'InvalidPublicKey') &&
        has('forged-dup', 'DuplicatePublicKey')
      );
    });
    // Each agent refuses the copy on its own: wait until a has (its log says so)
    // before looking at a's peers, which were right before it saw the copy too.
    const agentLog = () =>
      readFileSync(
        lab.state.procs.findLast((p) => p.name === lab.agentProcName(a))?.log ?? '',
        'utf8',
      );
    await eventually(`${a} to refuse the copied key`, async () =>
      /"reason":"DuplicatePublicKey"/.test(agentLog()),
    );
    // The copy came after b published the key: b keeps it, only the copy is refused.
    t.deepEqual([...(await wgPeerKeys(a))].sort(), [keyB, keyC].sort(), `${a} keeps ${b} and ${c}`);
    t.false(
      (await events()).some(
        (e) => e.involvedObject.name === b && e.reason === 'DuplicatePublicKey',
      ),
    );
    // a's Event says whose key it is (b's own agent says the key is its own).
    t.regex(
      (await events()).find(
        (e) => e.involvedObject.name === 'forged-dup' && e.message?.startsWith(`wiremesh on ${a} `),
      )?.message ?? '',
      new RegExp(`published first by ${b}`),
    );
    const msg = (await events()).find((e) => e.involvedObject.name === 'forged-31')?.message ?? '';
    t.regex(msg, /31 bytes/);
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
    try {
      await restartAgent(a, ['--host-encryption']);
      await restartAgent(b, ['--host-encryption']);
      await eventually(`${a} to route ${b}'s node address through the tunnel`, () =>
        hostRouted(a, nodeB.underlayIP),
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
      await restartAgent(a, []);
      await restartAgent(b, []);
    }
    await eventually(
      `${a} to drop its host routing`,
      async () => !(await lab.execInNode(a, ['ip', 'rule', 'show'])).stdout.includes('51825'),
    );
    t.pass();
  },
);

/** Pools of the node-address test: the lab's default pool is Required (deploy/default-pool.yaml). */
const ADDRESS_POOLS = [
  { namespace: 'default', pool: 'default-ipv4', encrypted: true },
  {
    namespace: 'nodeaddr-pref',
    pool: 'nodeaddr-pref',
    encrypted: true,
    spec: {
      cidr: '100.90.0.0/16',
      encryption: 'WireGuard',
      encryptionMode: 'Preferred',
      encapsulation: 'None',
    },
  },
  {
    namespace: 'nodeaddr-plain',
    pool: 'nodeaddr-plain',
    encrypted: false,
    spec: {
      cidr: '100.91.0.0/16',
      encryption: 'None',
      encryptionMode: 'Preferred',
      encapsulation: 'None',
    },
  },
] as const;

test.serial(
  "pods reach another node's own address: encrypted pools through WireGuard both ways, with and without host encryption",
  async (t) => {
    const [a, b] = names();
    if (!a || !b) throw new Error('need 2 nodes');
    const addressB = lab.node(b).underlayIP;
    const kube = kubeClient(lab.state.kubeconfig);
    // The pods, pools and server go again at the end, also after a failure (a shared lab
    // serves other suites). The namespaces stay: without a controller manager a deleted
    // namespace never finishes terminating, and they only name their pool.
    const cleanup = async () => {
      for (const p of ADDRESS_POOLS)
        if (lab.state.pods.some((x) => x.name === `nodeaddr-${p.pool}`))
          await lab.deletePod(`nodeaddr-${p.pool}`, p.namespace);
      for (const p of ADDRESS_POOLS)
        if ('spec' in p)
          await kube.request('DELETE', `${IPPOOL_PATH}/${p.pool}`).catch((e: unknown) => {
            if ((e as { status?: number }).status !== 404) throw e;
          });
      await lab.stopProcess('nodeaddr-server');
    };
    await cleanup(); // an earlier run's, on a shared lab
    let restarted = false;
    try {
      for (const p of ADDRESS_POOLS) {
        if (!('spec' in p)) continue;
        await createPoolNamespace(kube, { name: p.pool, ...p.spec }).catch((e: unknown) => {
          // The namespace of an earlier run: create the pool alone.
          if ((e as { status?: number }).status !== 409) throw e;
        });
      }
      await eventually(`${a} to know the pools`, async () => {
        const known = (await status(a)).paths.pools.map((p) => p.name);
        return ADDRESS_POOLS.every((p) => known.includes(p.pool));
      });
      // The agent learns the namespaces' annotations from its watch.
      await new Promise((r) => setTimeout(r, 2000));
      const pods = new Map<string, string>();
      for (const p of ADDRESS_POOLS) {
        const pod = await lab.addPod(a, p.namespace, `nodeaddr-${p.pool}`);
        const ip = pod.ips[0]?.split('/')[0] ?? '';
        const cidr = 'spec' in p ? p.spec.cidr : '100.64.0.0/16';
        t.true(ip.startsWith(cidr.split('.').slice(0, 2).join('.') + '.'), `${ip} is in ${cidr}`);
        pods.set(p.pool, ip);
      }
      // A server on B's own address, in B's network namespace (as a hostNetwork pod or
      // an apiserver): it answers each line in upper case, so a capture tells the
      // request (lower case) from the reply.
      await lab.spawnInNode(b, 'nodeaddr-server', [
        'socat',
        `TCP-LISTEN:7201,bind=${addressB},reuseaddr,fork`,
        'EXEC:tr a-z A-Z',
      ]);
      await eventually('the server', async () =>
        (await lab.execInNode(b, ['ss', '-Hltn', 'sport = :7201'])).stdout.includes('7201'),
      );

      for (const hostEncryption of [false, true]) {
        if (hostEncryption) {
          restarted = true;
          await restartAgent(a, ['--host-encryption']);
          await restartAgent(b, ['--host-encryption']);
          await eventually(`${a} to route ${b}'s address by host encryption`, () =>
            hostRouted(a, addressB),
          );
        }
        for (const p of ADDRESS_POOLS) {
          const label = `${p.pool}, host encryption ${hostEncryption ? 'on' : 'off'}`;
          const marker = `wm-nodeaddr-${p.pool}-${hostEncryption ? 'he' : 'nohe'}-${Date.now()}`;
          const wire = await startCapture(
            [],
            lab.plan.bridge,
            `ip and not host ${lab.plan.gatewayIP}`,
            `/tmp/wm-nodeaddr-${process.pid}.pcap`,
          );
          let answer = '';
          const connect = eventually(
            `pod of ${p.pool} on ${a} -> ${addressB}:7201`,
            async () => {
              const res = await lab.execInPod(
                `nodeaddr-${p.pool}`,
                ['socat', '-t', '3', '-T', '5', '-', `TCP:${addressB}:7201,connect-timeout=2`],
                {
                  namespace: p.namespace,
                  input: `${marker}\n`,
                  timeoutMs: 10_000,
                  allowFailure: true,
                },
              );
              answer = res.stdout.trim();
              return answer === marker.toUpperCase();
            },
            20_000,
            500,
          );
          const failed = await connect.then(
            () => null,
            (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
          );
          const { raw, lines } = await wire.stop();
          if (failed) throw failed;
          t.is(answer, marker.toUpperCase(), `${label}: the server answered`);
          const request = raw.includes(marker);
          const reply = raw.includes(marker.toUpperCase());
          const between = lines.filter(
            (l) => l.includes(lab.node(a).underlayIP) || l.includes(pods.get(p.pool) ?? '-'),
          );
          if (p.encrypted) {
            // The README: an encrypted pool's pods reach other nodes' addresses through
            // WireGuard, and the reply comes back through it.
            t.false(request, `${label}: the request never crosses the underlay in plaintext`);
            t.false(reply, `${label}: nor the reply`);
            for (const l of between)
              t.regex(l, /\.51825[ :].*UDP|UDP.*\.51825/, `${label}: only WireGuard: ${l}`);
          } else {
            // A plaintext pool: the reply takes the pool's path (native here) in
            // plaintext; the request too, unless host encryption carries it.
            t.true(reply, `${label}: control: the capture sees the plaintext reply`);
            t.is(
              request,
              !hostEncryption,
              `${label}: the request is plaintext without host encryption`,
            );
          }
        }
      }
    } finally {
      if (restarted) {
        await restartAgent(a, []).catch((e: unknown) => t.log(`restarting ${a}: ${String(e)}`));
        await restartAgent(b, []).catch((e: unknown) => t.log(`restarting ${b}: ${String(e)}`));
      }
      await cleanup();
    }
  },
);
