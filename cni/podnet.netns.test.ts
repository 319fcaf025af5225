// Kernel tier: pod wiring against the real kernel, inside a throwaway "node" namespace.
import test from 'ava';
import { createHash } from 'node:crypto';
import { defaultRunner, requireRoot, type Runner } from '../sys/index.ts';
import { setupPodNetwork, teardownPodNetwork, checkPodNetwork, hostVethName } from './podnet.ts';

const tag = `c${process.pid % 100000}`;
const nodeNs = `wmk-${tag}-node`;
const pods = [`wmk-${tag}-p1`, `wmk-${tag}-p2`];
const inNode: Runner = {
  run: (argv, o) => defaultRunner.run(['nsenter', `--net=/run/netns/${nodeNs}`, '--', ...argv], o),
};
const spec = (i: number) => ({
  netns: `/run/netns/${pods[i] ?? ''}`,
  podIfName: 'eth0',
  hostIfName: hostVethName('test', `${tag}-${i}`),
  addresses: [`100.64.250.${10 + i}`],
  mtu: 1440,
});

test.before(async () => {
  requireRoot('the kernel tests');
  for (const ns of [nodeNs, ...pods]) await defaultRunner.run(['ip', 'netns', 'add', ns]);
  await inNode.run(['ip', 'link', 'set', 'lo', 'up']);
  await inNode.run(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
});

test.after.always(async () => {
  for (const ns of [nodeNs, ...pods])
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
});

test.serial('host veth names follow the fixed scheme and fit in 15 characters', (t) => {
  const sha = (s: string) => createHash('sha1').update(s).digest('hex');
  t.is(hostVethName('default', 'web-0'), `wm${sha('default.web-0').slice(0, 11)}`);
  t.regex(hostVethName('default', 'web-0'), /^wm[0-9a-f]{11}$/);
  // Namespaces are DNS labels (no dots), so "<namespace>.<pod>" is unambiguous.
  t.not(hostVethName('a', 'b-c'), hostVethName('a-b', 'c'));
});

test.serial(
  'two pods on a node reach each other through their /32s and the proxy-ARP gateway',
  async (t) => {
    const r0 = await setupPodNetwork(inNode, spec(0));
    await setupPodNetwork(inNode, spec(1));
    t.regex(r0.hostMac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    const ping = await defaultRunner.run([
      'ip',
      'netns',
      'exec',
      pods[0] ?? '',
      'ping',
      '-c',
      '1',
      '-W',
      '2',
      '100.64.250.11',
    ]);
    t.regex(ping.stdout, / 0% packet loss/);
    const mtu = await defaultRunner.run([
      'ip',
      'netns',
      'exec',
      pods[0] ?? '',
      'cat',
      '/sys/class/net/eth0/mtu',
    ]);
    t.is(mtu.stdout.trim(), '1440');
    t.deepEqual(await checkPodNetwork(inNode, spec(0)), []);
  },
);

test.serial('CHECK reports what is missing', async (t) => {
  await defaultRunner.run([
    'ip',
    'netns',
    'exec',
    pods[1] ?? '',
    'ip',
    'addr',
    'flush',
    'dev',
    'eth0',
  ]);
  const problems = await checkPodNetwork(inNode, spec(1));
  t.true(
    problems.some((p) => p.includes('address 100.64.250.11 is missing')),
    problems.join('; '),
  );
});

test.serial('ADD again replaces a leftover pair; DEL is idempotent', async (t) => {
  await setupPodNetwork(inNode, spec(1));
  t.deepEqual(await checkPodNetwork(inNode, spec(1)), []);
  await teardownPodNetwork(inNode, spec(1).hostIfName);
  await teardownPodNetwork(inNode, spec(1).hostIfName);
  const links = await inNode.run(['ip', '-j', 'link', 'show']);
  t.false(links.stdout.includes(spec(1).hostIfName));
  const routes = await inNode.run(['ip', 'route', 'show']);
  t.false(routes.stdout.includes('100.64.250.11'), 'the host route went with the pair');
});

test.serial('a pair is removed only for the attachment that owns it', async (t) => {
  const s = { ...spec(0), owner: 'wiremesh.sandbox-b.eth0' };
  await setupPodNetwork(inNode, s);
  await teardownPodNetwork(inNode, s.hostIfName, 'wiremesh.sandbox-a.eth0');
  t.deepEqual(
    await checkPodNetwork(inNode, s),
    [],
    'a dead sandbox releasing its handle leaves the live pair',
  );
  await teardownPodNetwork(inNode, s.hostIfName, 'wiremesh.sandbox-b.eth0');
  t.deepEqual(await checkPodNetwork(inNode, s), [`host interface ${s.hostIfName} is missing`]);
});
