// Kernel tier: pod wiring against the real kernel, inside a throwaway "node" namespace,
// through both implementations: the agent's netlink worker (wiremesh-netlinkd, started
// inside the node namespace as the agent runs it in the node's) and `ip -batch`.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { readdir, readlink, stat } from 'node:fs/promises';
import { CommandError, defaultRunner, requireRoot, toolPath, type Runner } from '../sys/index.ts';
import { CommandWiring, hostVethName, legacyHostVethName, type PodWiring } from './podnet.ts';
import { NetlinkWorker, WiringUnavailableError } from './netlinkd.ts';
import { nodeNetnsCheck } from './hostnetns.ts';

const tag = `c${process.pid % 100000}`;
const nodeNs = `wmk-${tag}-node`;
const pods = [`wmk-${tag}-p1`, `wmk-${tag}-p2`];
const inNode: Runner = {
  run: (argv, o) => defaultRunner.run(['nsenter', `--net=/run/netns/${nodeNs}`, '--', ...argv], o),
};
const spec = (i: number) => ({
  netns: `/run/netns/${pods[i] ?? ''}`,
  podIfName: 'eth0',
  hostIfName: hostVethName(`${tag}-${i}`, 'eth0'),
  addresses: [`100.64.250.${10 + i}`],
  mtu: 1440,
});

let worker: NetlinkWorker | undefined;
const workerLog: string[] = [];
const implementations: Record<string, () => PodWiring> = {
  'ip -batch': () => new CommandWiring(inNode),
  'netlink worker': () => {
    if (!worker) throw new Error('the netlink worker did not start');
    return worker;
  },
};

test.before(async () => {
  requireRoot('the kernel tests');
  for (const ns of [nodeNs, ...pods]) await defaultRunner.run(['ip', 'netns', 'add', ns]);
  await inNode.run(['ip', 'link', 'set', 'lo', 'up']);
  await inNode.run(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  worker = new NetlinkWorker({
    binary: toolPath('wiremesh-netlinkd'),
    argvPrefix: ['nsenter', `--net=/run/netns/${nodeNs}`, '--'],
    log: (msg, fields) => workerLog.push(`${msg} ${JSON.stringify(fields)}`),
  });
  await worker.start();
});

test.after.always(async () => {
  await worker?.stop();
  for (const ns of [nodeNs, ...pods])
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
});

async function inPod(i: number, argv: string[]) {
  return defaultRunner.run(['ip', 'netns', 'exec', pods[i] ?? '', ...argv], { allowFailure: true });
}

test.serial('host veth names follow the fixed scheme and fit in 15 characters', (t) => {
  const sha = (s: string) => createHash('sha1').update(s).digest('hex');
  t.is(hostVethName('0123abcd', 'eth0'), `wm${sha('0123abcd.eth0').slice(0, 11)}`);
  t.regex(hostVethName('0123abcd', 'eth0'), /^wm[0-9a-f]{11}$/);
  t.not(hostVethName('0123abcd', 'eth0'), hostVethName('0123abcd', 'eth1'));
  // The scheme of earlier versions, still looked up by DEL, CHECK and GC.
  t.is(legacyHostVethName('default', 'web-0'), `wm${sha('default.web-0').slice(0, 11)}`);
});

for (const [impl, wiring] of Object.entries(implementations)) {
  const serial = (title: string, fn: (t: ExecutionContext) => Promise<void>) =>
    test.serial(`${impl}: ${title}`, async (t) => {
      t.teardown(async () => {
        for (const i of [0, 1])
          await inNode.run(['ip', 'link', 'del', spec(i).hostIfName], { allowFailure: true });
      });
      await fn(t);
    });

  serial(
    'two pods on a node reach each other through their /32s and the proxy-ARP gateway',
    async (t) => {
      const w = wiring();
      const r0 = await w.setup(spec(0));
      await w.setup(spec(1));
      t.regex(r0.hostMac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
      const ping = await inPod(0, ['ping', '-c', '1', '-W', '2', '100.64.250.11']);
      t.regex(ping.stdout, / 0% packet loss/);
      t.is((await inPod(0, ['cat', '/sys/class/net/eth0/mtu'])).stdout.trim(), '1440');
      t.is((await inPod(0, ['cat', '/sys/class/net/eth0/address'])).stdout.trim(), r0.podMac);
      const proxyArp = await inNode.run([
        'sysctl',
        '-n',
        `net.ipv4.conf.${spec(0).hostIfName}.proxy_arp`,
      ]);
      t.is(proxyArp.stdout.trim(), '1');
      const route = await inNode.run(['ip', 'route', 'show', '100.64.250.10/32']);
      t.regex(route.stdout, /dev wm[0-9a-f]{11} proto 252 scope link/);
      t.deepEqual(await w.check(spec(0)), []);
    },
  );

  serial(
    'dual-stack pods reach each other over IPv4 and IPv6 (fe80::1 gateway, host /128 routes)',
    async (t) => {
      const w = wiring();
      const dual = (i: number) => ({
        ...spec(i),
        addresses: [`100.64.250.${10 + i}`, `fd00:64::${10 + i}`],
      });
      await inNode.run(['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=0']);
      await w.setup(dual(0));
      await w.setup(dual(1));
      const forwarding = await inNode.run(['sysctl', '-n', 'net.ipv6.conf.all.forwarding']);
      t.is(forwarding.stdout.trim(), '1', 'the node forwards IPv6 once it has an IPv6 pod');
      const ping4 = await inPod(0, ['ping', '-c', '1', '-W', '2', '100.64.250.11']);
      t.regex(ping4.stdout, / 0% packet loss/, ping4.stdout + ping4.stderr);
      const ping6 = await inPod(0, ['ping', '-6', '-c', '1', '-W', '2', 'fd00:64::11']);
      t.regex(ping6.stdout, / 0% packet loss/, ping6.stdout + ping6.stderr);
      const addrs = await inPod(1, ['ip', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'global']);
      t.regex(addrs.stdout, /inet6 fd00:64::11\/128/);
      const def6 = await inPod(1, ['ip', '-6', 'route', 'show', 'default']);
      t.regex(def6.stdout, /default via fe80::1 dev eth0/);
      const route6 = await inNode.run(['ip', '-6', 'route', 'show', 'fd00:64::10/128']);
      t.regex(route6.stdout, /dev wm[0-9a-f]{11} proto 252/);
      t.deepEqual(await w.check(dual(0)), []);
      await inPod(1, ['ip', '-6', 'route', 'del', 'default']);
      t.deepEqual(await w.check(dual(1)), ['IPv6 default route via fe80::1 is missing in the pod']);
    },
  );

  serial('CHECK reports what is missing', async (t) => {
    const w = wiring();
    await w.setup(spec(1));
    await inPod(1, ['ip', 'addr', 'flush', 'dev', 'eth0']);
    const problems = await w.check(spec(1));
    t.true(
      problems.some((p) => p.includes('address 100.64.250.11 is missing')),
      problems.join('; '),
    );
    t.true(
      problems.some((p) => p.includes('default route via 169.254.1.1 is missing')),
      problems.join('; '),
    );
  });

  serial('ADD again replaces a leftover pair; DEL is idempotent', async (t) => {
    const w = wiring();
    await w.setup(spec(1));
    await w.setup(spec(1));
    t.deepEqual(await w.check(spec(1)), []);
    await w.teardown(spec(1).hostIfName);
    await w.teardown(spec(1).hostIfName);
    const links = await inNode.run(['ip', '-j', 'link', 'show']);
    t.false(links.stdout.includes(spec(1).hostIfName));
    const routes = await inNode.run(['ip', 'route', 'show']);
    t.false(routes.stdout.includes('100.64.250.11'), 'the host route went with the pair');
    t.deepEqual(await w.check(spec(1)), [`host interface ${spec(1).hostIfName} is missing`]);
  });

  serial('a pair is removed only for the attachment that owns it', async (t) => {
    const w = wiring();
    const s = { ...spec(0), owner: 'wiremesh.sandbox-b.eth0' };
    await w.setup(s);
    await w.teardown(s.hostIfName, 'wiremesh.sandbox-a.eth0');
    t.deepEqual(await w.check(s), [], 'a dead sandbox releasing its handle leaves the live pair');
    await w.teardown(s.hostIfName, 'wiremesh.sandbox-b.eth0');
    t.deepEqual(await w.check(s), [`host interface ${s.hostIfName} is missing`]);
  });

  serial('an ADD whose pair name is held by another attachment fails and leaves it', async (t) => {
    const w = wiring();
    const first = { ...spec(0), owner: 'wiremesh.sandbox-a.eth0' };
    await w.setup(first);
    const e = await t.throwsAsync(
      w.setup({ ...spec(1), hostIfName: first.hostIfName, owner: 'wiremesh.sandbox-b.eth0' }),
    );
    t.regex(e?.message ?? '', /wm[0-9a-f]{11}/);
    t.deepEqual(await w.check(first), [], 'the first attachment is still wired');
    const ping = await inPod(0, ['ip', '-j', 'addr', 'show', 'dev', 'eth0']);
    t.regex(ping.stdout, /100\.64\.250\.10/);
  });

  serial('a missing pod namespace is an error naming it, and leaves nothing behind', async (t) => {
    const w = wiring();
    const s = { ...spec(0), netns: `/run/netns/wmk-${tag}-absent` };
    const e = await t.throwsAsync(w.setup(s));
    t.regex(e?.message ?? '', /wmk-c\d+-absent does not exist/);
    const links = await inNode.run(['ip', '-j', 'link', 'show']);
    t.false(links.stdout.includes(s.hostIfName));
  });
}

test.serial('netlink worker: no thread of the worker stays in a pod namespace', async (t) => {
  const w = worker;
  if (!w?.pid) throw new Error('the netlink worker is not running');
  const pid = w.pid;
  t.teardown(async () => {
    for (const i of [0, 1])
      await inNode.run(['ip', 'link', 'del', spec(i).hostIfName], { allowFailure: true });
  });
  await Promise.all([w.setup(spec(0)), w.setup(spec(1)), w.check(spec(0))]);
  const nodeNsId = (await stat(`/run/netns/${nodeNs}`)).ino;
  const strays = async () => {
    const out: string[] = [];
    for (const task of await readdir(`/proc/${pid}/task`)) {
      const ns = await readlink(`/proc/${pid}/task/${task}/ns/net`).catch(() => null);
      if (ns !== null && ns !== `net:[${nodeNsId}]`) out.push(`thread ${task} in ${ns}`);
    }
    return out;
  };
  // A thread that did a pod's work is destroyed as its goroutine ends, just after replying.
  let left = await strays();
  for (let i = 0; i < 50 && left.length; i++) {
    await new Promise((r) => setTimeout(r, 20));
    left = await strays();
  }
  t.deepEqual(left, []);
});

test.serial(
  'netlink worker: a killed worker is restarted, and the next ADD succeeds',
  async (t) => {
    const w = worker;
    if (!w?.pid) throw new Error('the netlink worker is not running');
    const before = w.pid;
    t.teardown(() => inNode.run(['ip', 'link', 'del', spec(0).hostIfName], { allowFailure: true }));
    process.kill(before, 'SIGKILL');
    await new Promise((resolve) => w.once('exited', resolve));
    await w.setup(spec(0));
    t.deepEqual(await w.check(spec(0)), []);
    t.not(w.pid, before);
    t.is(w.restarts, 1);
    t.true(
      workerLog.some((l) => l.includes('netlink worker exited; restarting it')),
      workerLog.join('\n'),
    );
  },
);

test.serial('netlink worker: requests after stop() fail as unavailable, at once', async (t) => {
  const w = new NetlinkWorker({
    binary: toolPath('wiremesh-netlinkd'),
    argvPrefix: ['nsenter', `--net=/run/netns/${nodeNs}`, '--'],
  });
  await w.start();
  await w.stop();
  const e = await t.throwsAsync(w.teardown(spec(0).hostIfName));
  t.true(e instanceof WiringUnavailableError, String(e));
});

test.serial(
  "a namespace is known as the node's by identity: its bind mount and a /proc path alike",
  async (t) => {
    const pid = worker?.pid;
    if (!pid) throw new Error('the netlink worker is not running');
    // The worker runs in the test's node namespace: its /proc path names that namespace.
    const isNode = nodeNetnsCheck([`/run/netns/${nodeNs}`]);
    t.true(await isNode(`/run/netns/${nodeNs}`));
    t.true(await isNode(`/proc/${pid}/ns/net`));
    t.false(await isNode(`/run/netns/${pods[0] ?? ''}`));
    t.false(await isNode('/proc/self/ns/net'), "the test's own namespace is another one");
    t.false(await isNode(`/run/netns/wmk-${tag}-absent`));
  },
);

test.serial(
  "netlink worker: commands run in the worker's namespace (the node's), with their input, exit code and pid",
  async (t) => {
    const w = worker;
    if (!w) throw new Error('the netlink worker did not start');
    // The node namespace has only lo: a command run there sees nothing else.
    const links = JSON.parse((await w.run(['ip', '-j', 'link', 'show'])).stdout) as {
      ifname: string;
    }[];
    t.false(
      links.some((l) => l.ifname === 'eth0' || l.ifname.startsWith('wm')),
      JSON.stringify(links.map((l) => l.ifname)),
    );
    t.deepEqual(
      (await inNode.run(['ip', '-j', 'link', 'show'])).stdout,
      (await w.run(['ip', '-j', 'link', 'show'])).stdout,
    );
    // Its pid is told before it ends, and is the program's own.
    let told = 0;
    const r = await w.run(['sh', '-c', 'echo $$; cat | wc -c'], {
      input: 'x'.repeat(3 << 20),
      onSpawn: (pid) => (told = pid),
    });
    t.deepEqual(r.stdout.trim().split('\n').map(Number), [told, 3 << 20]);
    // Bytes that are not text arrive as they were sent.
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    t.is(
      (await w.run(['sha256sum'], { input: bytes })).stdout.split(' ')[0],
      createHash('sha256').update(bytes).digest('hex'),
    );
    const fail = await t.throwsAsync(w.run(['sh', '-c', 'echo nope >&2; exit 5']), {
      instanceOf: CommandError,
    });
    t.is(fail?.code, 5);
    t.regex(fail?.message ?? '', /exit code 5: nope/);
    await t.throwsAsync(w.run(['sleep', '10'], { timeoutMs: 200 }), {
      message: /timed out after 200 ms/,
    });
    await t.throwsAsync(w.run(['wiremesh-no-such-program']), { message: /cannot start/ });
  },
);
