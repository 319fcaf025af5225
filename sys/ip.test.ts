// IpCli against a scripted runner: the argv it sends and how it reads iproute2's JSON
// (outputs captured from iproute2 6.1 on this project's kernel); FakeIp where a driver
// could notice a difference from the kernel.
import test from 'ava';
import { CommandError, type RunOptions, type RunResult, type Runner } from './exec.ts';
import { FakeIp } from './fakeip.ts';
import { IpCli } from './ip.ts';

class ScriptedRunner implements Runner {
  readonly argvs: string[] = [];
  private readonly answers: [RegExp, Partial<RunResult>][];
  constructor(answers: [RegExp, Partial<RunResult>][] = []) {
    this.answers = answers;
  }
  async run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    const line = argv.join(' ');
    this.argvs.push(line);
    const answer = this.answers.find(([re]) => re.test(line))?.[1] ?? {};
    const res = { stdout: '', stderr: '', code: 0, ...answer };
    if (res.code !== 0 && !options?.allowFailure)
      throw new CommandError(argv, res.code, res.stdout, res.stderr, `exit code ${res.code}`);
    return res;
  }
}

const VXLAN_LINK = JSON.stringify([
  {
    ifindex: 4,
    ifname: 'wiremesh.vxlan',
    flags: ['BROADCAST', 'MULTICAST', 'UP', 'LOWER_UP'],
    mtu: 1450,
    link_type: 'ether',
    address: '0e:00:00:00:00:01',
    linkinfo: {
      info_kind: 'vxlan',
      info_data: { id: 4100, local: '198.18.9.1', link: 'va', port: 4789, learning: false },
    },
  },
]);

test('linkDetails reads a VXLAN device', async (t) => {
  const ip = new IpCli(new ScriptedRunner([[/-d link show/, { stdout: VXLAN_LINK }]]));
  t.deepEqual(await ip.linkDetails('wiremesh.vxlan'), {
    name: 'wiremesh.vxlan',
    index: 4,
    mtu: 1450,
    up: true,
    kind: 'vxlan',
    mac: '0e:00:00:00:00:01',
    vxlan: { vni: 4100, port: 4789, local: '198.18.9.1', learning: false, underlayDev: 'va' },
  });
});

test('linkDetails of a missing device is null', async (t) => {
  const stderr = 'Device "wiremesh.vxlan" does not exist.\n';
  const ip = new IpCli(new ScriptedRunner([[/link show/, { code: 1, stderr }]]));
  t.is(await ip.linkDetails('wiremesh.vxlan'), null);
});

test('linkAddVxlan and linkAddIpip send the attributes the drivers rely on', async (t) => {
  const runner = new ScriptedRunner();
  const ip = new IpCli(runner);
  await ip.linkAddVxlan({
    name: 'wiremesh.vxlan',
    vni: 4100,
    port: 4789,
    local: '198.18.0.1',
    mtu: 1450,
    mac: '0e:57:64:7f:00:01',
  });
  await ip.linkAddIpip({ name: 'wiremesh.ipip', local: '198.18.0.1', mtu: 1480 });
  t.deepEqual(runner.argvs, [
    'ip link add name wiremesh.vxlan address 0e:57:64:7f:00:01 mtu 1450 type vxlan id 4100 dstport 4789 local 198.18.0.1 nolearning',
    'ip link add name wiremesh.ipip mtu 1480 type ipip local 198.18.0.1',
  ]);
  await t.throwsAsync(() => ip.linkSetMac('wiremesh.vxlan', '0E-57-64-7F-00-01'), {
    message: /invalid MAC/,
  });
});

test('FDB entries: listed from bridge -j, appended and deleted as permanent self entries', async (t) => {
  const stdout = JSON.stringify([
    { mac: '0e:00:00:00:00:02', dst: '198.18.9.2', flags: ['self'], state: 'permanent' },
    { mac: '0e:00:00:00:00:03', flags: ['self'], state: 'permanent' },
  ]);
  const runner = new ScriptedRunner([[/fdb show/, { stdout }]]);
  const ip = new IpCli(runner);
  t.deepEqual(await ip.fdbList('wiremesh.vxlan'), [
    { dev: 'wiremesh.vxlan', mac: '0e:00:00:00:00:02', dst: '198.18.9.2' },
  ]);
  const entry = { dev: 'wiremesh.vxlan', mac: '0e:00:00:00:00:02', dst: '198.18.9.2' };
  await ip.fdbAppend(entry);
  await ip.fdbDel(entry);
  t.deepEqual(runner.argvs.slice(1), [
    'bridge fdb append 0e:00:00:00:00:02 dev wiremesh.vxlan dst 198.18.9.2 self permanent',
    'bridge fdb del 0e:00:00:00:00:02 dev wiremesh.vxlan dst 198.18.9.2 self',
  ]);
});

test('neighbour entries of both families, permanent', async (t) => {
  const stdout = JSON.stringify([
    { dst: '100.127.0.2', lladdr: '0e:00:00:00:00:02', state: ['PERMANENT'] },
    { dst: 'fd00::2', lladdr: '0e:00:00:00:00:02', state: ['PERMANENT'] },
  ]);
  const runner = new ScriptedRunner([[/neigh show/, { stdout }]]);
  const ip = new IpCli(runner);
  t.deepEqual(await ip.neighList('wiremesh.vxlan'), [
    { dev: 'wiremesh.vxlan', dst: '100.127.0.2', lladdr: '0e:00:00:00:00:02' },
    { dev: 'wiremesh.vxlan', dst: 'fd00::2', lladdr: '0e:00:00:00:00:02' },
  ]);
  await ip.neighReplace({ dev: 'wiremesh.vxlan', dst: '100.127.0.2', lladdr: '0e:00:00:00:00:02' });
  t.is(
    runner.argvs.at(-1),
    'ip neigh replace 100.127.0.2 lladdr 0e:00:00:00:00:02 dev wiremesh.vxlan nud permanent',
  );
});

test('routes with a gateway on the link: onlink written and read back', async (t) => {
  const stdout = JSON.stringify([
    { dst: '100.64.1.0/26', gateway: '100.127.0.2', flags: ['onlink'] },
    { dst: '100.127.0.9', flags: [] },
  ]);
  const runner = new ScriptedRunner([[/-4 route show/, { stdout }]]);
  const ip = new IpCli(runner);
  t.deepEqual(await ip.routeList('wiremesh.vxlan', 253), [
    {
      dst: '100.64.1.0/26',
      dev: 'wiremesh.vxlan',
      protocol: 253,
      gateway: '100.127.0.2',
      onlink: true,
    },
    { dst: '100.127.0.9/32', dev: 'wiremesh.vxlan', protocol: 253 },
  ]);
  await ip.routeReplace({
    dst: '100.64.1.0/26',
    dev: 'wiremesh.vxlan',
    gateway: '100.127.0.2',
    onlink: true,
    protocol: 253,
  });
  t.is(
    runner.argvs.at(-1),
    'ip -4 route replace 100.64.1.0/26 dev wiremesh.vxlan via 100.127.0.2 onlink proto 253',
  );
});

test('source rules: only `from CIDR lookup TABLE` rules of that table', async (t) => {
  const v4 = JSON.stringify([
    { priority: 0, src: 'all', table: 'local' },
    { priority: 5182, not: null, fwmark: '0x51825', src: 'all', table: '51825' },
    { priority: 5183, src: '100.64.0.0', srclen: 16, table: '51826' },
    { priority: 5183, src: '100.65.0.0', srclen: 16, table: '9' },
  ]);
  const v6 = JSON.stringify([{ priority: 5183, src: 'fd00:64::', srclen: 48, table: '51826' }]);
  const runner = new ScriptedRunner([
    [/-4 rule show/, { stdout: v4 }],
    [/-6 rule show/, { stdout: v6 }],
  ]);
  const ip = new IpCli(runner);
  t.deepEqual(await ip.sourceRuleList(51826), [
    { family: 4, priority: 5183, from: '100.64.0.0/16', table: 51826 },
    { family: 6, priority: 5183, from: 'fd00:64::/48', table: 51826 },
  ]);
  await ip.sourceRuleAdd({ family: 4, priority: 5183, from: '100.64.0.0/16', table: 51826 });
  t.is(runner.argvs.at(-1), 'ip -4 rule add from 100.64.0.0/16 table 51826 priority 5183');
});

test('FakeIp: a kind the kernel lacks fails as ip does; duplicates and missing devices too', async (t) => {
  const ip = new FakeIp();
  ip.unsupportedKinds.add('ipip');
  const err = await t.throwsAsync(() =>
    ip.linkAddIpip({ name: 'wiremesh.ipip', local: '198.18.0.1', mtu: 1480 }),
  );
  t.regex(err.message, /Unknown device type/);
  t.is(await ip.linkShow('wiremesh.ipip'), null);

  await t.throwsAsync(() =>
    ip.fdbAppend({ dev: 'wiremesh.vxlan', mac: '0e:00:00:00:00:02', dst: '198.18.0.2' }),
  );
  const spec = {
    name: 'wiremesh.vxlan',
    vni: 4100,
    port: 4789,
    local: '198.18.0.1',
    mtu: 1450,
    mac: '0e:00:00:00:00:01',
  };
  await ip.linkAddVxlan(spec);
  await t.throwsAsync(() => ip.linkAddVxlan(spec), { message: /File exists/ });
  const entry = { dev: 'wiremesh.vxlan', mac: '0e:00:00:00:00:02', dst: '198.18.0.2' };
  await ip.fdbAppend(entry);
  await t.throwsAsync(() => ip.fdbAppend(entry), { message: /File exists/ });
  await ip.neighReplace({ dev: 'wiremesh.vxlan', dst: '100.127.0.2', lladdr: entry.mac });
  t.like(await ip.linkDetails('wiremesh.vxlan'), { kind: 'vxlan', mac: '0e:00:00:00:00:01' });
  await ip.linkDelete('wiremesh.vxlan');
  t.deepEqual(await ip.fdbList('wiremesh.vxlan'), []);
  t.deepEqual(await ip.neighList('wiremesh.vxlan'), []);
});
