// Per-pool encryption and encapsulation, end to end on a 2-node lab (`pools`) with
// the real agents: pools chosen per namespace (`wiremesh.io/ippool`), what the
// underlay carries for each pool (captured on the lab's bridge: WireGuard UDP 51825,
// VXLAN UDP 4789 VNI 4100, never a pod address in an outer header), the mixed case,
// a pool's encryption flipped and back under a running ping, a node that loses
// WireGuard (its agent restarted with `--wireguard kernel` on a kernel without the
// module: it withdraws its key) for a Required and a Preferred pool, IP-in-IP on a
// kernel without the module, full-size DF pings and a TCP transfer on every path, and
// natOutgoing: a host outside the cluster on the underlay (a throwaway namespace on
// the lab's bridge at .200, which routes the plain pool's pod address back through
// its node as a real network would) sees the natOutgoing pool's pods as their node
// and the other pool's as themselves, while pod-to-pod traffic between pools keeps
// its pod source address on every path.
import test from 'ava';
import { defaultRunner } from '../sys/index.ts';
import { createPoolNamespace, Lab, patchPoolSpec } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { startCapture, background, pingLoss, eventually, type Capture } from './probes.ts';
import { kubeClient, type KubeClient } from '../kube/index.ts';
import type { AgentStatus } from '../agent/index.ts';

let driver: LabDriver | undefined;
let lab: Lab;
let kube: KubeClient;
let nodeA = '';
let nodeB = '';

interface PoolDef {
  name: string;
  cidr: string;
  encryption: 'WireGuard' | 'None';
  encryptionMode: 'Required' | 'Preferred';
  encapsulation: string;
  natOutgoing?: boolean;
}
const POOLS: PoolDef[] = [
  {
    name: 'secure',
    cidr: '100.80.0.0/16',
    encryption: 'WireGuard',
    encryptionMode: 'Required',
    encapsulation: 'None',
  },
  {
    name: 'plain',
    cidr: '100.81.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLAN',
  },
  {
    name: 'pref',
    cidr: '100.82.0.0/16',
    encryption: 'WireGuard',
    encryptionMode: 'Preferred',
    encapsulation: 'VXLAN',
  },
  {
    name: 'native',
    cidr: '100.83.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
  },
  {
    name: 'ipip',
    cidr: '100.84.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'IPIP',
  },
  {
    name: 'natout',
    cidr: '100.85.0.0/16',
    encryption: 'None',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
    natOutgoing: true,
  },
];

/** Pod `<pool>-a` on node A and `<pool>-b` on node B, in namespace `<pool>`. */
const pods = new Map<string, string>();
const ipOf = (pool: string, side: 'a' | 'b'): string => {
  const ip = pods.get(`${pool}-${side}`);
  if (!ip) throw new Error(`no pod ${pool}-${side}`);
  return ip;
};

test.before(async () => {
  driver = await LabDriver.fresh({ name: 'pools', nodes: 2, podsPerNode: 0, agents: true });
  lab = driver.lab;
  kube = kubeClient(lab.state.kubeconfig);
  [nodeA = '', nodeB = ''] = lab.plan.nodes.map((n) => n.name);
  for (const p of POOLS) await createPoolNamespace(kube, p);
  // The agents learn the namespaces' annotations from their watch.
  await new Promise((r) => setTimeout(r, 2000));
  for (const p of POOLS) {
    for (const [side, node] of [
      ['a', nodeA],
      ['b', nodeB],
    ] as const) {
      const pod = await lab.addPod(node, p.name, `${p.name}-${side}`, { app: 'pools' });
      pods.set(`${p.name}-${side}`, pod.ips[0]?.split('/')[0] ?? '');
    }
  }
});

test.after.always(async () => {
  if (driver) await driver.close();
});

function status(node: string): Promise<AgentStatus> {
  return lab.agentStatus(node);
}

async function pathOf(node: string, blockOf: string): Promise<string | undefined> {
  const s = await status(node);
  return s.paths.blocks.find((b) => cidrHas(b.cidr, blockOf))?.path;
}

function cidrHas(cidr: string, ip: string): boolean {
  const [base = '', len = '32'] = cidr.split('/');
  const n = (a: string) => a.split('.').reduce((x, o) => x * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(len));
  return Math.floor(n(ip) / size) === Math.floor(n(base) / size);
}

async function podPing(
  from: string,
  to: string,
  opts: { count?: number; size?: number; df?: boolean } = {},
): Promise<boolean> {
  const [ns = ''] = from.split('-');
  const res = await lab.execInPod(
    from,
    [
      'ping',
      '-c',
      String(opts.count ?? 3),
      '-i',
      '0.2',
      '-W',
      '1',
      ...(opts.df ? ['-M', 'do'] : []),
      ...(opts.size ? ['-s', String(opts.size)] : []),
      to,
    ],
    { namespace: ns, allowFailure: true },
  );
  return res.code === 0;
}

function underlayCapture(tag: string): Promise<Capture> {
  return startCapture(
    [],
    lab.plan.bridge,
    `ip and not host ${lab.plan.gatewayIP}`,
    `/tmp/wm-pools-${tag}-${process.pid}.pcap`,
  );
}

/**
 * Let tcpdump read what is still in its ring before it is stopped: on SIGINT it
 * leaves the loop without reading the rest, so on a loaded machine the last reply
 * of a ping, already delivered, could be missing from the capture.
 */
const settle = () => new Promise((r) => setTimeout(r, 500));

/** Outer packets (tcpdump prints an encapsulated packet's inner header on its own line). */
function summarise(lines: string[], podIPs: string[]) {
  const outer = lines.filter((l) => /^\d\d:\d\d:\d\d/.test(l));
  const mentions = (l: string) => podIPs.some((ip) => l.includes(`${ip} `) || l.includes(`${ip}.`));
  return {
    wireguard: outer.filter((l) => /\.51825[ :]/.test(l)).length,
    vxlan: outer.filter((l) => l.includes('VXLAN') && l.includes('vni 4100')).length,
    /** Pod addresses in an outer header: plaintext (or native routing) on the underlay. */
    plaintext: outer.filter(mentions).length,
    /** Pod addresses inside VXLAN (or any decoded encapsulation). */
    inner: lines.filter((l) => !/^\d\d:\d\d:\d\d/.test(l) && mentions(l)).length,
  };
}

async function capturePings(
  tag: string,
  pairs: [string, string][],
  podIPs: string[],
): Promise<{ ok: boolean[]; seen: ReturnType<typeof summarise> }> {
  const cap = await underlayCapture(tag);
  const ok: boolean[] = [];
  try {
    for (const [from, to] of pairs) ok.push(await podPing(from, to, { count: 5 }));
  } catch (e) {
    await cap.stop();
    throw e;
  }
  await settle();
  const { lines } = await cap.stop();
  return { ok, seen: summarise(lines, podIPs) };
}

async function waitForPath(node: string, ip: string, path: string): Promise<void> {
  await eventually(
    `${node} to route ${ip} over ${path}`,
    async () => (await pathOf(node, ip)) === path,
    30_000,
    200,
  );
}

test.serial('each namespace gets an address from the pool its annotation names', (t) => {
  for (const p of POOLS)
    for (const side of ['a', 'b'] as const)
      t.true(
        cidrHas(p.cidr, ipOf(p.name, side)),
        `${p.name}-${side} ${ipOf(p.name, side)} in ${p.cidr}`,
      );
});

test.serial(
  'the encrypted pool crosses the underlay only inside WireGuard UDP 51825',
  async (t) => {
    await waitForPath(nodeA, ipOf('secure', 'b'), 'wireguard');
    await waitForPath(nodeB, ipOf('secure', 'a'), 'wireguard');
    const ips = [ipOf('secure', 'a'), ipOf('secure', 'b')];
    const { ok, seen } = await capturePings(
      'secure',
      [
        ['secure-a', ipOf('secure', 'b')],
        ['secure-b', ipOf('secure', 'a')],
      ],
      ips,
    );
    t.deepEqual(ok, [true, true], 'pings both ways');
    t.log(seen);
    t.true(seen.wireguard >= 20, 'every ping and reply inside WireGuard');
    t.is(seen.plaintext, 0, 'no pod address in an outer header');
    t.is(seen.inner, 0, 'no pod address inside a decodable encapsulation');
  },
);

test.serial('the VXLAN pool crosses the underlay as VXLAN UDP 4789, VNI 4100', async (t) => {
  await waitForPath(nodeA, ipOf('plain', 'b'), 'vxlan');
  const ips = [ipOf('plain', 'a'), ipOf('plain', 'b')];
  const { ok, seen } = await capturePings(
    'plain',
    [
      ['plain-a', ipOf('plain', 'b')],
      ['plain-b', ipOf('plain', 'a')],
    ],
    ips,
  );
  t.deepEqual(ok, [true, true]);
  t.log(seen);
  t.true(seen.vxlan >= 20, 'every ping and reply in VXLAN');
  t.true(seen.inner >= 20, 'the pods addresses inside the VXLAN packets');
  t.is(seen.plaintext, 0);
});

test.serial('plain pod <-> encrypted pod is encrypted both ways', async (t) => {
  const ips = [ipOf('plain', 'a'), ipOf('secure', 'b'), ipOf('secure', 'a'), ipOf('plain', 'b')];
  const { ok, seen } = await capturePings(
    'mixed',
    [
      ['plain-a', ipOf('secure', 'b')],
      ['secure-b', ipOf('plain', 'a')],
      ['secure-a', ipOf('plain', 'b')],
      ['plain-b', ipOf('secure', 'a')],
    ],
    ips,
  );
  t.deepEqual(ok, [true, true, true, true]);
  t.log(seen);
  t.true(seen.wireguard >= 40);
  t.is(seen.plaintext, 0);
  t.is(seen.inner, 0, 'nothing of these pods in VXLAN');
});

async function setEncryption(pool: string, encryption: 'WireGuard' | 'None'): Promise<void> {
  await patchPoolSpec(kube, pool, { encryption });
}

test.serial(
  'flipping the plain pool to encryption and back moves a running ping; it survives',
  async (t) => {
    const ips = [ipOf('plain', 'a'), ipOf('plain', 'b')];
    const ping = background([
      ...lab.execPrefix({ pod: 'plain-a', namespace: 'plain' }),
      'ping',
      '-i',
      '0.05',
      '-w',
      '30',
      ipOf('plain', 'b'),
    ]);
    t.teardown(() => ping.kill());
    let cap = await underlayCapture('flip1');
    await new Promise((r) => setTimeout(r, 2000));
    const before = summarise((await cap.stop()).lines, ips);

    await setEncryption('plain', 'WireGuard');
    await waitForPath(nodeA, ipOf('plain', 'b'), 'wireguard');
    await waitForPath(nodeB, ipOf('plain', 'a'), 'wireguard');
    cap = await underlayCapture('flip2');
    await new Promise((r) => setTimeout(r, 2000));
    const encrypted = summarise((await cap.stop()).lines, ips);

    await setEncryption('plain', 'None');
    await waitForPath(nodeA, ipOf('plain', 'b'), 'vxlan');
    await waitForPath(nodeB, ipOf('plain', 'a'), 'vxlan');
    cap = await underlayCapture('flip3');
    await new Promise((r) => setTimeout(r, 2000));
    const after = summarise((await cap.stop()).lines, ips);
    await ping.kill();
    const { stdout } = await ping.wait();
    const loss = pingLoss(stdout);
    t.log({ before, encrypted, after, loss });
    t.true(before.inner > 20 && before.plaintext === 0, 'VXLAN before');
    t.true(encrypted.wireguard > 20, 'WireGuard while encrypted');
    t.is(encrypted.inner + encrypted.plaintext, 0, 'nothing of the pool in clear while encrypted');
    t.true(after.inner > 20 && after.plaintext === 0, 'VXLAN again after');
    t.true(loss.sent > 100);
    t.true(loss.received >= loss.sent * 0.95, `ping survived: ${loss.received}/${loss.sent}`);
  },
);

test.serial(
  'IP-in-IP: this kernel lacks the module; status and Events say so; the pool falls back',
  async (t) => {
    const s = await status(nodeA);
    const ipip = s.paths.available?.find((a) => a.kind === 'ipip');
    t.log(`this kernel lacks the IP-in-IP module: ${ipip?.detail}`);
    t.false(ipip?.available ?? true, 'IP-in-IP reported unavailable');
    t.regex(ipip?.detail ?? '', /ipip/);
    t.true(
      s.paths.events.some((e) => e.reason === 'EncapsulationUnavailable' && e.pool === 'ipip'),
    );
    // A pool without encryption asking for IP-in-IP: WireGuard instead, the peer has it.
    t.is(await pathOf(nodeA, ipOf('ipip', 'b')), 'wireguard');
    t.true(await podPing('ipip-a', ipOf('ipip', 'b')));
    await eventually(
      'an IPPool Event for the ipip pool',
      async () => {
        const ev = await kube.request<{
          items: { reason?: string; involvedObject?: { name?: string } }[];
        }>('GET', '/api/v1/events', undefined, {
          query: { fieldSelector: 'involvedObject.kind=IPPool,involvedObject.name=ipip' },
        });
        return ev.items.some((e) => e.reason === 'EncapsulationUnavailable');
      },
      15_000,
    );
    await eventually(
      'a Node Event for the missing module',
      async () => {
        const ev = await kube.request<{ items: { reason?: string; message?: string }[] }>(
          'GET',
          '/api/v1/events',
          undefined,
          { query: { fieldSelector: `involvedObject.kind=Node,involvedObject.name=${nodeA}` } },
        );
        return ev.items.some(
          (e) => e.reason === 'EncapsulationUnavailable' && /ipip/.test(e.message ?? ''),
        );
      },
      15_000,
    );
  },
);

test.serial('MTU: full-size DF pings and a TCP transfer on every path', async (t) => {
  const s = await status(nodeA);
  for (const [pool, path] of [
    ['secure', 'wireguard'],
    ['plain', 'vxlan'],
    ['native', 'native'],
  ] as const) {
    t.is(await pathOf(nodeA, ipOf(pool, 'b')), path, `${pool} takes ${path}`);
    const mtu = s.paths.mtu?.byPool[pool];
    if (!mtu) throw new Error(`no MTU for pool ${pool}`);
    const link = await lab.execInPod(`${pool}-a`, ['ip', '-j', 'link', 'show', 'eth0'], {
      namespace: pool,
    });
    t.is((JSON.parse(link.stdout) as { mtu: number }[])[0]?.mtu, mtu, `${pool} pod MTU`);
    t.true(
      await podPing(`${pool}-a`, ipOf(pool, 'b'), { size: mtu - 28, df: true }),
      `${pool}: ${mtu}-byte DF ping`,
    );
    t.false(
      await podPing(`${pool}-a`, ipOf(pool, 'b'), { size: mtu - 27, df: true, count: 1 }),
      `${pool}: one byte more does not fit`,
    );
    const server = background([
      ...lab.execPrefix({ pod: `${pool}-b`, namespace: pool }),
      'iperf3',
      '-s',
      '-1',
      '-B',
      ipOf(pool, 'b'),
    ]);
    t.teardown(() => server.kill());
    const res = await eventually(
      `iperf3 ${pool}`,
      async () => {
        const r = await lab.execInPod(
          `${pool}-a`,
          ['iperf3', '-c', ipOf(pool, 'b'), '-t', '2', '-J'],
          { namespace: pool, allowFailure: true, timeoutMs: 20_000 },
        );
        if (r.code !== 0) return false;
        const bytes = (JSON.parse(r.stdout) as { end: { sum_received: { bytes: number } } }).end
          .sum_received.bytes;
        t.log(
          `${pool} (${path}): ${((bytes / 2 / 1e6) * 8).toFixed(0)} Mbit/s over one TCP stream`,
        );
        return bytes > 1_000_000;
      },
      20_000,
      300,
    );
    t.true(res >= 0);
    await server.kill();
  }
});

/** Source addresses of the ICMP echo requests in tcpdump lines, with their counts. */
function echoSources(lines: string[], to: string): Record<string, number> {
  const seen: Record<string, number> = {};
  for (const l of lines) {
    const m = / IP (\S+) > (\S+): ICMP echo request/.exec(l);
    if (m?.[2] === to) seen[m[1] ?? ''] = (seen[m[1] ?? ''] ?? 0) + 1;
  }
  return seen;
}

test.serial(
  'natOutgoing: an outside host sees that pool as its node, the other pool as the pod; pod to pod is never masqueraded',
  async (t) => {
    // The outside host: a namespace on the underlay bridge at .200 of the lab's /24.
    const outside = 'wml-pools-out';
    const hostVeth = 'wml-pools-o';
    const outsideIP = `198.18.${lab.plan.index}.200`;
    const run = (argv: string[]) => defaultRunner.run(argv);
    const inOutside = (argv: string[]) => run(['ip', 'netns', 'exec', outside, ...argv]);
    t.teardown(async () => {
      await defaultRunner.run(['ip', 'netns', 'del', outside], { allowFailure: true });
      await defaultRunner.run(['ip', 'link', 'del', hostVeth], { allowFailure: true });
    });
    await run(['ip', 'netns', 'add', outside]);
    await run([
      'ip',
      'link',
      'add',
      hostVeth,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      outside,
    ]);
    await run(['ip', 'link', 'set', hostVeth, 'master', lab.plan.bridge, 'up']);
    await inOutside(['ip', 'link', 'set', 'lo', 'up']);
    await inOutside(['ip', 'addr', 'add', `${outsideIP}/${lab.plan.prefixLength}`, 'dev', 'eth0']);
    await inOutside(['ip', 'link', 'set', 'eth0', 'up']);
    // The network routes the non-NAT pool's pod back through its node (as BGP or a
    // static route would); the natOutgoing pool needs no route.
    const underlayA = lab.node(nodeA).underlayIP;
    const underlayB = lab.node(nodeB).underlayIP;
    await inOutside(['ip', 'route', 'add', `${ipOf('native', 'a')}/32`, 'via', underlayA]);

    const cap = await startCapture(
      ['ip', 'netns', 'exec', outside],
      'eth0',
      'icmp',
      `/tmp/wm-pools-natout-${process.pid}.pcap`,
    );
    const ok: Record<string, boolean> = {};
    try {
      for (const pod of ['natout-a', 'natout-b', 'native-a'])
        ok[pod] = await podPing(pod, outsideIP, { count: 5 });
    } finally {
      await settle();
      const { lines } = await cap.stop();
      const sources = echoSources(lines, outsideIP);
      t.log({ ok, sources });
      t.deepEqual(
        ok,
        { 'natout-a': true, 'natout-b': true, 'native-a': true },
        'every ping answered',
      );
      t.is(sources[underlayA], 5, "natout-a's pings arrive from node A's address");
      t.is(sources[underlayB], 5, "natout-b's pings arrive from node B's address");
      t.is(sources[ipOf('native', 'a')], 5, "native-a's pings arrive from its own address");
      t.is(sources[ipOf('natout', 'a')] ?? 0, 0, "natout-a's own address never reaches outside");
      t.is(sources[ipOf('natout', 'b')] ?? 0, 0, "natout-b's own address never reaches outside");
    }

    // Pod to pod, from the natOutgoing pool to every path and to this node: the
    // destination pod sees the source pod's address, never a node's.
    for (const [dest, path] of [
      ['native-b', 'native'],
      ['natout-b', 'native'],
      ['plain-b', 'vxlan'],
      ['secure-b', 'wireguard'],
      ['native-a', null],
    ] as const) {
      const [ns = ''] = dest.split('-');
      const to = ipOf(ns, dest.endsWith('-a') ? 'a' : 'b');
      if (path) {
        await waitForPath(nodeA, to, path);
        await waitForPath(nodeB, ipOf('natout', 'a'), 'native');
      }
      const podCap = await startCapture(
        lab.execPrefix({ pod: dest, namespace: ns }),
        'eth0',
        'icmp',
        `/tmp/wm-pools-natpod-${dest}-${process.pid}.pcap`,
      );
      let answered = false;
      try {
        answered = await podPing('natout-a', to, { count: 3 });
      } finally {
        await settle();
        const sources = echoSources((await podCap.stop()).lines, to);
        t.log({ dest, answered, sources });
        t.true(answered, `natout-a reaches ${dest}`);
        t.deepEqual(sources, { [ipOf('natout', 'a')]: 3 }, `${dest} sees natout-a's own address`);
      }
    }
  },
);

test.serial(
  'a node that loses WireGuard: Required fails closed, Preferred falls back to VXLAN with an Event',
  async (t) => {
    // Node B's agent restarted on "a kernel without WireGuard": it withdraws its key.
    await lab.stopAgent(nodeB);
    await lab.startAgent(nodeB, ['--wireguard', 'kernel']);
    t.teardown(async () => {
      await lab.stopAgent(nodeB);
      await lab.startAgent(nodeB);
    });
    await eventually(
      'node B to report WireGuard unavailable',
      async () => {
        const s = await status(nodeB);
        return s.wireguard.mode === 'unavailable' && s.paths.blocks.length > 0;
      },
      30_000,
      300,
    );
    await waitForPath(nodeA, ipOf('secure', 'b'), 'blocked');
    await waitForPath(nodeA, ipOf('pref', 'b'), 'vxlan');
    await waitForPath(nodeB, ipOf('pref', 'a'), 'vxlan');

    const secureIPs = [ipOf('secure', 'a'), ipOf('secure', 'b')];
    const required = await capturePings(
      'required',
      [
        ['secure-a', ipOf('secure', 'b')],
        ['secure-b', ipOf('secure', 'a')],
      ],
      secureIPs,
    );
    t.log({ required: required.seen });
    t.deepEqual(required.ok, [false, false], 'the Required pool cannot connect');
    t.is(
      required.seen.plaintext + required.seen.inner,
      0,
      'zero packets of the Required pool on the underlay',
    );

    const prefIPs = [ipOf('pref', 'a'), ipOf('pref', 'b')];
    const preferred = await capturePings(
      'preferred',
      [
        ['pref-a', ipOf('pref', 'b')],
        ['pref-b', ipOf('pref', 'a')],
      ],
      prefIPs,
    );
    t.log({ preferred: preferred.seen });
    t.deepEqual(preferred.ok, [true, true], 'the Preferred pool still connects');
    t.true(preferred.seen.inner >= 20, 'over VXLAN');
    t.is(preferred.seen.plaintext, 0);
    await eventually(
      'an EncryptionFallback Event on the Preferred pool',
      async () => {
        const ev = await kube.request<{ items: { reason?: string }[] }>(
          'GET',
          '/api/v1/events',
          undefined,
          { query: { fieldSelector: 'involvedObject.kind=IPPool,involvedObject.name=pref' } },
        );
        return ev.items.some((e) => e.reason === 'EncryptionFallback');
      },
      15_000,
    );
    const a = await status(nodeA);
    t.true(
      a.paths.events.some((e) => e.reason === 'EncryptionRequiredBlocked' && e.pool === 'secure'),
    );
  },
);
