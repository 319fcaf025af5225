import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import { silentLogger } from './log.ts';
import { RouteDamageRepair } from './routedamage.ts';
import { parseMonitorLine, type RouteEvent } from './routewatch.ts';

/** Routes as RouteEvent.text has them; the monitor prints each after `Deleted `. */
const WG_ROUTE = '100.64.1.0/26 dev wiremesh.wg proto 251 scope 253';
const VXLAN_ROUTE = '100.80.2.0/26 dev wiremesh.vxlan proto 253 scope 253';

function deleted(route: string): RouteEvent {
  const line = `Deleted ${route} `;
  const event = parseMonitorLine(line);
  if (!event) throw new Error(`not a monitor line: ${line}`);
  return event;
}

/** A node whose underlay eth0 has lost its connected route, and the repair over it. */
function setup() {
  const ip = new FakeIp();
  ip.addLink('eth0', 1500);
  const eth0 = ip.links.get('eth0');
  if (eth0) eth0.up = true;
  eth0?.addrs.add('198.18.0.2/16');
  ip.addLink('wiremesh.wg', 1420, 'wireguard');
  ip.addLink('wiremesh.vxlan', 1450, 'vxlan');
  const scheduled: string[] = [];
  const repair = new RouteDamageRepair({
    ip,
    log: silentLogger,
    ipam: () => undefined,
    findUnderlay: async () => 'eth0',
    schedule: (reason) => scheduled.push(reason),
  });
  return { ip, repair, scheduled };
}

test('removed routes go back at the start of the pass; the repair counts once the pass succeeds', async (t) => {
  const { ip, repair, scheduled } = setup();
  repair.damaged([deleted(WG_ROUTE)]);
  t.deepEqual(scheduled, ['route damage']);

  const errors: unknown[] = [];
  const damage = await repair.restore(errors);
  t.deepEqual(errors, []);
  t.deepEqual(ip.routes.map((r) => r.dst).sort(), ['100.64.1.0/26', '198.18.0.0/16']);
  t.like(repair.status(), { repairs: 0, restored: 2, lastRepair: null });

  repair.passSucceeded(damage);
  const { repairs, lastRepair } = repair.status();
  t.is(repairs, 1);
  t.like(lastRepair, { count: 1, removed: [WG_ROUTE] });
  t.is(typeof lastRepair?.restoredMs, 'number');
  t.deepEqual(await repair.restore([]), null, 'nothing pending any more');
});

test('damage seen during a pass is counted by the next pass, with the first sighting’s time', async (t) => {
  const { repair, scheduled } = setup();
  repair.damaged([deleted(WG_ROUTE)]);
  const first = await repair.restore([]);
  repair.damaged([deleted(VXLAN_ROUTE)]);
  repair.passSucceeded(first);
  t.is(repair.status().repairs, 0);
  t.deepEqual(scheduled, ['route damage', 'route damage']);

  const second = await repair.restore([]);
  t.is(second?.at, first?.at);
  repair.passSucceeded(second);
  t.like(repair.status(), {
    repairs: 1,
    lastRepair: { count: 2, removed: [WG_ROUTE, VXLAN_ROUTE] },
  });
});

test('the host routes are checked even when putting the removed ones back failed', async (t) => {
  const { ip, repair } = setup();
  ip.routeReplaceBatch = () => Promise.reject(new Error('ip -batch failed'));
  repair.damaged([deleted(WG_ROUTE)]);
  const errors: unknown[] = [];
  await repair.restore(errors);
  t.deepEqual(
    errors.map((e) => (e as Error).message),
    ['ip -batch failed'],
  );
  t.deepEqual(
    ip.routes.map((r) => r.dst),
    ['198.18.0.0/16'],
  );
});
