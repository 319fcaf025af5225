// The paths benchmark's BGP arm: one TCP stream (iperf3) between pods of a natively
// routed plaintext pool (encryption None, encapsulation None) on two nodes of two
// subnets, through the lab's router namespace, over the routes BGP taught the nodes and
// the router; against the same routes written by hand (`proto static`, a lower metric
// than BIRD's, so the kernel prefers them while they exist) on the same nodes, pods and
// router in the same run. Both sides cross the same veths, bridge and router: the ratio
// is what routing by BGP costs the packets themselves (a route through an odd device, a
// recursive next hop, a missing route mid-run), not the cost of running BIRD.
// Runs interleaved (BGP, hand, hand, BGP, ...) so drift on this shared machine hits both.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { figureOf, type Figure } from './harness.ts';
import { iperfMbits } from './paths.ts';
import { createPoolNamespace, Lab } from '../lab/index.ts';
import { kubeClient } from '../kube/index.ts';
import { defaultRunner, systemEnv, type Runner } from '../sys/index.ts';

const POOL = {
  name: 'native',
  cidr: '100.92.0.0/16',
  blockSize: 26,
  encryption: 'None',
  encapsulation: 'None',
};
/** Below BIRD's (1024 on the nodes, 32 on the router): the hand routes win while they exist. */
const HAND_METRIC = 10;

interface Route {
  dst: string;
  gateway?: string;
  protocol?: string;
  metric?: number;
}

async function routes(runner: Runner, dst: string): Promise<Route[]> {
  const res = await runner.run(['ip', '-j', 'route', 'show', 'exact', dst]);
  return JSON.parse(res.stdout || '[]') as Route[];
}

function blockOf(ip: string): string {
  const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
  return `${a}.${b}.${c}.${d - (d % 64)}/26`;
}

export async function benchPathsBgp(repeats: number): Promise<Figure[]> {
  const lab = await Lab.up({
    name: 'pathsbgp',
    nodes: 2,
    podsPerNode: 0,
    agents: true,
    subnets: 2,
  });
  const procs: ChildProcess[] = [];
  const handRoutes: { runner: Runner; dst: string; via: string }[] = [];
  try {
    const [a, b] = lab.plan.nodes;
    const router = lab.plan.router;
    if (!a || !b || !router) throw new Error('paths-bgp: need 2 nodes and the router');
    if (!a.crossSubnet || !b.crossSubnet) throw new Error('paths-bgp: the nodes share a subnet');
    const kube = kubeClient(lab.state.kubeconfig);
    await createPoolNamespace(kube, POOL);
    await sleep(2000);
    const podA = await lab.addPod(a.name, POOL.name, 'native-a');
    const podB = await lab.addPod(b.name, POOL.name, 'native-b');
    const ipA = podA.ips[0]?.split('/')[0] ?? '';
    const ipB = podB.ips[0]?.split('/')[0] ?? '';
    const [blockA, blockB] = [blockOf(ipA), blockOf(ipB)];
    const server = [
      ...lab.execPrefix({ pod: 'native-b', namespace: POOL.name }),
      ...['iperf3', '-s', '-B', ipB],
    ];
    procs.push(spawn(server[0] ?? '', server.slice(1), { stdio: 'ignore', env: systemEnv() }));

    const nodeA = lab.nodeRunner(a.name);
    const nodeB = lab.nodeRunner(b.name);
    const rtr: Runner = {
      run: (argv, opts) => defaultRunner.run(['ip', 'netns', 'exec', router.netns, ...argv], opts),
    };
    // BGP's routes in place: each node has the other's block from BIRD, through the
    // router, and the router has both.
    const learned = async (): Promise<boolean> => {
      for (const [runner, dst] of [
        [nodeA, blockB],
        [nodeB, blockA],
        [rtr, blockA],
        [rtr, blockB],
      ] as const) {
        if (!(await routes(runner, dst)).some((r) => r.protocol === 'bird')) return false;
      }
      return true;
    };
    for (let i = 0; !(await learned()); i++) {
      if (i > 300) throw new Error('paths-bgp: the BGP routes never appeared');
      await sleep(200);
    }

    handRoutes.push(
      { runner: nodeA, dst: blockB, via: a.crossSubnet.via },
      { runner: nodeB, dst: blockA, via: b.crossSubnet.via },
      { runner: rtr, dst: blockA, via: a.underlayIP },
      { runner: rtr, dst: blockB, via: b.underlayIP },
    );
    const setHand = async (on: boolean): Promise<void> => {
      for (const r of handRoutes) {
        const argv = ['ip', 'route', on ? 'replace' : 'del', r.dst, 'via', r.via];
        await r.runner.run([...argv, 'proto', 'static', 'metric', String(HAND_METRIC)], {
          allowFailure: !on,
        });
      }
      // The route the kernel picks is the lowest metric: check that each side really
      // runs over what it claims, BIRD's routes still there beside the hand ones.
      for (const r of handRoutes) {
        const list = await routes(r.runner, r.dst);
        const best = [...list].sort((x, y) => (x.metric ?? 0) - (y.metric ?? 0))[0];
        const want = on ? 'static' : 'bird';
        if (best?.protocol !== want)
          throw new Error(
            `paths-bgp: ${r.dst} goes by ${best?.protocol ?? 'nothing'}, not ${want}`,
          );
      }
    };

    const client = lab.execPrefix({ pod: 'native-a', namespace: POOL.name });
    const iperf = (reverse: boolean) => iperfMbits(client, ipB, reverse);
    await iperf(false); // warm-up
    const bgp = { ab: [] as number[], ba: [] as number[] };
    const hand = { ab: [] as number[], ba: [] as number[] };
    for (let i = 0; i < repeats; i++) {
      const order = i % 2 === 0 ? (['bgp', 'hand'] as const) : (['hand', 'bgp'] as const);
      for (const who of order) {
        await setHand(who === 'hand');
        const into = who === 'bgp' ? bgp : hand;
        into.ab.push(await iperf(false));
        into.ba.push(await iperf(true));
      }
    }
    await setHand(false);
    const round = (xs: number[]) => xs.map((x) => Math.round(x));
    process.stderr.write(
      `paths: BGP across subnets Mbit/s ${JSON.stringify({
        bgp: { ab: round(bgp.ab), ba: round(bgp.ba) },
        hand: { ab: round(hand.ab), ba: round(hand.ba) },
      })}\n`,
    );
    const figures: Figure[] = [];
    for (const [dir, label] of [
      ['ab', 'A->B'],
      ['ba', 'B->A'],
    ] as const) {
      const what = `TCP pod to pod ${label} across two subnets through a router, native pool over BGP-learned routes vs the same routes by hand`;
      figures.push(figureOf('paths', what, 'Mbit/s', bgp[dir], hand[dir]));
      const paired = bgp[dir].map((x, i) => x / (hand[dir][i] ?? NaN));
      const f = figureOf('paths', `${what}, median of paired ratios`, 'x', paired);
      figures.push({ ...f, ratio: f.value });
    }
    return figures;
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await sleep(300);
    await lab.down();
  }
}
