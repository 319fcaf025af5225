// Throughput of each per-pool path (issue #5): one TCP stream (iperf3) between two
// pods on two lab nodes (lab `pools`), over the path the agent set up for their pool
// (WireGuard, VXLAN, native routing), in both directions, against the same topology
// built by hand in the same run. The baseline is like for like: two throwaway "hand
// nodes" on the lab's underlay bridge (addresses .201 and .202 of the lab's /24, no
// agent, no nftables), each with a "hand pod" wired the way the CNI plugin wires one
// (veth pair, /32 on the pod end, default route via 169.254.1.1 with a permanent
// neighbour, a /32 route to the host end), and between the hand nodes the same kind
// of device the agent uses (wireguard-go, the VXLAN device with FDB, neighbour and
// onlink route, a plain route via the peer's underlay address), with the MTUs read
// from the agent's devices and pods. So pod netns -> veth -> node -> device ->
// underlay -> node -> veth -> pod netns on both sides; a ratio below 1 is what the
// agent's node adds (its nftables, its policy routing), not a missing hop.
// Medians over repeats, runs interleaved (agent, hand, agent reversed, hand reversed)
// so drift on this shared machine hits both sides alike.
//
// Three settings, in one lab, the pools changed at runtime between them: plaintext
// pools only (the lab's default pool and `secure` without encryption) for VXLAN and
// native; the three pools side by side with the default pool, `secure` and the default
// pool encrypted (mixed: the agent adds `from POOL lookup 51826` rules for the
// encrypted pools; measured first against hand nodes without rules, so the ratio
// includes what policy routing costs every route lookup, then against hand nodes
// given the same rules, so the ratio is what the agent adds beyond them); then all
// pools encrypted for WireGuard. In the first setting neither side has ever had an
// ip rule, in the last both sides had them and lost them: the ratio is the path itself.
//
// The hand namespaces are named like the lab's own (`wml-pools-h*`, `wmp-pools-h*`)
// and the host ends of their underlay veths `wml-pools-h*`, so `lab down` removes
// them too if this process dies before its own clean-up.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { figureOf, type Figure } from './harness.ts';
import { generateKeyPair } from '../crypto/index.ts';
import { createPoolNamespace, Lab, patchPoolSpec } from '../lab/index.ts';
import { kubeClient } from '../kube/index.ts';
import { defaultRunner, IpCli, systemEnv, toolPath, type Runner } from '../sys/index.ts';
import { ENCRYPT_ROUTE_TABLE, WgCli } from '../tunnels/index.ts';

const POOLS = [
  { name: 'secure', cidr: '100.90.0.0/16', encryption: 'WireGuard', encapsulation: 'None' },
  { name: 'plain', cidr: '100.91.0.0/16', encryption: 'None', encapsulation: 'VXLAN' },
  { name: 'native', cidr: '100.92.0.0/16', encryption: 'None', encapsulation: 'None' },
] as const;
type PathName = 'WireGuard' | 'VXLAN' | 'native';
const CASES: { path: PathName; pool: string }[] = [
  { path: 'WireGuard', pool: 'secure' },
  { path: 'VXLAN', pool: 'plain' },
  { path: 'native', pool: 'native' },
];

/** One hand node and its hand pod. */
interface HandSide {
  node: string;
  hostVeth: string;
  underlayIP: string;
  pod: string;
  podIP: string;
  /** Host end of the pod's veth, in the hand node. */
  podVeth: string;
  wg: string;
  vtepIP: string;
  vtepMac: string;
}

function handSides(lab: Lab): [HandSide, HandSide] {
  const k = lab.plan.index;
  const side = (i: 1 | 2): HandSide => ({
    node: `wml-pools-hand${i}`,
    hostVeth: `wml-pools-h${i}`,
    underlayIP: `198.18.${k}.${200 + i}`,
    pod: `wmp-pools-hpod${i}`,
    podIP: `100.127.${i}.2`,
    podVeth: `hpod${i}`,
    // wireguard-go's UAPI socket lands in the host's /run/wireguard: a unique name.
    wg: `pools-hwg${i}`,
    vtepIP: `100.126.0.${i}`,
    vtepMac: `02:00:00:00:7e:0${i}`,
  });
  return [side(1), side(2)];
}

const nsRunner = (netns: string): Runner => ({
  run: (argv, opts) =>
    defaultRunner.run(['nsenter', `--net=/run/netns/${netns}`, '--', ...argv], opts),
});

interface Mtus {
  wireguard: number;
  vxlan: number;
  /** The agent's pod MTU of each case's pool. */
  pod: Record<PathName, number>;
}

/** Build both hand nodes, their pods and the three devices between them. */
async function buildHand(
  lab: Lab,
  sides: [HandSide, HandSide],
  mtus: Mtus,
  procs: ChildProcess[],
): Promise<void> {
  const run = (argv: string[]) => defaultRunner.run(argv);
  const keys = [generateKeyPair(), generateKeyPair()];
  for (const [i, s] of sides.entries()) {
    const inNode = nsRunner(s.node);
    const inPod = nsRunner(s.pod);
    await run(['ip', 'netns', 'add', s.node]);
    await run(['ip', 'netns', 'add', s.pod]);
    await run([
      ...['ip', 'link', 'add', s.hostVeth, 'type', 'veth'],
      ...['peer', 'name', 'eth0', 'netns', s.node],
    ]);
    await run(['ip', 'link', 'set', s.hostVeth, 'master', lab.plan.bridge, 'up']);
    for (const argv of [
      ['ip', 'link', 'set', 'lo', 'up'],
      ['ip', 'addr', 'add', `${s.underlayIP}/${lab.plan.prefixLength}`, 'dev', 'eth0'],
      ['ip', 'link', 'set', 'eth0', 'up'],
      ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
    ])
      await inNode.run(argv);
    // The pod, wired as cni/podnet.ts wires one.
    const hostMac = `02:00:00:00:7f:0${i + 1}`;
    await inNode.run([
      ...['ip', 'link', 'add', s.podVeth, 'address', hostMac, 'type', 'veth'],
      ...['peer', 'name', 'eth0', 'netns', `/run/netns/${s.pod}`],
    ]);
    await inNode.run(['ip', 'link', 'set', s.podVeth, 'up']);
    await inNode.run(['ip', 'route', 'add', `${s.podIP}/32`, 'dev', s.podVeth, 'scope', 'link']);
    await inNode.run(['sysctl', '-qw', `net.ipv4.conf.${s.podVeth}.proxy_arp=1`]);
    for (const argv of [
      ['ip', 'link', 'set', 'lo', 'up'],
      ['ip', 'link', 'set', 'eth0', 'up'],
      ['ip', 'addr', 'add', `${s.podIP}/32`, 'dev', 'eth0'],
      ['ip', 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link'],
      [
        'ip',
        'neigh',
        'replace',
        '169.254.1.1',
        'lladdr',
        hostMac,
        'dev',
        'eth0',
        'nud',
        'permanent',
      ],
      ['ip', 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0'],
    ])
      await inPod.run(argv);
  }
  for (const [i, s] of sides.entries()) {
    const o = sides[1 - i] as HandSide;
    const inNode = nsRunner(s.node);
    // wireguard-go, as the agent runs it (tunnels/userspace.ts), and placed as the
    // agent's is: in a session of its own (detached: setsid). With the kernel's
    // autogroup scheduling (sched_autogroup_enabled=1 here) CPU is shared between
    // sessions first; a hand wireguard-go left in this process's session, with the
    // iperf3 clients, got a different share than the agents' and ran 5-15% faster
    // than the same device in its own session (measured by hand, lab `w`, both
    // ways round). Like for like, then.
    const argv = ['nsenter', `--net=/run/netns/${s.node}`, '--', toolPath('wireguard-go')];
    const wg = spawn(argv[0] ?? '', [...argv.slice(1), '-f', s.wg], {
      stdio: 'ignore',
      detached: true,
      env: systemEnv({ WG_PROCESS_FOREGROUND: '1' }),
    });
    procs.push(wg);
    for (let n = 0; n < 100; n++) {
      if ((await inNode.run(['ip', 'link', 'show', s.wg], { allowFailure: true })).code === 0)
        break;
      await sleep(100);
    }
    const cli = new WgCli(inNode);
    await cli.setPrivateKey(s.wg, keys[i]?.privateKey ?? '');
    await cli.setListenPort(s.wg, 51825);
    await cli.setPeer(s.wg, {
      publicKey: keys[1 - i]?.publicKey ?? '',
      endpoint: `${o.underlayIP}:51825`,
      allowedIPs: [`${o.podIP}/32`],
      persistentKeepalive: 0,
    });
    await inNode.run(['ip', 'link', 'set', s.wg, 'mtu', String(mtus.wireguard), 'up']);
    // The VXLAN device, as tunnels/vxlan.ts builds wiremesh.vxlan.
    await inNode.run([
      ...['ip', 'link', 'add', 'handvx', 'address', s.vtepMac, 'type', 'vxlan', 'id', '4100'],
      ...['dstport', '4789', 'local', s.underlayIP, 'nolearning'],
    ]);
    await inNode.run(['ip', 'addr', 'add', `${s.vtepIP}/32`, 'dev', 'handvx']);
    await inNode.run(['ip', 'link', 'set', 'handvx', 'mtu', String(mtus.vxlan), 'up']);
    await inNode.run([
      ...['bridge', 'fdb', 'append', o.vtepMac, 'dev', 'handvx', 'dst', o.underlayIP],
    ]);
    await inNode.run([
      ...['ip', 'neigh', 'replace', o.vtepIP, 'lladdr', o.vtepMac, 'dev', 'handvx'],
      ...['nud', 'permanent'],
    ]);
    // Loose reverse-path filtering on the tunnel devices, as agent/pathdriver.ts sets it.
    for (const dev of [s.wg, 'handvx'])
      await inNode.run(['sysctl', '-qw', `net.ipv4.conf.${dev}.rp_filter=2`]);
  }
}

/** Point each hand node's route to the other hand pod at `path`'s device, with its pod MTU. */
async function routeHand(sides: [HandSide, HandSide], path: PathName, mtu: number): Promise<void> {
  for (const [i, s] of sides.entries()) {
    const o = sides[1 - i] as HandSide;
    const via =
      path === 'WireGuard'
        ? ['dev', s.wg]
        : path === 'VXLAN'
          ? ['via', o.vtepIP, 'dev', 'handvx', 'onlink']
          : ['via', o.underlayIP, 'dev', 'eth0'];
    await nsRunner(s.node).run(['ip', 'route', 'replace', `${o.podIP}/32`, ...via]);
    await nsRunner(s.node).run(['ip', 'link', 'set', s.podVeth, 'mtu', String(mtu)]);
    await nsRunner(s.pod).run(['ip', 'link', 'set', 'eth0', 'mtu', String(mtu)]);
  }
}

/**
 * Give both hand nodes the policy rules the agent's node `agentNode` has now (`from
 * POOL lookup 51826`, same selectors and priority) and a table 51826 with the route
 * to the other hand pod over the hand WireGuard device, as the agent's table holds its
 * remote blocks. The hand pods are in none of those pools, like the plaintext pods
 * measured: their packets only pay the lookups. Returns the number of rules copied.
 */
async function copySourceRules(agentNode: Runner, sides: [HandSide, HandSide]): Promise<number> {
  const rules = await new IpCli(agentNode).sourceRuleList(ENCRYPT_ROUTE_TABLE);
  for (const [i, s] of sides.entries()) {
    const o = sides[1 - i] as HandSide;
    const inNode = nsRunner(s.node);
    for (const rule of rules) await new IpCli(inNode).sourceRuleAdd(rule);
    await inNode.run([
      ...['ip', 'route', 'replace', `${o.podIP}/32`, 'dev', s.wg],
      ...['table', String(ENCRYPT_ROUTE_TABLE)],
    ]);
  }
  return rules.length;
}

/** Remove the copied rules again (the agent removes its own when no pool is plaintext). */
async function dropSourceRules(sides: [HandSide, HandSide]): Promise<void> {
  for (const s of sides) {
    const ip = new IpCli(nsRunner(s.node));
    for (const rule of await ip.sourceRuleList(ENCRYPT_ROUTE_TABLE)) await ip.sourceRuleDel(rule);
  }
}

async function removeHand(sides: [HandSide, HandSide]): Promise<void> {
  for (const s of sides) {
    for (const ns of [s.pod, s.node])
      await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
    await defaultRunner.run(['ip', 'link', 'del', s.hostVeth], { allowFailure: true });
  }
}

/** One 3 s iperf3 stream from `prefix`'s namespace to `dst` (reversed: `dst` sends), Mbit/s. */
export async function iperfMbits(prefix: string[], dst: string, reverse: boolean): Promise<number> {
  const argv = [...prefix, 'iperf3', '-c', dst, '-t', '3', '-O', '1', '-J'];
  const res = await defaultRunner.run([...argv, ...(reverse ? ['-R'] : [])], {
    timeoutMs: 30_000,
  });
  const out = JSON.parse(res.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return out.end.sum_received.bits_per_second / 1e6;
}

async function linkMtu(runner: Runner, dev: string): Promise<number> {
  const res = await runner.run(['ip', '-j', 'link', 'show', dev]);
  const mtu = (JSON.parse(res.stdout) as { mtu?: number }[])[0]?.mtu;
  if (!mtu) throw new Error(`no MTU for ${dev}`);
  return mtu;
}

/** True when either node has a policy-routing rule of the agent's (table 51826). */
async function sourceRules(nodes: Runner[]): Promise<boolean> {
  for (const node of nodes)
    if ((await new IpCli(node).sourceRuleList(ENCRYPT_ROUTE_TABLE)).length) return true;
  return false;
}

async function until(what: string, done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await done()) return;
    await sleep(100);
  }
  throw new Error(`paths: timed out waiting for ${what}`);
}

async function untilNoSourceRules(nodes: Runner[]): Promise<void> {
  await until('the source rules to go', async () => !(await sourceRules(nodes)));
  await sleep(2000); // the rest of the pass (routes, nftables guard) settles
}

async function setPools(
  kube: ReturnType<typeof kubeClient>,
  encryption: Record<string, 'WireGuard' | 'None'>,
): Promise<void> {
  for (const [pool, value] of Object.entries(encryption))
    // A Required pool cannot go without encryption: Preferred first.
    await patchPoolSpec(
      kube,
      pool,
      value === 'None' ? { encryption: value, encryptionMode: 'Preferred' } : { encryption: value },
    );
}

export async function benchPaths(repeats: number): Promise<Figure[]> {
  const lab = await Lab.up({ name: 'pools', nodes: 2, podsPerNode: 0, agents: true });
  const procs: ChildProcess[] = [];
  const sides = handSides(lab);
  try {
    const [a, b] = lab.plan.nodes;
    if (!a || !b) throw new Error('need 2 nodes');
    const kube = kubeClient(lab.state.kubeconfig);
    // Plaintext pools only to begin with (see the settings below): the lab's default
    // pool and `secure` are encrypted from the second setting on.
    await setPools(kube, { 'default-ipv4': 'None' });
    for (const p of POOLS) {
      await createPoolNamespace(kube, Object.assign({}, p, { encryption: 'None' }));
    }
    await sleep(2000);
    const podIP: Record<string, string> = {};
    for (const p of POOLS) {
      await lab.addPod(a.name, p.name, `${p.name}-a`);
      const pb = await lab.addPod(b.name, p.name, `${p.name}-b`);
      podIP[p.name] = pb.ips[0]?.split('/')[0] ?? '';
      const argv = [
        ...lab.execPrefix({ pod: `${p.name}-b`, namespace: p.name }),
        ...['iperf3', '-s', '-B', podIP[p.name] ?? ''],
      ];
      procs.push(spawn(argv[0] ?? '', argv.slice(1), { stdio: 'ignore', env: systemEnv() }));
    }

    // The MTUs the agent chose, read from its devices and pods.
    const nodeA = lab.nodeRunner(a.name);
    const podMtu = async (pool: string) => linkMtu(lab.podRunner(`${pool}-a`, pool), 'eth0');
    const mtus: Mtus = {
      wireguard: await linkMtu(nodeA, 'wiremesh.wg'),
      vxlan: await linkMtu(nodeA, 'wiremesh.vxlan'),
      pod: {
        WireGuard: await podMtu('secure'),
        VXLAN: await podMtu('plain'),
        native: await podMtu('native'),
      },
    };
    process.stderr.write(`paths: MTUs ${JSON.stringify(mtus)}\n`);
    await buildHand(lab, sides, mtus, procs);
    const [h1, h2] = sides;
    const handServer = ['nsenter', `--net=/run/netns/${h2.pod}`, '--'];
    procs.push(
      spawn(handServer[0] ?? '', [...handServer.slice(1), 'iperf3', '-s', '-B', h2.podIP], {
        stdio: 'ignore',
        env: systemEnv(),
      }),
    );
    await sleep(1000);

    const handPod = ['nsenter', `--net=/run/netns/${h1.pod}`, '--'];
    const figures: Figure[] = [];
    const measure = async (c: (typeof CASES)[number], setting: string): Promise<void> => {
      await routeHand(sides, c.path, mtus.pod[c.path]);
      const pod = lab.execPrefix({ pod: `${c.pool}-a`, namespace: c.pool });
      const dst = podIP[c.pool] ?? '';
      await iperfMbits(pod, dst, false); // warm-up (and the WireGuard handshakes)
      await iperfMbits(handPod, h2.podIP, false);
      const agent = { ab: [] as number[], ba: [] as number[] };
      const hand = { ab: [] as number[], ba: [] as number[] };
      // A B B A, then B A A B: each side goes first as often, so a linear drift in
      // the machine's load cancels out of the pairs.
      for (let i = 0; i < repeats; i++) {
        const order = i % 2 === 0 ? (['agent', 'hand'] as const) : (['hand', 'agent'] as const);
        for (const reverse of [false, true]) {
          const dir = reverse ? 'ba' : 'ab';
          for (const who of reverse ? [...order].reverse() : order) {
            if (who === 'agent') agent[dir].push(await iperfMbits(pod, dst, reverse));
            else hand[dir].push(await iperfMbits(handPod, h2.podIP, reverse));
          }
        }
      }
      const round = (xs: number[]) => xs.map((x) => Math.round(x));
      process.stderr.write(
        `paths: ${c.path} (${setting}) Mbit/s ${JSON.stringify({
          agent: { ab: round(agent.ab), ba: round(agent.ba) },
          hand: { ab: round(hand.ab), ba: round(hand.ba) },
        })}\n`,
      );
      for (const [dir, label] of [
        ['ab', 'A->B'],
        ['ba', 'B->A'],
      ] as const) {
        const what = `TCP pod to pod ${label} over the agent's ${c.path} path vs the same built by hand, ${setting}`;
        figures.push(figureOf('paths', what, 'Mbit/s', agent[dir], hand[dir]));
        // The same runs as pairs (each agent run over the hand run next to it): less
        // sensitive to the load changing between repeats than the ratio of medians.
        const paired = agent[dir].map((x, i) => x / (hand[dir][i] ?? NaN));
        const f = figureOf('paths', `${what}, median of paired ratios`, 'x', paired);
        figures.push({ ...f, ratio: f.value });
      }
    };
    const nodes = [lab.nodeRunner(a.name), lab.nodeRunner(b.name)];
    // 1. Plaintext pools only: VXLAN and native, on nodes that never had an ip rule.
    //    (The kernel never takes back the slower route lookups once a rule was added
    //    to a namespace, even after the rule is gone: fib_has_custom_rules stays set and
    //    the local and main tables stay apart. So this setting comes first.)
    if (await sourceRules(nodes)) throw new Error('plaintext pools only, yet source rules');
    for (const c of CASES.filter((x) => x.path !== 'WireGuard'))
      await measure(c, 'plaintext pools only');
    // 2. The three pools side by side, with the lab's default pool, both encrypted. The
    //    encrypted pools' traffic to the plaintext pools' blocks must stay encrypted, so
    //    both nodes carry `from POOL lookup 51826` rules, and any ip rule slows every
    //    route lookup of the node (the hand nodes have none: this is what mixing costs).
    await setPools(kube, { secure: 'WireGuard', 'default-ipv4': 'WireGuard' });
    await until('the source rules', () => sourceRules(nodes));
    await sleep(2000);
    for (const c of CASES) await measure(c, 'mixed pools');
    //    The same plaintext paths against hand nodes given the same rules: what the
    //    agent's node adds beyond the policy routing that mixing needs.
    if ((await copySourceRules(nodes[0] as Runner, sides)) === 0)
      throw new Error('mixed pools, yet no source rule to copy');
    for (const c of CASES.filter((x) => x.path !== 'WireGuard'))
      await measure(c, 'mixed pools, hand nodes with the same ip rules');
    await dropSourceRules(sides);
    // 3. All pools encrypted: WireGuard, no ip rule left (though route lookups may stay
    //    as slow as in 2, see 1).
    await setPools(kube, { plain: 'WireGuard', native: 'WireGuard' });
    await until('the plaintext pools to be encrypted', async () => {
      const res = await nodes[0]?.run(['ip', 'route', 'get', podIP.plain ?? '']);
      return res?.stdout.includes('dev wiremesh.wg') ?? false;
    });
    await untilNoSourceRules(nodes);
    for (const c of CASES.filter((x) => x.path === 'WireGuard'))
      await measure(c, 'encrypted pools only');
    return figures;
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await sleep(300);
    await removeHand(sides);
    await lab.down();
  }
}
