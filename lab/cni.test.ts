import test from 'ava';
import { parseCniResultIPs, parseCniChoice, bridgeConflist, cniNetworkName } from './cni.ts';

test('addresses are read from a CNI 1.0 result without their prefix length', (t) => {
  const result = JSON.stringify({
    cniVersion: '1.0.0',
    interfaces: [{ name: 'eth0', sandbox: '/run/netns/x' }],
    ips: [
      { address: '100.64.1.2/24', gateway: '100.64.1.1', interface: 0 },
      { address: 'fd00::2/64' },
    ],
  });
  t.deepEqual(parseCniResultIPs(result), ['100.64.1.2', 'fd00::2']);
});

test('a result without ips gives none, and a non-JSON result is an error that quotes it', (t) => {
  t.deepEqual(parseCniResultIPs('{"cniVersion":"1.0.0"}'), []);
  t.throws(() => parseCniResultIPs('boom'), { message: /not JSON: boom/ });
});

test('the CNI choice is validated', (t) => {
  t.is(parseCniChoice('bridge'), 'bridge');
  t.throws(() => parseCniChoice('flannel'), { message: /unknown CNI 'flannel'/ });
  t.is(cniNetworkName('wiremesh'), 'wiremesh');
});

test('the reference bridge conflist names its network and the node pod range', (t) => {
  const conf = bridgeConflist('100.64.1.0/24') as {
    name: string;
    plugins: { ipam: { ranges: { subnet: string }[][] } }[];
  };
  t.is(conf.name, cniNetworkName('bridge'));
  t.is(conf.plugins[0]?.ipam.ranges[0]?.[0]?.subnet, '100.64.1.0/24');
});
