import test from 'ava';
import { ProcessRunner } from '../sys/exec.ts';
import { toolPath } from '../sys/host.ts';
import { addResult, convertResult, type AddResult, type PodInterfaceResult } from './result.ts';
import { SUPPORTED_VERSIONS } from './protocol.ts';

const pod: PodInterfaceResult = {
  hostIfName: 'wm1a2b3c4d5e6',
  hostMac: 'ee:ee:ee:ee:ee:ee',
  podIfName: 'eth0',
  podMac: '0a:58:64:40:00:05',
  sandbox: '/var/run/netns/cni-7f3e',
  mtu: 1380,
  addresses: ['100.64.0.5'],
  gateway4: '169.254.1.1',
};
const dual: PodInterfaceResult = {
  ...pod,
  addresses: ['100.64.0.5', 'fd64::5'],
  gateway6: 'fe80::ecee:eeff:feee:eeee',
};

const golden = test.macro((t, r: PodInterfaceResult, cniVersion: string) => {
  t.snapshot(addResult(r, cniVersion));
});
for (const version of ['1.1.0', '1.0.0', '0.4.0', '0.3.1', '0.3.0']) {
  test(`IPv4 pod, ${version}`, golden, pod, version);
  test(`dual-stack pod, ${version}`, golden, dual, version);
}

test('1.1.0 in full', (t) => {
  t.deepEqual(addResult(pod, '1.1.0'), {
    cniVersion: '1.1.0',
    interfaces: [
      { name: 'wm1a2b3c4d5e6', mac: 'ee:ee:ee:ee:ee:ee' },
      { name: 'eth0', mac: '0a:58:64:40:00:05', sandbox: '/var/run/netns/cni-7f3e', mtu: 1380 },
    ],
    ips: [{ address: '100.64.0.5/32', gateway: '169.254.1.1', interface: 1 }],
    routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }],
    dns: {},
  });
});

test('mtu only from 1.1.0, ips[].version only before 1.0.0', (t) => {
  for (const v of ['0.3.0', '0.3.1', '0.4.0']) {
    const r = addResult(dual, v);
    t.deepEqual(
      r.ips.map((ip) => ip.version),
      ['4', '6'],
    );
    t.false('mtu' in (r.interfaces[1] ?? {}), v);
  }
  for (const v of ['1.0.0', '1.1.0']) {
    t.false(
      addResult(dual, v).ips.some((ip) => 'version' in ip),
      v,
    );
  }
  t.false('mtu' in (addResult(pod, '1.0.0').interfaces[1] ?? {}));
});

test('without a gateway, neither ips[].gateway nor routes[].gw', (t) => {
  const r = addResult({ ...dual, gateway4: undefined, gateway6: undefined }, '1.0.0');
  t.deepEqual(r.ips, [
    { address: '100.64.0.5/32', interface: 1 },
    { address: 'fd64::5/128', interface: 1 },
  ]);
  t.deepEqual(r.routes, [{ dst: '0.0.0.0/0' }, { dst: '::/0' }]);
});

test('an IPv6-only pod gets only the IPv6 default route', (t) => {
  const r = addResult({ ...dual, addresses: ['fd64::5'] }, '1.1.0');
  t.deepEqual(r.routes, [{ dst: '::/0', gw: 'fe80::ecee:eeff:feee:eeee' }]);
});

test('rejects an unsupported version and a malformed address', (t) => {
  t.throws(() => addResult(pod, '0.2.0'), { message: /unsupported cniVersion "0.2.0"/ });
  t.throws(() => addResult({ ...pod, addresses: ['100.64.0.5/32'] }, '1.1.0'), {
    message: /not a plain IP address/,
  });
});

const full: AddResult = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'wm1a2b3c4d5e6', mac: 'ee:ee:ee:ee:ee:ee', mtu: 1500 },
    { name: 'eth0', sandbox: '/run/netns/x', mtu: 1380, socketPath: '/s', pciID: '0000:00:01.0' },
  ],
  ips: [{ address: 'fd64::5/128', interface: 1 }],
  routes: [
    { dst: '::/0', gw: 'fe80::1', mtu: 1380, advmss: 1340, priority: 5, table: 7, scope: 0 },
  ],
  dns: { nameservers: ['fd96::a'] },
};

test('convertResult: below 1.1.0 the fields of 1.1 go; below 1.0.0 each ip gains its version', (t) => {
  t.deepEqual(convertResult(full, '1.1.0'), full);
  const v100 = convertResult(full, '1.0.0');
  t.deepEqual(v100.interfaces, [
    { name: 'wm1a2b3c4d5e6', mac: 'ee:ee:ee:ee:ee:ee' },
    { name: 'eth0', sandbox: '/run/netns/x' },
  ]);
  t.deepEqual(v100.routes, [{ dst: '::/0', gw: 'fe80::1' }]);
  t.deepEqual(v100.ips, [{ address: 'fd64::5/128', interface: 1 }]);
  t.deepEqual(v100.dns, full.dns);
  for (const v of ['0.3.0', '0.3.1', '0.4.0']) {
    const old = convertResult(full, v);
    t.is(old.cniVersion, v);
    t.deepEqual(old.ips, [{ version: '6', address: 'fd64::5/128', interface: 1 }]);
    t.deepEqual(old.interfaces, v100.interfaces);
  }
  // The input is left as it was.
  t.is(full.interfaces[1]?.mtu, 1380);
});

test('convertResult: up from 0.x drops ips[].version; every pair agrees with a direct render', (t) => {
  t.deepEqual(convertResult(addResult(dual, '0.4.0'), '1.0.0'), addResult(dual, '1.0.0'));
  // What 1.1.0 alone carries (the interface MTU) is lost on the way down, nothing else.
  const noMtu = (r: AddResult) => ({
    ...r,
    interfaces: r.interfaces.map((i) => {
      const copy = { ...i };
      delete copy.mtu;
      return copy;
    }),
  });
  for (const from of SUPPORTED_VERSIONS) {
    for (const to of SUPPORTED_VERSIONS) {
      const converted = convertResult(addResult(dual, from), to);
      const direct = addResult(dual, to);
      t.deepEqual(converted, from === '1.1.0' ? direct : noMtu(direct), `${from} -> ${to}`);
    }
  }
});

test('convertResult: unsupported versions and an ip without an address are refused', (t) => {
  t.throws(() => convertResult(full, '0.2.0'), { message: /unsupported cniVersion "0.2.0"/ });
  t.throws(() => convertResult({ ...full, cniVersion: '2.0.0' }, '1.0.0'), {
    message: /unsupported cniVersion "2.0.0"/,
  });
  t.throws(() => convertResult({ ...full, ips: [{ address: 'x/1' }] }, '0.4.0'), {
    message: /"x\/1" is not an address in CIDR notation/,
  });
});

// What chaining needs: the reference portmap and bandwidth plugins read our result
// as prevResult with the reference library's types and print it back. With no port
// mappings or limits configured they do nothing else, so this runs without a netns
// (CNI_NETNS_OVERRIDE skips skel's own-netns check).
const runner = new ProcessRunner();
const chained = test.macro(async (t, plugin: string, cniVersion: string) => {
  const ours = addResult(dual, cniVersion);
  const { stdout, stderr, code } = await runner.run([toolPath(`cni-plugins/${plugin}`)], {
    input: JSON.stringify({ cniVersion, name: 'wiremesh', type: plugin, prevResult: ours }),
    env: {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c0ffee',
      CNI_NETNS: '/proc/self/ns/net',
      CNI_NETNS_OVERRIDE: '1',
      CNI_IFNAME: 'eth0',
      CNI_PATH: '/nonexistent',
    },
    allowFailure: true,
  });
  t.is(code, 0, `${plugin} failed: ${stdout}${stderr}`);
  // The 1.x Go types drop an empty dns object; everything else must come back as sent.
  const withoutEmptyDns = (r: object) => ({ ...r, dns: undefined });
  t.deepEqual(withoutEmptyDns(JSON.parse(stdout) as object), withoutEmptyDns(ours));
});
for (const plugin of ['portmap', 'bandwidth']) {
  for (const version of SUPPORTED_VERSIONS) {
    test(`${plugin} takes the ${version} result as prevResult`, chained, plugin, version);
  }
}
