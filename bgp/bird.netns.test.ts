// Kernel tier: real BIRD 2 in throwaway network namespaces, driven only by BirdDaemon.
// Two nodes (AS 64512) on two subnets, 198.18.252.0/25 and 198.18.252.128/25, joined
// by a top-of-rack router namespace running its own hand-written BIRD (AS 65000, eBGP
// to both, forwarding between the subnets). The nodes also peer with each other (iBGP
// across the subnets), so a node learns the other's block with the other node as next
// hop, resolved recursively through its default route; the copy the router passes on
// carries AS 64512 in its path and is dropped as a loop. Then a reflector and two
// clients on one bridged subnet. Asserts what an operator would: sessions come up, the
// learned block lands in the main table as proto bird with our metric and carries
// plain (unencapsulated) pings, nothing outside the plaintext pool is installed, a
// crashed BIRD is started again, a stopped one's block disappears within seconds, and
// clients learn each other's blocks through the reflector.
import test from 'ava';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCapture } from '../kind-tests/probes.ts';
import { defaultRunner as runner, requireProgram, requireRoot } from '../sys/index.ts';
import { GOLDEN } from './golden.ts';
import type { BirdPlan } from './index.ts';
import { BIRD, BIRDC, Lab, METRIC, peer, plan, routerConfig, tor, type Node } from './netns-lab.ts';

const tag = process.pid % 100000;
const nsName = (s: string) => `wmb-${tag}-${s}`;
const R = { netns: nsName('r'), a: '198.18.252.1', b: '198.18.252.129' };
const node = (name: string, ip: string, block: string, gw?: string): Node => ({
  name,
  netns: nsName(name),
  ip,
  block,
  podIP: block.replace(/\d+\/26$/, (m) => String(Number(m.split('/')[0]) + 1)),
  ...(gw ? { gw } : {}),
});
const A = node('a', '198.18.252.2', '10.250.0.0/26', R.a);
const B = node('b', '198.18.252.130', '10.250.0.64/26', R.b);
// The reflector topology: one bridged subnet, 198.18.253.0/24, in a "switch" namespace.
const SW = nsName('sw');
const RR = node('rr', '198.18.253.1', '10.250.16.0/26');
const C1 = node('c1', '198.18.253.2', '10.250.16.64/26');
const C2 = node('c2', '198.18.253.3', '10.250.16.128/26');
const lab = new Lab();

// Each node takes the other's routes only for the blocks it owns (as IPAMBlocks say).
// 10.250.200.0/24: the block of a node behind the router (not one of the test's), which
// the router relays; 10.250.201.0/24, in the pool too, is no node's block.
const planA = (extra?: Partial<BirdPlan>) =>
  plan(A, [tor(A.gw), peer(B)], {
    nodeOrigins: { [B.ip]: [B.block], '198.18.252.200': ['10.250.200.0/24'] },
    ...extra,
  });
const planB = (ofA = [A.block]) => plan(B, [tor(B.gw), peer(A)], { nodeOrigins: { [A.ip]: ofA } });

/** Writes birdc's answer to WIREMESH_BGP_CAPTURE/NAME, to refresh bgp/fixtures by hand. */
async function capture(n: Node, name: string, args: string[]): Promise<void> {
  const to = process.env.WIREMESH_BGP_CAPTURE;
  if (to) await writeFile(join(to, name), await lab.daemon(n).birdcRun(args));
}

test.before(async () => {
  requireRoot('bgp/bird.netns.test.ts');
  for (const p of [BIRD, BIRDC]) {
    if (!existsSync(p))
      throw new Error(`bgp/bird.netns.test.ts needs ${p} (apt-get install bird2)`);
  }
  await requireProgram('tcpdump', 'install tcpdump');
  await lab.setUp(`wmb-${tag}`, [R.netns, A.netns, B.netns, SW, RR.netns, C1.netns, C2.netns]);
  // Forwarding on inside the router namespace only.
  await lab.exec(R.netns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  for (const [n, rif] of [
    [A, 'ra'],
    [B, 'rb'],
  ] as const) {
    await lab.wire(R.netns, rif, n.netns, 'eth0');
    await lab.exec(R.netns, ['ip', 'addr', 'add', `${n.gw}/25`, 'dev', rif]);
    await lab.exec(n.netns, ['ip', 'addr', 'add', `${n.ip}/25`, 'dev', 'eth0']);
    await lab.exec(n.netns, ['ip', 'route', 'add', 'default', 'via', n.gw ?? '']);
  }
  await lab.exec(SW, ['ip', 'link', 'add', 'br0', 'type', 'bridge']);
  await lab.exec(SW, ['ip', 'link', 'set', 'br0', 'up']);
  for (const n of [RR, C1, C2]) {
    await lab.wire(SW, `p-${n.name}`, n.netns, 'eth0');
    await lab.exec(SW, ['ip', 'link', 'set', `p-${n.name}`, 'master', 'br0']);
    await lab.exec(n.netns, ['ip', 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
  }
  // The "pod": an address of the node's block on lo, a source and target for pings.
  for (const n of [A, B, RR, C1, C2])
    await lab.exec(n.netns, ['ip', 'addr', 'add', `${n.podIP}/32`, 'dev', 'lo']);
  await lab.startRouter(R.netns, routerConfig(R.a, [A, B]));
});

test.after.always(() => lab.cleanup());

test.serial('BIRD parses every golden bird.conf', async (t) => {
  for (const name of Object.keys(GOLDEN)) {
    const file = join(import.meta.dirname, 'fixtures', `${name}.conf`);
    const res = await runner.run([BIRD, '-p', '-c', file], { allowFailure: true });
    t.is(res.code, 0, `${name}.conf: ${res.stderr}`);
  }
});

test.serial('nodes on two subnets reach Established with the router and each other', async (t) => {
  t.deepEqual(await lab.daemon(A).apply(planA()), { changed: true, started: true, running: true });
  t.deepEqual(await lab.daemon(B).apply(planB()), {
    changed: true,
    started: true,
    running: true,
  });
  const started = Date.now();
  await lab.waitFor('A and B Established', async () =>
    (await lab.established(A, 2)) ? lab.established(B, 2) : undefined,
  );
  t.log(`sessions Established ${Date.now() - started} ms after both BIRDs answered`);
  const sessions = await lab.daemon(A).sessions();
  t.deepEqual(sessions.map((s) => [s.name, s.neighborAddress, s.neighborAS]).sort(), [
    ['node_b', B.ip, 64512],
    ['tor', R.a, 65000],
  ]);
  await capture(A, 'show-protocols.txt', ['show', 'protocols']);
  await capture(A, 'show-protocols-all.txt', ['show', 'protocols', 'all']);
  await capture(A, 'show-route-count.txt', ['show', 'route', 'table', 'all', 'count']);
});

test.serial(
  "A installs B's block as proto bird via the router; pings go plainly routed",
  async (t) => {
    const route = await lab.waitFor("B's block in A's main table", async () =>
      (await lab.birdRoutes(A)).find((r) => r.dst === B.block),
    );
    // Next hop B (another subnet), resolved recursively: the kernel route is via the router.
    t.like(route, { gateway: R.a, dev: 'eth0', metric: METRIC });
    const cap = await startCapture(
      ['ip', 'netns', 'exec', R.netns],
      'rb',
      'ip and not tcp port 179',
      join(lab.dir, 'rb.pcap'),
    );
    const ping = await lab.exec(
      A.netns,
      ['ping', '-c', '2', '-i', '0.2', '-W', '2', '-I', A.podIP, B.podIP],
      true,
    );
    const { lines } = await cap.stop();
    t.is(ping.code, 0, ping.stdout + ping.stderr);
    t.true(lines.length >= 4, lines.join('\n'));
    const plain = new RegExp(`IP (${A.podIP} > ${B.podIP}|${B.podIP} > ${A.podIP}): ICMP echo`);
    for (const l of lines) t.regex(l, plain, 'plain ICMP between the blocks, no tunnel');
  },
);

test.serial('nothing outside the plaintext pool is installed or imported', async (t) => {
  // The router announces 10.250.200.0/24 (a node's block in the pool: the positive
  // control), 10.250.201.0/24 (in the pool, but no node's block), 10.251.0.0/24
  // (encrypted pool), a default route and B's underlay subnet.
  await lab.waitFor('the router-announced pool route on A', async () =>
    (await lab.birdRoutes(A)).find((r) => r.dst === '10.250.200.0/24'),
  );
  const dsts = (await lab.birdRoutes(A)).map((r) => r.dst).sort();
  t.deepEqual(dsts, [B.block, '10.250.200.0/24'].sort());
  const fromTor = (await lab.daemon(A).sessions()).find((s) => s.name === 'tor');
  // Of the router's own five only the node's block; and B's block, which the router
  // relays (our AS in its path: `allow local as`).
  t.is(fromTor?.importedRoutes, 2, "of the router's routes only nodes' blocks are imported");
  const master = await lab.daemon(A).birdcRun(['show', 'route', 'table', 'master4']);
  for (const bad of ['10.250.201.0/24', '10.251.0.0/24', '0.0.0.0/0', '198.18.252.128/25'])
    t.false(master.includes(bad), master);
});

test.serial("the agent's own route for a block wins, and BIRD leaves it alone", async (t) => {
  // The agent's route for the block (its own proto, a lower metric); unreachable, so
  // which route the kernel picks shows in the answer.
  const agent = ['unreachable', B.block, 'proto', '251', 'metric', '100'];
  await lab.exec(A.netns, ['ip', 'route', 'add', ...agent]);
  await sleep(11_000); // past a full kernel scan (scan time 10)
  const all = await lab.exec(A.netns, ['ip', '-4', 'route', 'show', B.block]);
  t.regex(all.stdout, /unreachable .*proto 251 metric 100/, all.stdout);
  t.regex(all.stdout, /via 198\.18\.252\.1 .*proto bird metric 1024/, all.stdout);
  const get = () => lab.exec(A.netns, ['ip', '-4', 'route', 'get', B.podIP], true);
  t.not((await get()).code, 0, 'the kernel picks the agent route');
  await lab.exec(A.netns, ['ip', 'route', 'del', ...agent]);
  t.regex((await get()).stdout, /via 198\.18\.252\.1 dev eth0/, 'then the BIRD route');
});

test.serial(
  "the same plan again changes nothing; a block B does not know as A's is refused until it does",
  async (t) => {
    t.deepEqual(await lab.daemon(A).apply(planA()), {
      changed: false,
      started: false,
      running: true,
    });
    const pid = lab.daemon(A).pid;
    const extra = '10.250.1.0/26';
    t.deepEqual(await lab.daemon(A).apply(planA({ announce: [A.block, extra] })), {
      changed: true,
      started: false,
      running: true,
    });
    t.is(lab.daemon(A).pid, pid, 'the same BIRD, reconfigured');
    await lab.waitFor('A exporting two blocks to B', async () =>
      (await lab.daemon(A).sessions()).find((s) => s.name === 'node_b' && s.exportedRoutes === 2),
    );
    await sleep(1000);
    const master = await lab.daemon(B).birdcRun(['show', 'route', 'table', 'master4']);
    t.false(master.includes(extra), `not A's block by B's nodeOrigins:\n${master}`);
    t.deepEqual(await lab.daemon(B).apply(planB([A.block, extra])), {
      changed: true,
      started: false,
      running: true,
    });
    const r = await lab.waitFor('the new block on B', async () =>
      (await lab.birdRoutes(B)).find((x) => x.dst === extra),
    );
    t.like(r, { gateway: R.b, metric: METRIC });
  },
);

test.serial('a BIRD that dies is started again and its sessions come back', async (t) => {
  const d = lab.daemon(A);
  const old = d.pid ?? 0;
  const restarted = new Promise<number>((resolve) => d.once('restarted', resolve));
  process.kill(old, 'SIGKILL');
  const pid = await restarted;
  t.not(pid, old);
  await lab.waitFor('A Established again', () => lab.established(A, 2));
  // Established comes before the routes' exchange and their way into the kernel.
  const want = [B.block, '10.250.200.0/24'].sort();
  const dstsNow = async () => (await lab.birdRoutes(A)).map((r) => r.dst).sort();
  await lab.waitFor('A has its routes again', async () =>
    (await dstsNow()).length >= want.length ? true : undefined,
  );
  t.deepEqual(await dstsNow(), want, 'no stale or doubled routes');
});

test.serial("a silent B's block is withdrawn by the hold timer (9 s)", async (t) => {
  // B's link goes down: no Cease reaches A over the multihop iBGP session.
  const started = Date.now();
  await lab.exec(B.netns, ['ip', 'link', 'set', 'eth0', 'down']);
  await lab.waitFor(
    "B's block gone from A",
    async () => ((await lab.birdRoutes(A)).some((r) => r.dst === B.block) ? undefined : true),
    15_000,
  );
  const ms = Date.now() - started;
  t.log(`withdrawn from A's main table ${ms} ms after B went silent`);
  t.true(ms >= 3000 && ms < 15_000, `${ms} ms`);
  // Back: the link (its default route went with it), the sessions, the block.
  await lab.exec(B.netns, ['ip', 'link', 'set', 'eth0', 'up']);
  await lab.exec(B.netns, ['ip', 'route', 'replace', 'default', 'via', B.gw ?? '']);
  await lab.waitFor("B's block back on A", async () =>
    (await lab.birdRoutes(A)).find((r) => r.dst === B.block),
  );
});

test.serial(
  "stopping B's BIRD withdraws B's block from A's main table within seconds",
  async (t) => {
    t.truthy((await lab.birdRoutes(A)).find((r) => r.dst === B.block));
    const started = Date.now();
    await lab.daemon(B).stop();
    await lab.waitFor(
      "B's block gone from A",
      async () => ((await lab.birdRoutes(A)).some((r) => r.dst === B.block) ? undefined : true),
      15_000,
    );
    const ms = Date.now() - started;
    t.log(`withdrawn from A's main table ${ms} ms after stop() began`);
    t.true(ms < 15_000);
    t.deepEqual(await lab.birdRoutes(B), [], 'B removed the routes it had installed');
    t.truthy(
      (await lab.birdRoutes(A)).find((r) => r.dst === '10.250.200.0/24'),
      'A keeps the rest',
    );
    const down = (await lab.daemon(A).sessions()).find((s) => s.name === 'node_b');
    t.not(down?.info, 'Established');
    await capture(A, 'show-protocols-all-down.txt', ['show', 'protocols', 'all', 'node_b']);
  },
);

test.serial(
  "a reflector's clients learn each other's blocks, next hop the originating client",
  async (t) => {
    const clients = [peer(C1, 'client'), peer(C2, 'client')];
    const nodeOrigins = Object.fromEntries([RR, C1, C2].map((n) => [n.ip, [n.block]]));
    await lab.daemon(RR).apply(plan(RR, clients, { reflectorClusterId: RR.ip, nodeOrigins }));
    await lab.daemon(C1).apply(plan(C1, [peer(RR, 'reflector')], { nodeOrigins }));
    await lab.daemon(C2).apply(plan(C2, [peer(RR, 'reflector')], { nodeOrigins }));
    await lab.waitFor('reflector sessions', async () =>
      (await lab.established(RR, 2)) && (await lab.established(C1, 1))
        ? lab.established(C2, 1)
        : undefined,
    );
    for (const [self, other] of [
      [C1, C2],
      [C2, C1],
    ] as const) {
      const r = await lab.waitFor(`${other.name}'s block on ${self.name}`, async () =>
        (await lab.birdRoutes(self)).find((x) => x.dst === other.block),
      );
      t.like(r, { gateway: other.ip, metric: METRIC }, 'reflected, the next hop unchanged');
      t.like(
        (await lab.birdRoutes(self)).find((x) => x.dst === RR.block),
        { gateway: RR.ip },
      );
    }
    const ping = await lab.exec(
      C1.netns,
      ['ping', '-c', '1', '-W', '2', '-I', C1.podIP, C2.podIP],
      true,
    );
    t.is(ping.code, 0, ping.stdout + ping.stderr);
  },
);
