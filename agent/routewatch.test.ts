import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import {
  RouteWatch,
  announceDeletions,
  isOwnedLoss,
  parseMonitorLine,
  type WatchedRoutes,
} from './routewatch.ts';

// Lines as `ip -N monitor route rule` (iproute2 6.1) prints them.
const FLUSH = [
  'Deleted 100.64.0.2 dev wm0a1b2c3d4e5 proto 252 scope 253 ',
  'Deleted 100.64.1.0/26 dev wiremesh.wg proto 251 scope 253 ',
  'Deleted 100.127.0.2 dev wiremesh.wg proto 251 scope 253 ',
  'Deleted 100.80.2.0/26 via 100.127.0.3 dev wiremesh.vxlan proto 253 onlink ',
  'Deleted 198.18.0.0/16 dev eth0 proto 2 scope 253 src 198.18.0.2 ',
  'Deleted 100.96.0.0/12 dev eth0 scope 253 ',
  'Deleted default via 198.18.0.1 dev eth0 proto 4 ',
];

const WATCHED: WatchedRoutes = {
  protocols: [251, 252, 253],
  tables: [51825, 51826],
  connectedDevs: ['eth0'],
};

test('route lines: destination, device, table, protocol, scope, type', (t) => {
  t.like(parseMonitorLine('Deleted 100.64.0.2 dev wm0a1b2c3d4e5 proto 252 scope 253 '), {
    kind: 'route',
    deleted: true,
    dst: '100.64.0.2/32',
    dev: 'wm0a1b2c3d4e5',
    table: 254,
    protocol: 252,
    scope: 253,
    type: 1,
    text: '100.64.0.2 dev wm0a1b2c3d4e5 proto 252 scope 253',
  });
  t.like(parseMonitorLine('100.64.3.0/26 dev wiremesh.wg table 51826 proto 253 scope 253 '), {
    deleted: false,
    dst: '100.64.3.0/26',
    table: 51826,
  });
  t.like(parseMonitorLine('Deleted fd01::5 dev wm1 proto 252 metric 1024 pref medium'), {
    dst: 'fd01::5/128',
    protocol: 252,
  });
  t.like(
    parseMonitorLine('Deleted 2 198.18.5.1 dev d0 table 255 proto 2 scope 254 src 198.18.5.1'),
    {
      type: 2,
      table: 255,
      dst: '198.18.5.1/32',
    },
  );
  t.like(parseMonitorLine('Deleted 6 100.64.10.0/24 proto 251 '), { type: 6, dev: undefined });
  t.like(
    parseMonitorLine('Deleted 100.80.2.0/26 via 100.127.0.3 dev wiremesh.vxlan proto 253 onlink '),
    { gateway: '100.127.0.3', onlink: true, dev: 'wiremesh.vxlan' },
  );
  t.like(parseMonitorLine('Deleted 100.64.1.0/26 via inet6 fe80::1 dev eth0 proto 253 '), {
    gateway: 'fe80::1',
    dev: 'eth0',
  });
  t.like(parseMonitorLine('Deleted 198.18.0.0/16 dev eth0 proto 2 scope 253 src 198.18.0.2 '), {
    src: '198.18.0.2',
  });
  t.like(parseMonitorLine('Deleted fd00::/64 dev eth0 proto 2 metric 256 pref medium'), {
    metric: 256,
  });
  t.like(parseMonitorLine('Deleted default via 198.18.0.1 dev eth0 proto 4 '), {
    dst: 'default',
    protocol: 4,
  });
  // Without -N, iproute2 prints names from /etc/iproute2: they read the same.
  t.like(
    parseMonitorLine('Deleted 198.18.0.0/16 dev eth0 proto kernel scope link src 198.18.0.2'),
    {
      protocol: 2,
      scope: 253,
      table: 254,
    },
  );
  t.like(parseMonitorLine('Deleted local 10.0.0.1 dev lo table local proto kernel scope host'), {
    type: 2,
    table: 255,
  });
});

test('rule lines: priority and the table looked up', (t) => {
  t.like(parseMonitorLine('Deleted 5183:\tfrom 100.64.0.0/16 lookup 51826'), {
    kind: 'rule',
    deleted: true,
    priority: 5183,
    table: 51826,
  });
  t.like(parseMonitorLine('5182:\tnot from all fwmark 0x51825 lookup 51825'), {
    kind: 'rule',
    deleted: false,
    table: 51825,
  });
  t.like(parseMonitorLine('Deleted 32766:\tfrom all lookup main'), { table: 254 });
});

test('link lines, next-hop continuations and blank lines are no events', (t) => {
  t.is(
    parseMonitorLine('3: d0@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN'),
    null,
  );
  t.is(parseMonitorLine('Deleted 2: d1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop'), null);
  t.is(parseMonitorLine('    link/[1] 8a:fa:9b:b7:22:ae brd ff:ff:ff:ff:ff:ff'), null);
  t.is(parseMonitorLine('\tnexthop via 198.18.5.7 dev d0 weight 1 '), null);
  t.is(parseMonitorLine(''), null);
});

test('what counts: the agent’s protocols and tables, its rules, the underlay’s connected route', (t) => {
  const lost = FLUSH.filter((l) => {
    const e = parseMonitorLine(l);
    return e !== null && isOwnedLoss(e, WATCHED);
  });
  t.deepEqual(lost, FLUSH.slice(0, 5), 'the operator’s service and default routes are theirs');
  const owned = (line: string) => isOwnedLoss(parseMonitorLine(line) ?? t.fail(line), WATCHED);
  t.true(owned('Deleted 100.64.3.0/26 dev wiremesh.wg table 51826 proto 4 scope 253'));
  t.true(owned('Deleted 5183:\tfrom 100.64.0.0/16 lookup 51826'));
  t.true(owned('Deleted 5182:\tnot from all fwmark 0x51825 lookup 51825'));
  t.false(owned('Deleted 32766:\tfrom all lookup main'), 'the kernel’s default rules');
  t.false(owned('100.64.0.2 dev wm0a1b2c3d4e5 proto 252 scope 253'), 'an addition');
  t.false(
    owned('Deleted 198.18.0.0/16 dev eth1 proto 2 scope 253 src 198.18.0.2'),
    'not the underlay',
  );
  t.false(owned('Deleted fe80::/64 dev eth0 proto 2 metric 256 pref medium'), 'link-local');
  t.true(owned('Deleted 2001:db8::/64 dev eth0 proto 2 metric 256 pref medium'));
  t.false(owned('Deleted 2 198.18.0.2 dev eth0 table 255 proto 2 scope 254 src 198.18.0.2'));
});

function watch(linkUp: (dev: string) => boolean = () => true) {
  let now = 0;
  const damage: string[][] = [];
  const unseen: string[] = [];
  const w = new RouteWatch({
    watched: () => WATCHED,
    onDamage: (removed) => damage.push(removed.map((e) => e.text)),
    onUnseen: (r) => unseen.push(r),
    linkUp,
    coalesceMs: 60_000, // tests call report() instead of waiting
    expectTtlMs: 10_000,
    now: () => now,
  });
  return { w, damage, unseen, advance: (ms: number) => (now += ms) };
}

test('a flush is reported once, naming every route the node needs that went', (t) => {
  const { w, damage } = watch();
  for (const line of FLUSH) w.line(line);
  w.report();
  t.deepEqual(damage, [FLUSH.slice(0, 5).map((l) => l.replace(/^Deleted /, '').trim())]);
  t.like(w.stats, { removed: 5, reports: 1, own: 0 });
  w.report();
  t.is(damage.length, 1, 'nothing new: no second report');
});

test('the agent’s own announced deletions are no damage; an announcement is used once', async (t) => {
  const fake = new FakeIp();
  fake.addLink('wiremesh.wg', 1420, 'wireguard');
  const { w, damage, advance } = watch();
  const ip = announceDeletions(fake, w);
  void ip.routeDel({ dst: '100.64.1.0/26', dev: 'wiremesh.wg' });
  void ip.sourceRuleDel({ family: 4, from: '100.64.0.0/16', table: 51826, priority: 5183 });
  void ip.routeDel({ dst: '100.64.3.0/26', dev: 'wiremesh.wg', table: 51826 });
  w.line('Deleted 100.64.1.0/26 dev wiremesh.wg proto 251 scope 253 ');
  w.line('Deleted 5183:\tfrom 100.64.0.0/16 lookup 51826');
  w.line('Deleted 100.64.3.0/26 dev wiremesh.wg table 51826 proto 253 scope 253 ');
  w.report();
  t.deepEqual(damage, []);
  t.is(w.stats.own, 3);
  // The same route deleted again, by someone else: now it counts.
  w.line('Deleted 100.64.1.0/26 dev wiremesh.wg proto 251 scope 253 ');
  w.report();
  t.is(damage.length, 1);
  // An announcement whose deletion never came (the route was already gone) expires.
  void ip.routeDel({ dst: '100.64.2.0/26', dev: 'wiremesh.wg' });
  advance(10_001);
  w.line('Deleted 100.64.2.0/26 dev wiremesh.wg proto 251 scope 253 ');
  w.report();
  t.is(damage.length, 2);
  // Everything else still reaches the real client.
  t.deepEqual(fake.calls.slice(0, 1), ['route del 100.64.1.0/26 wiremesh.wg']);
  t.deepEqual(await ip.linkShow('wiremesh.wg'), await fake.linkShow('wiremesh.wg'));
});

test('a route gone with its device (a pod deleted, a link down) is no damage', (t) => {
  const { w, damage } = watch((dev) => dev !== 'wm0gone000000');
  w.line('Deleted fd01::6 dev wm0gone000000 proto 252 metric 1024 pref medium');
  w.report();
  t.deepEqual(damage, []);
  w.line('Deleted fd01::6 dev wm0gone000000 proto 252 metric 1024 pref medium');
  w.line('Deleted fd01::7 dev wm0here000000 proto 252 metric 1024 pref medium');
  w.report();
  t.deepEqual(damage, [['fd01::7 dev wm0here000000 proto 252 metric 1024 pref medium']]);
});

test('deletions within the window are gathered into one report', async (t) => {
  const damage: (readonly string[])[] = [];
  const w = new RouteWatch({
    watched: () => WATCHED,
    onDamage: (removed) => damage.push(removed.map((e) => e.text)),
    onUnseen: () => {},
    linkUp: () => true,
    coalesceMs: 20,
  });
  t.teardown(() => w.stop());
  for (const line of FLUSH) w.line(line);
  t.deepEqual(damage, [], 'not before the window closes');
  await new Promise((r) => setTimeout(r, 60));
  t.is(damage.length, 1);
  t.is(damage[0]?.length, 5);
});
