// The VXLAN driver against FakeIp: what it creates for each remote node, that a second
// apply changes nothing, that removing a peer removes exactly its entries, and that it
// repairs drift without touching what is not its own.
import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import {
  ENCAP_ROUTE_PROTOCOL,
  VXLAN_DEVICE,
  VxlanDriver,
  encapReportChanged,
  vtepLinkLocal,
  vtepMac,
  type EncapState,
} from './index.ts';

const state = (): EncapState => ({
  localUnderlayIP: '198.18.0.1',
  vtepIP: '100.127.0.1',
  mtu: 1450,
  peers: [
    {
      node: 'b',
      underlayIP: '198.18.0.2',
      vtepIP: '100.127.0.2',
      blocks: ['100.64.1.0/26', '100.64.9.0/26'],
    },
    { node: 'c', underlayIP: '198.18.0.3', vtepIP: '100.127.0.3', blocks: ['100.64.2.0/26'] },
  ],
});

test('vtepMac: locally administered unicast, derived from the address', (t) => {
  t.is(vtepMac('100.127.0.2'), '0e:6d:64:7f:00:02');
  t.is(vtepMac('fd00:7f::1:2'), '0e:6d:00:01:00:02');
  const first = parseInt(vtepMac('10.0.0.1').slice(0, 2), 16);
  t.is(first & 1, 0, 'unicast');
  t.is(first & 2, 2, 'locally administered');
  t.throws(() => vtepMac('not-an-ip'), { message: /not an IP address/ });
});

test("vtepLinkLocal: the EUI-64 link-local address of the VTEP MAC (the kernel's own for the device)", (t) => {
  // 0e:6d:64:7f:cf:cf -> 0c6d:64ff:fe7f:cfcf (the universal/local bit flipped, ff:fe inserted).
  t.is(vtepLinkLocal('100.127.207.207'), 'fe80::c6d:64ff:fe7f:cfcf');
  t.is(vtepLinkLocal('fd5e:7a11:3c8b:ffff::647f:cfcf'), 'fe80::c6d:64ff:fe7f:cfcf');
});

test('apply creates the device, FDB, neighbours and onlink routes per remote node', async (t) => {
  const ip = new FakeIp();
  const report = await new VxlanDriver(ip).apply(state());
  t.true(report.deviceCreated);
  t.like(await ip.linkDetails(VXLAN_DEVICE), {
    kind: 'vxlan',
    mtu: 1450,
    up: true,
    mac: '0e:6d:64:7f:00:01',
    vxlan: { vni: 4100, port: 4789, local: '198.18.0.1', learning: false, underlayDev: null },
  });
  t.deepEqual(
    (await ip.fdbList(VXLAN_DEVICE)).map((f) => `${f.mac} ${f.dst}`),
    ['0e:6d:64:7f:00:02 198.18.0.2', '0e:6d:64:7f:00:03 198.18.0.3'],
  );
  t.deepEqual(
    (await ip.neighList(VXLAN_DEVICE)).map((n) => `${n.dst} ${n.lladdr}`),
    ['100.127.0.2 0e:6d:64:7f:00:02', '100.127.0.3 0e:6d:64:7f:00:03'],
  );
  t.deepEqual(
    (await ip.routeList(VXLAN_DEVICE, ENCAP_ROUTE_PROTOCOL)).map(
      (r) => `${r.dst} via ${r.gateway}${r.onlink ? ' onlink' : ''}`,
    ),
    [
      '100.64.1.0/26 via 100.127.0.2 onlink',
      '100.64.9.0/26 via 100.127.0.2 onlink',
      '100.64.2.0/26 via 100.127.0.3 onlink',
    ],
  );
  // The VTEP address on the device: loose rp_filter passes only on a device with an address.
  t.deepEqual(await ip.addrList(VXLAN_DEVICE), ['100.127.0.1/32']);
});

test('a second apply changes nothing and calls nothing that writes', async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  await driver.apply(state());
  ip.calls.length = 0;
  const again = await driver.apply(state());
  t.false(encapReportChanged(again));
  t.deepEqual(ip.calls, []);
});

test('removing a peer removes its routes, neighbour and FDB entry, in that order', async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  await driver.apply(state());
  ip.calls.length = 0;
  const s = state();
  s.peers = s.peers.filter((p) => p.node !== 'b');
  const report = await driver.apply(s);
  t.like(report, { routesRemoved: 2, neighboursRemoved: 1, fdbRemoved: 1, fdbAdded: 0 });
  t.deepEqual(ip.calls, [
    'route del 100.64.1.0/26 wiremesh.vxlan',
    'route del 100.64.9.0/26 wiremesh.vxlan',
    'neigh del wiremesh.vxlan 100.127.0.2',
    'fdb del wiremesh.vxlan 0e:6d:64:7f:00:02 198.18.0.2',
  ]);
  t.deepEqual(
    (await ip.routeList(VXLAN_DEVICE, ENCAP_ROUTE_PROTOCOL)).map((r) => r.dst),
    ['100.64.2.0/26'],
  );
});

test('a peer whose underlay address changed: its FDB entry moves, nothing else', async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  await driver.apply(state());
  ip.calls.length = 0;
  const s = state();
  s.peers[1]!.underlayIP = '198.18.0.33';
  await driver.apply(s);
  t.deepEqual(ip.calls, [
    'fdb del wiremesh.vxlan 0e:6d:64:7f:00:03 198.18.0.3',
    'fdb append wiremesh.vxlan 0e:6d:64:7f:00:03 198.18.0.33',
  ]);
});

test('drift is repaired; routes of other protocols on the device are left alone', async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  await driver.apply(state());
  ip.neighbours = ip.neighbours.filter((n) => n.dst !== '100.127.0.3');
  ip.fdb.push({ dev: VXLAN_DEVICE, mac: '0e:00:00:00:00:99', dst: '198.18.0.99' });
  ip.routes.push({ dst: '100.64.5.0/26', dev: VXLAN_DEVICE, protocol: 4 });
  ip.routes = ip.routes.filter((r) => r.dst !== '100.64.2.0/26');
  await ip.linkSetMtu(VXLAN_DEVICE, 1500);
  const report = await driver.apply(state());
  t.like(report, { neighboursSet: 1, fdbRemoved: 1, routesReplaced: 1, deviceChanged: true });
  t.is((await ip.linkShow(VXLAN_DEVICE))?.mtu, 1450);
  t.true(ip.routes.some((r) => r.dst === '100.64.5.0/26' && r.protocol === 4));
  t.false(encapReportChanged(await driver.apply(state())));
});

test('a device with other fixed attributes is recreated', async (t) => {
  const ip = new FakeIp();
  await ip.linkAddVxlan({
    name: VXLAN_DEVICE,
    vni: 1,
    port: 8472,
    local: '198.18.0.1',
    mtu: 1450,
    mac: '0e:00:00:00:00:01',
  });
  const report = await new VxlanDriver(ip).apply(state());
  t.true(report.deviceChanged);
  t.like(await ip.linkDetails(VXLAN_DEVICE), { vxlan: { vni: 4100, port: 4789 } });
});

test('null removes the device and with it every entry', async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  await driver.apply(state());
  t.true((await driver.apply(null)).deviceRemoved);
  t.is(await ip.linkShow(VXLAN_DEVICE), null);
  t.deepEqual([ip.fdb, ip.neighbours, ip.routes], [[], [], []]);
  t.false((await driver.apply(null)).deviceRemoved);
});

test('refuses what cannot work: a route without a VTEP of its family, shared VTEPs', async (t) => {
  const ip = new FakeIp();
  const s = state();
  s.peers[0]!.blocks.push('fd00:64::/122');
  await t.throwsAsync(() => new VxlanDriver(ip).apply(s), {
    message: /VTEP address of its family/,
  });
  const dup = state();
  dup.peers[1]!.vtepIP = '100.127.0.2';
  await t.throwsAsync(() => new VxlanDriver(new FakeIp()).apply(dup), { message: /share/ });
  const dup6 = dualState();
  dup6.peers[1]!.vtepIP6 = dup6.peers[0]!.vtepIP6!;
  await t.throwsAsync(() => new VxlanDriver(new FakeIp()).apply(dup6), { message: /share/ });
});

/** IPv6 blocks too: every node has an IPv6 VTEP (its IPv6 tunnel address). */
const dualState = (): EncapState => {
  const s = state();
  s.vtepIP6 = 'fd5e:7a11:3c8b:ffff::647f:1';
  s.peers[0]!.vtepIP6 = 'fd5e:7a11:3c8b:ffff::647f:2';
  s.peers[0]!.blocks.push('fd00:64:0:2::/122');
  s.peers[1]!.vtepIP6 = 'fd5e:7a11:3c8b:ffff::647f:3';
  return s;
};

test("IPv6 blocks: routes via the VTEP MAC's link-local address onlink, its neighbour to the same MAC, one FDB entry per node", async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  const report = await driver.apply(dualState());
  t.like(report, { fdbAdded: 2, neighboursSet: 4, routesReplaced: 4 });
  t.deepEqual(
    (await ip.fdbList(VXLAN_DEVICE)).map((f) => `${f.mac} ${f.dst}`),
    ['0e:6d:64:7f:00:02 198.18.0.2', '0e:6d:64:7f:00:03 198.18.0.3'],
  );
  t.deepEqual((await ip.neighList(VXLAN_DEVICE)).map((n) => `${n.dst} ${n.lladdr}`).sort(), [
    '100.127.0.2 0e:6d:64:7f:00:02',
    '100.127.0.3 0e:6d:64:7f:00:03',
    'fe80::c6d:64ff:fe7f:2 0e:6d:64:7f:00:02',
    'fe80::c6d:64ff:fe7f:3 0e:6d:64:7f:00:03',
  ]);
  t.true(
    (await ip.routeList(VXLAN_DEVICE, ENCAP_ROUTE_PROTOCOL)).some(
      (r) =>
        r.dst === 'fd00:64:0:2::/122' &&
        r.gateway === vtepLinkLocal('100.127.0.2') &&
        r.onlink === true,
    ),
  );
  t.deepEqual((await ip.addrList(VXLAN_DEVICE)).sort(), [
    '100.127.0.1/32',
    'fd5e:7a11:3c8b:ffff::647f:1/128',
  ]);
  ip.calls.length = 0;
  t.false(encapReportChanged(await driver.apply(dualState())));
  t.deepEqual(ip.calls, []);
  // The IPv6 blocks go: their routes, the IPv6 neighbours and address with them.
  const report2 = await driver.apply(state());
  t.like(report2, { routesRemoved: 1, neighboursRemoved: 2, fdbRemoved: 0, deviceChanged: true });
  t.deepEqual(await ip.addrList(VXLAN_DEVICE), ['100.127.0.1/32']);
});

test('an IPv6 underlay: the device is bound to it and the FDB points at IPv6 addresses', async (t) => {
  const ip = new FakeIp();
  const driver = new VxlanDriver(ip);
  const s = dualState();
  s.localUnderlayIP = '2001:db8:1::1';
  s.peers[0]!.underlayIP = '2001:db8:1::2';
  s.peers[1]!.underlayIP = '2001:db8:1::3';
  s.mtu = 1430;
  await driver.apply(s);
  t.like(await ip.linkDetails(VXLAN_DEVICE), { mtu: 1430, vxlan: { local: '2001:db8:1::1' } });
  t.deepEqual(
    (await ip.fdbList(VXLAN_DEVICE)).map((f) => `${f.mac} ${f.dst}`),
    ['0e:6d:64:7f:00:02 2001:db8:1::2', '0e:6d:64:7f:00:03 2001:db8:1::3'],
  );
  // Another spelling of the same addresses (as the kernel prints them) changes nothing.
  ip.fdb = ip.fdb.map((f) => ({ ...f, dst: f.dst.replace('::', ':0::') }));
  ip.calls.length = 0;
  const again = { ...s, localUnderlayIP: '2001:db8:1:0::1' };
  t.false(encapReportChanged(await driver.apply(again)));
  t.deepEqual(ip.calls, []);
});
