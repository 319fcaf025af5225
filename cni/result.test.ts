import test from 'ava';
import { ProcessRunner } from '../sys/exec.ts';
import { toolPath } from '../sys/host.ts';
import { addResult, type PodInterfaceResult } from './result.ts';

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
for (const version of ['1.1.0', '1.0.0', '0.4.0', '0.3.1']) {
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
  for (const version of ['1.1.0', '1.0.0', '0.4.0', '0.3.1']) {
    test(`${plugin} takes the ${version} result as prevResult`, chained, plugin, version);
  }
}
