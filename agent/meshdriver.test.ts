import test from 'ava';
import { FakeWg } from '../tunnels/index.ts';
import { FakeIp } from '../sys/index.ts';
import { MeshDriver, type DeviceProvider } from './meshdriver.ts';
import type { MeshPlan } from './plan.ts';
import { generateKeyPair } from '../crypto/index.ts';

const self = generateKeyPair();
const p2 = generateKeyPair().publicKey;
const p3 = generateKeyPair().publicKey;

function plan(peers: { key: string; ip: string; endpoint?: string }[]): MeshPlan {
  return {
    device: {
      name: 'wiremesh.wg',
      listenPort: 51825,
      mtu: 1440,
      address: '100.127.0.1/32',
      fwmark: 0x51825,
    },
    tunnelAddress: '100.127.0.1',
    peers: peers.map((p, i) => ({
      node: `n${i + 2}`,
      publicKey: p.key,
      endpoint: p.endpoint ?? `198.18.0.${p.ip.split('.')[3]}:51825`,
      allowedIPs: [`${p.ip}/32`],
      persistentKeepalive: 0,
    })),
    routes: peers.map((p) => ({ dst: `${p.ip}/32`, dev: 'wiremesh.wg', src: '100.127.0.1' })),
    hostRoutes: [],
    hostRules: [],
    refused: [],
  };
}

/** What the driver wrote (reads are free). */
const writes = (wg: FakeWg) => wg.calls.filter((c) => !c.startsWith('show '));

function setup() {
  const wg = new FakeWg();
  const ip = new FakeIp();
  const device: DeviceProvider = {
    mode: 'userspace',
    async ensure(name) {
      wg.addDevice(name);
      ip.addLink(name, 1420);
    },
  };
  return { wg, ip, driver: new MeshDriver({ wg, ip, device }) };
}

test('the first apply creates the device and programs key, port, peers, address, MTU and routes', async (t) => {
  const { wg, ip, driver } = setup();
  const report = await driver.apply(
    plan([
      { key: p2, ip: '100.127.0.2' },
      { key: p3, ip: '100.127.0.3' },
    ]),
    self.privateKey,
    self.publicKey,
  );
  t.like(report, {
    deviceCreated: true,
    privateKeySet: true,
    listenPortSet: true,
    mtuSet: true,
    peersAdded: 2,
    routesReplaced: 2,
  });
  const dev = await wg.show('wiremesh.wg');
  t.is(dev?.publicKey, self.publicKey);
  t.deepEqual(
    dev?.peers.map((p) => [p.publicKey, p.allowedIPs, p.persistentKeepalive]).sort(),
    [
      [p2, ['100.127.0.2/32'], 0],
      [p3, ['100.127.0.3/32'], 0],
    ].sort(),
  );
  t.deepEqual(await ip.addrList('wiremesh.wg'), ['100.127.0.1/32']);
  t.is((await ip.linkShow('wiremesh.wg'))?.mtu, 1440);
  t.deepEqual(ip.routes.map((r) => r.dst).sort(), ['100.127.0.2/32', '100.127.0.3/32']);
});

test('a second apply of the same plan changes nothing and never rewrites a peer', async (t) => {
  const { wg, ip, driver } = setup();
  const p = plan([{ key: p2, ip: '100.127.0.2' }]);
  await driver.apply(p, self.privateKey, self.publicKey);
  wg.calls.length = 0;
  ip.calls.length = 0;
  const report = await driver.apply(p, self.privateKey, self.publicKey);
  t.deepEqual(writes(wg), []);
  t.deepEqual(ip.calls, []);
  t.false(Object.values(report).some((v) => v === true || (typeof v === 'number' && v > 0)));
});

test('adding a peer touches only that peer; removing one removes its peer entry and route', async (t) => {
  const { wg, ip, driver } = setup();
  await driver.apply(plan([{ key: p2, ip: '100.127.0.2' }]), self.privateKey, self.publicKey);
  wg.calls.length = 0;
  await driver.apply(
    plan([
      { key: p2, ip: '100.127.0.2' },
      { key: p3, ip: '100.127.0.3' },
    ]),
    self.privateKey,
    self.publicKey,
  );
  t.true(
    writes(wg).every((c) => c.includes(p3)),
    `only the new peer is written: ${writes(wg).join('; ')}`,
  );
  wg.calls.length = 0;
  const report = await driver.apply(
    plan([{ key: p3, ip: '100.127.0.3' }]),
    self.privateKey,
    self.publicKey,
  );
  t.is(report.peersRemoved, 1);
  t.deepEqual(writes(wg), [`removePeer wiremesh.wg ${p2}`]);
  t.deepEqual(
    ip.routes.map((r) => r.dst),
    ['100.127.0.3/32'],
  );
});

test('a new peer is nudged into a handshake: keepalive on, then off', async (t) => {
  const { wg, driver } = setup();
  await driver.apply(plan([{ key: p2, ip: '100.127.0.2' }]), self.privateKey, self.publicKey);
  t.deepEqual(
    writes(wg).filter((c) => c.startsWith('setPeer')),
    [`setPeer wiremesh.wg ${p2}`, `setPeer wiremesh.wg ${p2}`],
  );
  t.is((await wg.show('wiremesh.wg'))?.peers[0]?.persistentKeepalive, 0);
});

test('a roamed endpoint is left alone; a changed wish is applied', async (t) => {
  const { wg, driver } = setup();
  await driver.apply(plan([{ key: p2, ip: '100.127.0.2' }]), self.privateKey, self.publicKey);
  // The peer roams: WireGuard learnt a new source address.
  await wg.setPeer('wiremesh.wg', {
    publicKey: p2,
    endpoint: '203.0.113.9:40000',
    allowedIPs: ['100.127.0.2/32'],
    persistentKeepalive: 0,
  });
  wg.calls.length = 0;
  await driver.apply(plan([{ key: p2, ip: '100.127.0.2' }]), self.privateKey, self.publicKey);
  t.deepEqual(writes(wg), []);
  await driver.apply(
    plan([{ key: p2, ip: '100.127.0.2', endpoint: '198.18.0.99:51825' }]),
    self.privateKey,
    self.publicKey,
  );
  t.is((await wg.show('wiremesh.wg'))?.peers[0]?.endpoint, '198.18.0.99:51825');
});

test('drift is repaired: a vanished device, a foreign route, a stray address', async (t) => {
  const { wg, ip, driver } = setup();
  const p = plan([{ key: p2, ip: '100.127.0.2' }]);
  await driver.apply(p, self.privateKey, self.publicKey);
  await ip.routeReplace({ dst: '100.127.9.9/32', dev: 'wiremesh.wg', protocol: 251 });
  await ip.addrAdd('wiremesh.wg', '100.127.7.7/32');
  let report = await driver.apply(p, self.privateKey, self.publicKey);
  t.is(report.routesRemoved, 1);
  t.is(report.addressesChanged, 1);
  // wireguard-go crashed: the link and its whole configuration are gone.
  wg.deleteDevice('wiremesh.wg');
  await ip.linkDelete('wiremesh.wg');
  report = await driver.apply(p, self.privateKey, self.publicKey);
  t.like(report, { deviceCreated: true, privateKeySet: true, peersAdded: 1, routesReplaced: 1 });
});

test('a failure part-way is reported and the next apply completes the job', async (t) => {
  const { wg, driver } = setup();
  const p = plan([
    { key: p2, ip: '100.127.0.2' },
    { key: p3, ip: '100.127.0.3' },
  ]);
  wg.failNext('setPeer', new Error('injected'));
  await t.throwsAsync(driver.apply(p, self.privateKey, self.publicKey), {
    message: 'peer n2: injected',
  });
  await driver.apply(p, self.privateKey, self.publicKey);
  t.is((await wg.show('wiremesh.wg'))?.peers.length, 2);
});

test('a removed peer takes its routes with it: they go first, before anything that can fail', async (t) => {
  const { wg, ip, driver } = setup();
  await driver.apply(
    plan([
      { key: p2, ip: '100.127.0.2' },
      { key: p3, ip: '100.127.0.3' },
    ]),
    self.privateKey,
    self.publicKey,
  );
  // One log of both fakes' writes, to see their order.
  const order: string[] = [];
  const routeDel = ip.routeDel.bind(ip);
  ip.routeDel = async (r) => {
    order.push(`route del ${r.dst}`);
    await routeDel(r);
  };
  const removePeer = wg.removePeer.bind(wg);
  wg.removePeer = async (dev, key) => {
    order.push(`peer del ${key === p2 ? 'n2' : key}`);
    await removePeer(dev, key);
  };
  // n2 leaves while n3's new endpoint cannot be set (a name that does not resolve).
  wg.failNext('setPeer', new Error('Name or service not known'));
  const next = plan([{ key: p3, ip: '100.127.0.3', endpoint: 'gone.example:51825' }]);
  await t.throwsAsync(driver.apply(next, self.privateKey, self.publicKey), {
    message: /Name or service not known/,
  });
  t.deepEqual(order, ['route del 100.127.0.2/32', 'peer del n2']);
  t.deepEqual(
    ip.routes.map((r) => r.dst),
    ['100.127.0.3/32'],
    'the route of the peer that failed stays; the removed one is gone',
  );
});

test('a peer that cannot be set does not hold up the others, nor their routes', async (t) => {
  const { wg, ip, driver } = setup();
  wg.failNext('setPeer', new Error('injected'));
  await t.throwsAsync(
    driver.apply(
      plan([
        { key: p2, ip: '100.127.0.2' },
        { key: p3, ip: '100.127.0.3' },
      ]),
      self.privateKey,
      self.publicKey,
    ),
    { message: 'peer n2: injected' },
  );
  t.deepEqual(
    (await wg.show('wiremesh.wg'))?.peers.map((p) => p.publicKey),
    [p3],
  );
  t.deepEqual(ip.routes.map((r) => r.dst).sort(), ['100.127.0.2/32', '100.127.0.3/32']);
});

test('a route that `ip route del` leaves in place fails the pass, named', async (t) => {
  const { ip, driver } = setup();
  await driver.apply(plan([{ key: p2, ip: '100.127.0.2' }]), self.privateKey, self.publicKey);
  ip.routeDel = async () => {}; // quiet, as `ip route del` of a route it did not match
  await t.throwsAsync(driver.apply(plan([]), self.privateKey, self.publicKey), {
    message: 'route 100.127.0.2/32 dev wiremesh.wg (table main) could not be removed',
  });
});

test('a key rotation sets the new private key without touching peers', async (t) => {
  const { wg, driver } = setup();
  const p = plan([{ key: p2, ip: '100.127.0.2' }]);
  await driver.apply(p, self.privateKey, self.publicKey);
  const next = generateKeyPair();
  wg.calls.length = 0;
  const report = await driver.apply(p, next.privateKey, next.publicKey);
  t.true(report.privateKeySet);
  t.deepEqual(writes(wg), ['setPrivateKey wiremesh.wg']);
  t.is(wg.privateKeyOf('wiremesh.wg'), next.privateKey);
});

test('host encryption: routes in its own table and one rule per family, removed when switched off', async (t) => {
  const { ip, driver } = setup();
  const p = plan([{ key: p2, ip: '100.127.0.2' }]);
  const withHost: MeshPlan = {
    ...p,
    hostRoutes: [{ dst: '198.18.0.12/32', dev: 'wiremesh.wg', src: '198.18.0.11', table: 51825 }],
    hostRules: [{ family: 4, priority: 5182, notFwmark: 0x51825, table: 51825 }],
  };
  await driver.apply(withHost, self.privateKey, self.publicKey);
  t.deepEqual(
    ip.routes.filter((r) => r.table === 51825).map((r) => [r.dst, r.src]),
    [['198.18.0.12/32', '198.18.0.11']],
  );
  t.is(ip.rules.length, 1);
  ip.calls.length = 0;
  await driver.apply(withHost, self.privateKey, self.publicKey);
  t.deepEqual(ip.calls, [], 'idempotent');
  await driver.apply(p, self.privateKey, self.publicKey);
  t.deepEqual(
    ip.routes.filter((r) => r.table === 51825),
    [],
  );
  t.deepEqual(ip.rules, []);
});

test('a pass over many new peers writes them with a few wg calls and one route batch', async (t) => {
  const { wg, ip, driver } = setup();
  const many = Array.from({ length: 300 }, (_, i) => ({
    key: generateKeyPair().publicKey,
    ip: `100.127.${1 + Math.floor(i / 200)}.${(i % 200) + 2}`,
  }));
  let batches = 0;
  const batch = ip.routeReplaceBatch.bind(ip);
  ip.routeReplaceBatch = async (routes) => {
    batches++;
    return batch(routes);
  };
  const report = await driver.apply(plan(many), self.privateKey, self.publicKey);
  t.like(report, { peersAdded: 300, routesReplaced: 300 });
  t.is((await wg.show('wiremesh.wg'))?.peers.length, 300);
  // New peers go twice (a keepalive to start the handshake, then their own setting).
  t.is(wg.setPeersCalls, 2);
  t.is(batches, 1);
  t.is(ip.routes.length, 300);
});
