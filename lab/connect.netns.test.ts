// Kernel test of `lab connect`: two labs' bridges and one node each (namespaces
// on the real kernel, without the control planes), plus a stand-in for "outside"
// (a namespace on a third host link, on which forwarding is switched on, the worst
// case). Connected, node A1 reaches node B1's underlay address and back, and cannot
// reach the outside even with a route there; disconnected, nothing is left.
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { defaultRunner, requireRoot, requireProgram } from '../sys/index.ts';
import { planLab, type LabPlan } from './plan.ts';
import { createBridge } from './nodes.ts';
import { connectLabs, disconnectLabs, planUnderlayConnection } from './connect.ts';

const run = (argv: string[]) => defaultRunner.run(argv);
const tryRun = (argv: string[]) => defaultRunner.run(argv, { allowFailure: true });
const inNs = (ns: string, argv: string[]) => tryRun(['ip', 'netns', 'exec', ns, ...argv]);
const ping = async (ns: string, ip: string) =>
  (await inNs(ns, ['ping', '-c', '1', '-W', '1', ip])).code === 0;
const sysctl = (path: string) => readFileSync(`/proc/sys/net/ipv4/${path}`, 'utf8').trim();

// Indexes no running lab takes (labs count up from 0), names reserved for this work.
const A = planLab('mca', 14, 1);
const B = planLab('mcb', 15, 1);
const OUTSIDE_NS = 'wmt-mcx-outside';
const OUTSIDE_LINK = 'wmt-mcx-out';

async function makeLab(p: LabPlan): Promise<void> {
  await mkdir(p.runDir, { recursive: true });
  await createBridge(defaultRunner, p.bridge, `${p.gatewayIP}/${p.prefixLength}`);
  for (const n of p.nodes) {
    await run(['ip', 'netns', 'add', n.netns]);
    await run([
      'ip',
      'link',
      'add',
      n.hostVeth,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      n.netns,
    ]);
    await run(['ip', 'link', 'set', n.hostVeth, 'master', p.bridge, 'up']);
    await run([
      'ip',
      '-n',
      n.netns,
      'addr',
      'add',
      `${n.underlayIP}/${p.prefixLength}`,
      'dev',
      'eth0',
    ]);
    await run(['ip', '-n', n.netns, 'link', 'set', 'eth0', 'up']);
    await run(['ip', '-n', n.netns, 'link', 'set', 'lo', 'up']);
  }
}

async function removeLab(p: LabPlan): Promise<void> {
  for (const n of p.nodes) await tryRun(['ip', 'netns', 'del', n.netns]);
  await tryRun(['ip', 'link', 'del', p.bridge]);
  await rm(p.runDir, { recursive: true, force: true });
}

test('lab connect: A1 reaches B1’s underlay and nothing outside; disconnect leaves nothing', async (t) => {
  requireRoot('the lab connect kernel test');
  for (const prog of ['ip', 'nft', 'ping', 'nsenter', 'sysctl'])
    await requireProgram(prog, 'install iproute2, nftables, iputils-ping, util-linux and procps');
  for (const p of [A, B]) {
    if (
      existsSync(`/sys/class/net/${p.bridge}`) ||
      existsSync(`/run/netns/${p.nodes[0]!.netns}`) ||
      existsSync(p.runDir)
    )
      throw new Error(
        `${p.bridge} or ${p.nodes[0]!.netns} exists: take lab ${p.name} down before this test`,
      );
  }
  const ipForward = sysctl('ip_forward');
  t.teardown(async () => {
    await disconnectLabs(defaultRunner, A, B).catch(() => {});
    await tryRun(['ip', 'netns', 'del', OUTSIDE_NS]);
    await tryRun(['ip', 'link', 'del', OUTSIDE_LINK]);
    for (const p of [A, B]) await removeLab(p);
  });
  await makeLab(A);
  await makeLab(B);
  // The outside: a namespace behind a host link that forwards (as a host's uplink may).
  await run(['ip', 'netns', 'add', OUTSIDE_NS]);
  await run([
    'ip',
    'link',
    'add',
    OUTSIDE_LINK,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    OUTSIDE_NS,
  ]);
  await run(['ip', 'addr', 'add', '198.51.100.1/24', 'dev', OUTSIDE_LINK]);
  await run(['ip', 'link', 'set', OUTSIDE_LINK, 'up']);
  await run(['sysctl', '-qw', `net.ipv4.conf.${OUTSIDE_LINK}.forwarding=1`]);
  await run(['ip', '-n', OUTSIDE_NS, 'addr', 'add', '198.51.100.2/24', 'dev', 'eth0']);
  await run(['ip', '-n', OUTSIDE_NS, 'link', 'set', 'eth0', 'up']);
  await run(['ip', '-n', OUTSIDE_NS, 'route', 'add', 'default', 'via', '198.51.100.1']);

  const [a1, b1] = [A.nodes[0]!, B.nodes[0]!];
  t.false(await ping(a1.netns, b1.underlayIP), 'before connecting, B1 is out of reach');
  t.true(await ping(OUTSIDE_NS, '198.51.100.1'), 'the outside answers the host (the path exists)');

  await connectLabs(defaultRunner, A, B);
  t.true(await ping(a1.netns, b1.underlayIP), 'A1 reaches B1');
  t.true(await ping(b1.netns, a1.underlayIP), 'B1 reaches A1');
  t.true(await ping(a1.netns, B.gatewayIP), 'A1 reaches B’s apiserver address');
  // Even with a route there, a node's packets do not leave the labs.
  await run(['ip', '-n', a1.netns, 'route', 'add', '198.51.100.0/24', 'via', A.gatewayIP]);
  await run([
    'ip',
    '-n',
    OUTSIDE_NS,
    'route',
    'add',
    A.gatewayIP.replace(/\.1$/, '.0/24'),
    'via',
    '198.51.100.1',
  ]);
  t.false(await ping(a1.netns, '198.51.100.2'), 'A1 does not reach the outside');
  t.false(await ping(OUTSIDE_NS, a1.underlayIP), 'the outside does not reach A1');
  t.is(sysctl('ip_forward'), ipForward, 'the host’s ip_forward is untouched');
  t.is(sysctl(`conf/${A.bridge}/forwarding`), '1');

  await disconnectLabs(defaultRunner, A, B);
  t.false(await ping(a1.netns, b1.underlayIP), 'disconnected, B1 is out of reach again');
  t.is(sysctl(`conf/${A.bridge}/forwarding`), '0');
  t.is(sysctl(`conf/${B.bridge}/forwarding`), '0');
  const table = planUnderlayConnection(A, B).table;
  t.is(
    (await tryRun(['nft', 'list', 'table', 'inet', table])).code === 0,
    false,
    `table ${table} is gone`,
  );
  const routes = (await run(['ip', '-n', a1.netns, 'route', 'show'])).stdout;
  t.false(routes.includes(B.gatewayIP.replace(/\.1$/, '.0/24')), 'the node route is gone');
});

test('lab connect: the plan, and a lab connects to one other lab at a time', async (t) => {
  const conn = planUnderlayConnection(B, A);
  t.is(conn.table, 'wml-connect-mca-mcb');
  t.deepEqual(conn.routes, [
    { netns: 'wml-mca-node1', dst: '198.18.15.0/24', via: '198.18.14.1' },
    { netns: 'wml-mcb-node1', dst: '198.18.14.0/24', via: '198.18.15.1' },
  ]);
  t.regex(conn.ruleset, /iifname \{ "wml-mca-br", "wml-mcb-br" \} drop/);
  t.regex(
    conn.ruleset,
    /iifname "wml-mca-br" oifname "wml-mca-br" accept/,
    'within a lab (br_netfilter)',
  );
  t.throws(() => planUnderlayConnection(A, A), { message: /to itself/ });
  await t.throwsAsync(connectLabs(defaultRunner, A, planLab('mcb', 13, 1)), {
    message: /no bridge/,
  });
});
