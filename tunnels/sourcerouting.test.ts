// The encrypted pools' policy routing against FakeIp: rules and encrypt-table routes
// written once, left alone on a second apply, removed when a pool stops asking.
import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import { ENCRYPT_ROUTE_TABLE, SourceRoutingDriver } from './index.ts';

const state = () => ({
  routes: [{ dst: '100.64.2.0/26', dev: 'wiremesh.wg', src: '100.127.0.1' }],
  rules: [
    { family: 4 as const, priority: 5183, from: '100.64.0.0/16', table: ENCRYPT_ROUTE_TABLE },
    { family: 4 as const, priority: 5183, from: '100.65.0.0/16', table: ENCRYPT_ROUTE_TABLE },
  ],
});

test('rules and routes are written once; a second apply writes nothing', async (t) => {
  const ip = new FakeIp();
  ip.addLink('wiremesh.wg');
  const driver = new SourceRoutingDriver(ip);
  t.deepEqual(await driver.apply(state()), {
    routesReplaced: 1,
    routesRemoved: 0,
    rulesAdded: 2,
    rulesRemoved: 0,
  });
  t.deepEqual(ip.calls, [
    'route replace 100.64.2.0/26 wiremesh.wg table 51826',
    'rule add from 100.64.0.0/16 table 51826 priority 5183',
    'rule add from 100.65.0.0/16 table 51826 priority 5183',
  ]);
  ip.calls.length = 0;
  await driver.apply(state());
  t.deepEqual(ip.calls, []);
});

test('a pool that no longer asks loses its rule first; routes of others are untouched', async (t) => {
  const ip = new FakeIp();
  ip.addLink('wiremesh.wg');
  ip.routes.push({ dst: '100.64.9.0/26', dev: 'wiremesh.wg', protocol: 251 });
  const driver = new SourceRoutingDriver(ip);
  await driver.apply(state());
  ip.calls.length = 0;
  await driver.apply({ routes: [], rules: state().rules.slice(0, 1) });
  t.deepEqual(ip.calls, [
    'rule del from 100.65.0.0/16 table 51826 priority 5183',
    'route del 100.64.2.0/26 wiremesh.wg',
  ]);
  t.true(
    ip.routes.some((r) => r.protocol === 251),
    "the mesh driver's route stays",
  );
});

test('without the WireGuard device the rules still go in; routes wait for it', async (t) => {
  const ip = new FakeIp();
  const report = await new SourceRoutingDriver(ip).apply(state());
  t.like(report, { rulesAdded: 2, routesReplaced: 0 });
});
