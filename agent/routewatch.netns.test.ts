// Kernel tier: the route watch on the real `ip monitor`, in a throwaway namespace set
// up like a node: an underlay device with its connected route, a pod's veth with its
// host route (protocol 252), a mesh route (251), an encrypted pool's rule and table
// route (51826, 253), and an operator's own static route. Asserts what an operator
// would check: the agent's own deletions are no damage, `ip route flush table main`
// is reported once naming what the node needs (and not the operator's route), the
// repair puts the main table back as it was (but the operator's route), a pod's veth
// deleted is no damage, and a killed monitor is restarted and reports the gap.
// The repair: the removed routes written back as they were, and the host-route
// repair of a resync (pod routes from IPAM and veths, the connected route).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostVethName } from '../cni/index.ts';
import { IpCli, PrefixRunner, defaultRunner, requireRoot } from '../sys/index.ts';
import {
  RouteWatch,
  announceDeletions,
  type RouteEvent,
  type WatchedRoutes,
} from './routewatch.ts';
import { restoreHostRoutes, restoreRemovedRoutes } from './routerepair.ts';

async function until(what: () => boolean, ms = 5000): Promise<boolean> {
  for (let i = 0; i < ms / 20 && !what(); i++) await sleep(20);
  return what();
}

const WATCHED: WatchedRoutes = {
  protocols: [251, 252, 253],
  tables: [51825, 51826],
  connectedDevs: ['uplink'],
};

test.serial('route damage is seen at once, the agent’s own deletions are not', async (t) => {
  requireRoot('the route watch test (network namespaces)');
  const ns = `wmrw${process.pid}`;
  const sh = (...argv: string[]) => defaultRunner.run(['ip', '-n', ns, ...argv]);
  const veth = hostVethName('default', 'rw-a');
  const veth6 = hostVethName('default', 'rw-b');
  await defaultRunner.run(['ip', 'netns', 'add', ns]);
  const damage: string[][] = [];
  const events: RouteEvent[][] = [];
  const unseen: string[] = [];
  const errors: string[] = [];
  const seenAt: number[] = [];
  const watch = new RouteWatch({
    prefix: ['ip', 'netns', 'exec', ns],
    watched: () => WATCHED,
    onDamage: (removed) => {
      seenAt.push(Date.now());
      events.push([...removed]);
      damage.push(removed.map((e) => e.text));
    },
    onUnseen: (r) => unseen.push(r),
    onError: (e) => errors.push(e.message),
    linkUp: (dev) => {
      try {
        const out = execFileSync('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'ignore'],
        });
        return (JSON.parse(out) as { flags: string[] }[])[0]?.flags.includes('UP') ?? false;
      } catch {
        return false;
      }
    },
  });
  t.teardown(async () => {
    watch.stop();
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  });

  await sh('link', 'set', 'lo', 'up');
  await sh('link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'uplink-peer');
  await sh('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'pod-a');
  await sh('link', 'add', veth6, 'type', 'veth', 'peer', 'name', 'pod-b');
  await sh('link', 'set', veth, 'alias', 'wiremesh.c-a.eth0');
  for (const dev of ['uplink', 'uplink-peer', veth, 'pod-a', veth6, 'pod-b'])
    await sh('link', 'set', dev, 'up');
  await sh('addr', 'add', '198.18.251.2/24', 'dev', 'uplink');
  await sh('route', 'add', '100.64.0.2/32', 'dev', veth, 'proto', '252');
  await sh('-6', 'route', 'add', 'fd00:64::3/128', 'dev', veth6, 'proto', '252');
  await sh('route', 'add', '100.64.1.0/26', 'via', '198.18.251.3', 'dev', 'uplink', 'proto', '253');
  await sh('route', 'add', '100.64.9.0/26', 'dev', 'uplink', 'proto', '251');
  await sh('route', 'add', '100.64.2.0/26', 'dev', 'uplink', 'table', '51826', 'proto', '253');
  await sh('rule', 'add', 'from', '100.64.0.0/16', 'table', '51826', 'priority', '5183');
  await sh('route', 'add', '100.96.0.0/12', 'dev', 'uplink', 'proto', 'static');

  await watch.start();
  await sleep(200);
  t.true(watch.watching);

  // The agent's own deletions, announced through its IpClient.
  const ip = announceDeletions(
    new IpCli(new PrefixRunner(defaultRunner, ['ip', 'netns', 'exec', ns])),
    watch,
  );
  await ip.routeDel({ dst: '100.64.9.0/26', dev: 'uplink' });
  await ip.sourceRuleDel({ family: 4, from: '100.64.0.0/16', table: 51826, priority: 5183 });
  await ip.routeDel({ dst: '100.64.2.0/26', dev: 'uplink', table: 51826 });
  t.true(await until(() => watch.stats.own === 3), 'the kernel reported the three deletions');
  await sleep(100);
  t.deepEqual(damage, [], 'the agent’s own deletions are no damage');
  await sh('rule', 'add', 'from', '100.64.0.0/16', 'table', '51826', 'priority', '5183');
  await sh('route', 'add', '100.64.9.0/26', 'dev', 'uplink', 'proto', '251');

  // Someone flushes the main table.
  const mainTable = async () =>
    (await sh('-4', 'route', 'show', 'table', 'main')).stdout
      .split('\n')
      .filter((l) => l && !l.startsWith('100.96.0.0/12'))
      .sort();
  const before = await mainTable();
  const flushedAt = Date.now();
  await sh('route', 'flush', 'table', 'main');
  t.true(await until(() => damage.length > 0));
  await sleep(200);
  t.is(damage.length, 1, 'one report for the whole flush');
  t.deepEqual(
    [...(damage[0] ?? [])].sort(),
    [
      '100.64.0.2 dev ' + veth + ' proto 252 scope 253',
      '100.64.1.0/26 via 198.18.251.3 dev uplink proto 253',
      '100.64.9.0/26 dev uplink proto 251 scope 253',
      '198.18.251.0/24 dev uplink proto 2 scope 253 src 198.18.251.2',
    ],
    'what the node needs, not the operator’s static route',
  );
  t.log(`flush seen ${(seenAt[0] ?? 0) - flushedAt} ms after the flush command began`);
  t.true((seenAt[0] ?? Infinity) - flushedAt < 1000);

  // The repair writes back what went, as it was, in one batch (the connected route
  // first: the next hop of the protocol-253 route needs it).
  t.deepEqual(await restoreRemovedRoutes(ip, events[0] ?? []), { written: 4, failed: [] });
  t.deepEqual(await mainTable(), before, 'the main table is as it was, but the operator’s route');
  const main = (await sh('-4', 'route', 'show', 'table', 'main')).stdout;
  t.notRegex(main, /100\.96\.0\.0\/12/, 'the operator’s route is left to the operator');
  await sleep(100);
  t.is(damage.length, 1, 'the repair itself is no damage');

  // A pod's veth set down, then deleted: the kernel reports its IPv6 route: no damage.
  await sh('link', 'set', veth6, 'down');
  await sleep(300);
  t.is(damage.length, 1);
  await sh('link', 'del', veth6);
  await sleep(300);
  t.is(damage.length, 1);

  // One host route deleted by hand, and the connected route: the host-route repair
  // (which a resync runs too) finds them missing and puts them back.
  await sh('route', 'del', '100.64.0.2/32', 'dev', veth);
  await sh('route', 'del', '198.18.251.0/24', 'dev', 'uplink');
  t.true(await until(() => damage.length > 1));
  await sleep(100);
  t.deepEqual(damage.slice(1).flat(), [
    `100.64.0.2 dev ${veth} proto 252 scope 253`,
    '198.18.251.0/24 dev uplink proto 2 scope 253 src 198.18.251.2',
  ]);
  const repair = await restoreHostRoutes(ip, {
    underlay: 'uplink',
    pods: [
      { handle: 'wiremesh.c-a.eth0', namespace: 'default', pod: 'rw-a', address: '100.64.0.2' },
      { handle: 'wiremesh.c-b.eth0', namespace: 'default', pod: 'rw-b', address: 'fd00:64::3' },
    ],
  });
  t.deepEqual(repair, {
    connectedRoutes: ['198.18.251.0/24 dev uplink'],
    podRoutes: [`100.64.0.2/32 dev ${veth}`],
  });
  t.deepEqual(await mainTable(), before);
  t.deepEqual(errors, []);
  t.deepEqual(unseen, []);

  // The monitor killed: the gap is reported, a new one sees the next deletion.
  const first = watch.pid;
  if (first === undefined) return t.fail('no ip monitor running');
  process.kill(first, 'SIGKILL');
  t.true(await until(() => unseen.length > 0));
  t.is(unseen[0], 'route monitor restarted; changes meanwhile unseen');
  t.is(errors.length, 1);
  t.true(await until(() => watch.pid !== undefined && watch.pid !== first));
  await sleep(300);
  await sh('route', 'del', '100.64.0.2/32', 'dev', veth);
  t.true(await until(() => damage.length > 2));
});
