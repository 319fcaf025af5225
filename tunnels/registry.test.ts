// The registry of encapsulations: availability probes that leave nothing behind and say
// plainly what is missing; MTU overheads; the IP-in-IP and native drivers against FakeIp.
import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import { WIREGUARD_DEVICE } from '../agent/annotations.ts';
import {
  ENCAP_ROUTE_PROTOCOL,
  IPIP_DEVICE,
  IpipDriver,
  NativeDriver,
  PROBE_DEVICE,
  WIREGUARD_DEVICE_NAME,
  encapReportChanged,
  encapsulation,
  encapsulationMtu,
  encapsulations,
  probeEncapsulations,
  type EncapState,
} from './index.ts';

const probeOptions = { localUnderlayIP: '198.18.0.1' };

test('the registry holds WireGuard, VXLAN and IP-in-IP with their devices', (t) => {
  t.deepEqual(
    encapsulations().map((e) => `${e.kind} ${e.device}`),
    ['wireguard wiremesh.wg', 'vxlan wiremesh.vxlan', 'ipip wiremesh.ipip'],
  );
  t.is(WIREGUARD_DEVICE_NAME, WIREGUARD_DEVICE);
  t.false(encapsulation('ipip').carries(6, 4));
  t.true(encapsulation('ipip').carries(4, 4));
  t.true(encapsulation('vxlan').carries(6, 4));
  t.is(encapsulation('wireguard').driver, undefined);
});

test('MTU per path: host MTU less the overhead; WireGuard rounded to 16', (t) => {
  t.is(encapsulationMtu(1500, 'wireguard', 4), 1440);
  t.is(encapsulationMtu(1500, 'wireguard', 6), 1408);
  t.is(encapsulationMtu(1500, 'vxlan', 4), 1450);
  t.is(encapsulationMtu(1500, 'vxlan', 6), 1430);
  t.is(encapsulationMtu(1500, 'ipip', 4), 1480);
  t.is(encapsulationMtu(1500, 'native', 4), 1500);
  t.is(encapsulationMtu(9001, 'wireguard', 4), 8928);
  t.throws(() => encapsulationMtu(1000, 'vxlan', 4), { message: /below 1280/ });
});

test('probes on a kernel without IP-in-IP and WireGuard: said plainly, nothing left', async (t) => {
  const ip = new FakeIp();
  ip.unsupportedKinds.add('ipip');
  ip.unsupportedKinds.add('wireguard');
  const found = await probeEncapsulations(ip, probeOptions);
  t.deepEqual(
    found.map((a) => [a.kind, a.available]),
    [
      ['wireguard', false],
      ['vxlan', true],
      ['ipip', false],
    ],
  );
  t.regex(
    found[2]!.detail,
    /the kernel has no ipip support \(module missing\).*Unknown device type/,
  );
  t.deepEqual([...ip.links.keys()], [], 'no probe link is left behind');
});

test('WireGuard without the module is available through wireguard-go when it is there', async (t) => {
  const ip = new FakeIp();
  ip.unsupportedKinds.add('wireguard');
  const [wg] = await probeEncapsulations(ip, { ...probeOptions, wireguardGo: true });
  t.like(wg, { kind: 'wireguard', available: true });
  t.regex(wg!.detail, /^userspace wireguard-go \(the kernel has no wireguard support/);
});

test('a probe link left by a crashed agent is removed; an existing device counts', async (t) => {
  const ip = new FakeIp();
  ip.addLink(PROBE_DEVICE.vxlan, 1280, 'vxlan');
  const vx = await encapsulation('vxlan').probe(ip, probeOptions);
  t.true(vx.available);
  t.is(await ip.linkShow(PROBE_DEVICE.vxlan), null);

  const ip2 = new FakeIp();
  await ip2.linkAddIpip({ name: IPIP_DEVICE, local: '198.18.0.1', mtu: 1480 });
  ip2.calls.length = 0;
  t.true((await encapsulation('ipip').probe(ip2, probeOptions)).available);
  t.deepEqual(ip2.calls, [], 'an existing wiremesh.ipip proves the module without a probe');
});

const ipipState = (): EncapState => ({
  localUnderlayIP: '198.18.0.1',
  vtepIP: '100.127.0.1',
  mtu: 1480,
  peers: [
    { node: 'b', underlayIP: '198.18.1.2', vtepIP: '100.127.0.2', blocks: ['100.64.1.0/26'] },
  ],
});

test('IP-in-IP: a device bound to the underlay, routes via the remote underlay onlink', async (t) => {
  const ip = new FakeIp();
  const driver = new IpipDriver(ip);
  t.true((await driver.apply(ipipState())).deviceCreated);
  t.like(await ip.linkDetails(IPIP_DEVICE), { kind: 'ipip', mtu: 1480, up: true });
  t.deepEqual(
    await ip.addrList(IPIP_DEVICE),
    ['100.127.0.1/32'],
    'the VTEP address, for rp_filter',
  );
  t.deepEqual(await ip.routeList(IPIP_DEVICE, ENCAP_ROUTE_PROTOCOL), [
    {
      dst: '100.64.1.0/26',
      dev: IPIP_DEVICE,
      gateway: '198.18.1.2',
      onlink: true,
      protocol: ENCAP_ROUTE_PROTOCOL,
    },
  ]);
  ip.calls.length = 0;
  t.false(encapReportChanged(await driver.apply(ipipState())));
  t.deepEqual(ip.calls, []);
  const s = ipipState();
  s.peers = [];
  t.is((await driver.apply(s)).routesRemoved, 1);
  t.true((await driver.apply(null)).deviceRemoved);
  const v6 = ipipState();
  v6.peers[0]!.blocks = ['fd00:64::/122'];
  await t.throwsAsync(() => driver.apply(v6), { message: /IPv4 over IPv4 only/ });
});

test('IP-in-IP on a kernel without the module fails with the kernel words', async (t) => {
  const ip = new FakeIp();
  ip.unsupportedKinds.add('ipip');
  await t.throwsAsync(() => new IpipDriver(ip).apply(ipipState()), {
    message: /Unknown device type/,
  });
});

test('native: routes via the remote underlay address on the underlay device, only its own', async (t) => {
  const ip = new FakeIp();
  ip.addLink('eth0', 1500);
  ip.routes.push({ dst: '10.0.0.0/8', dev: 'eth0', protocol: 4, gateway: '198.18.0.254' });
  const driver = new NativeDriver(ip, 'eth0');
  const s = ipipState();
  const report = await driver.apply(s);
  t.is(report.routesReplaced, 1);
  t.deepEqual(
    (await ip.routeList('eth0', ENCAP_ROUTE_PROTOCOL)).map((r) => `${r.dst} via ${r.gateway}`),
    ['100.64.1.0/26 via 198.18.1.2'],
  );
  t.false(encapReportChanged(await driver.apply(s)));
  t.is((await driver.apply(null)).routesRemoved, 1);
  t.true(
    ip.routes.some((r) => r.dst === '10.0.0.0/8'),
    'a route it does not own stays',
  );
});
