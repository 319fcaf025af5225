// Kernel tier: two userspace WireGuard tunnels (supervised wireguard-go, as on a kernel
// without the module) between two throwaway network namespaces joined by a veth pair,
// configured only through WgCli; and the supervisor bringing a killed wireguard-go back.
// Underlay 198.18.251.0/24, tunnel addresses in 100.127.251.0/24; nothing on the host's
// own namespace but the wireguard-go UAPI sockets, which go with the processes. The
// directory /var/run/wireguard itself stays: lab nodes bind-mount their own over it.
import test from 'ava';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  PrefixRunner,
  defaultRunner as runner,
  requireProgram,
  requireRoot,
  toolPath,
} from '../sys/index.ts';
import { WgCli, WireguardGoSupervisor, type WgClient } from './index.ts';

const RUN_DIR = '/var/run/wireguard';
const PORT = 51825;
const tag = process.pid % 100000;

interface End {
  netns: string;
  iface: string;
  underlay: string;
  tunnel: string;
  wg: WgClient;
  supervisor?: WireguardGoSupervisor;
  privateKey: string;
  publicKey: string;
  output: string[];
}

const ends: End[] = ['a', 'b'].map((side, i) => {
  const netns = `wmt-${tag}-${side}`;
  return {
    netns,
    iface: `wmt${tag}${side}`,
    underlay: `198.18.251.${i + 1}`,
    tunnel: `100.127.251.${i + 1}`,
    wg: new WgCli(new PrefixRunner(runner, ['ip', 'netns', 'exec', netns])),
    privateKey: '',
    publicKey: '',
    output: [],
  };
});
const [A, B] = ends as [End, End];
const wireguardGoPids = new Set<number>();

const inNs = (end: End, argv: string[]) => runner.run(['ip', 'netns', 'exec', end.netns, ...argv]);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function cleanup(): Promise<void> {
  for (const end of ends) await end.supervisor?.stop();
  for (const end of ends) {
    if (existsSync(`/run/netns/${end.netns}`)) {
      // Anything still running in a namespace of this test was started by it.
      const res = await runner.run(['ip', 'netns', 'pids', end.netns], { allowFailure: true });
      for (const pid of res.stdout.split(/\s+/).filter(Boolean).map(Number)) {
        if (pid !== process.pid) process.kill(pid, 'SIGKILL');
      }
      await runner.run(['ip', 'netns', 'del', end.netns], { allowFailure: true });
    }
  }
  for (const pid of wireguardGoPids) {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  for (let i = 0; i < 100 && [...wireguardGoPids].some(alive); i++) await sleep(20);
  // A wireguard-go killed above leaves its socket; these names are this test's own.
  for (const end of ends) await rm(`${RUN_DIR}/${end.iface}.sock`, { force: true });
}

async function configure(end: End, peer: End): Promise<void> {
  await end.wg.setPrivateKey(end.iface, end.privateKey);
  await end.wg.setListenPort(end.iface, PORT);
  await end.wg.setPeer(end.iface, {
    publicKey: peer.publicKey,
    endpoint: `${peer.underlay}:${PORT}`,
    allowedIPs: [`${peer.tunnel}/32`],
    persistentKeepalive: 0,
  });
  await inNs(end, ['ip', 'addr', 'add', `${end.tunnel}/32`, 'dev', end.iface]);
  await inNs(end, ['ip', 'link', 'set', end.iface, 'up']);
  await inNs(end, ['ip', 'route', 'add', `${peer.tunnel}/32`, 'dev', end.iface]);
}

async function ping(from: End, to: End): Promise<string> {
  const res = await inNs(from, ['ping', '-c', '3', '-i', '0.2', '-W', '2', to.tunnel]);
  return res.stdout;
}

test.before(async () => {
  requireRoot('tunnels/wg.netns.test.ts');
  const binary = toolPath('wireguard-go');
  await requireProgram('wg', 'install wireguard-tools');
  for (const end of ends) {
    if (existsSync(`/run/netns/${end.netns}`)) throw new Error(`netns ${end.netns} already exists`);
  }
  for (const end of ends) {
    await runner.run(['ip', 'netns', 'add', end.netns]);
    await inNs(end, ['ip', 'link', 'set', 'lo', 'up']);
  }
  await runner.run(
    ['ip', '-n', A.netns, 'link', 'add', 'veth0', 'type', 'veth'].concat([
      'peer',
      'name',
      'veth0',
      'netns',
      B.netns,
    ]),
  );
  for (const end of ends) {
    await inNs(end, ['ip', 'addr', 'add', `${end.underlay}/24`, 'dev', 'veth0']);
    await inNs(end, ['ip', 'link', 'set', 'veth0', 'up']);
    end.privateKey = (await runner.run(['wg', 'genkey'])).stdout.trim();
    end.publicKey = (await runner.run(['wg', 'pubkey'], { input: end.privateKey })).stdout.trim();
    const supervisor = new WireguardGoSupervisor({
      binary,
      iface: end.iface,
      argvPrefix: ['ip', 'netns', 'exec', end.netns],
      log: (line) => end.output.push(line),
    });
    const record = (pid: number) => wireguardGoPids.add(pid);
    supervisor.on('started', record).on('restarted', record);
    end.supervisor = supervisor;
    await supervisor.start();
  }
});

test.after.always(cleanup);

test.serial('a missing device is null, not an error', async (t) => {
  t.is(await A.wg.show(`wmt${tag}x`), null);
  t.is(await new WgCli(runner).show(`wmt${tag}x`), null);
});

test.serial(
  'two wireguard-go tunnels set up with WgCli carry pings, with a handshake',
  async (t) => {
    await configure(A, B);
    await configure(B, A);

    // The private key went in on stdin: the device now has the matching public key.
    const before = await A.wg.show(A.iface);
    t.is(before?.publicKey, A.publicKey);
    t.is(before?.listenPort, PORT);
    t.false(JSON.stringify(before).includes(A.privateKey));

    t.regex(await ping(A, B), / 0% packet loss/);
    for (const [end, peer] of [
      [A, B],
      [B, A],
    ] as const) {
      const dev = await end.wg.show(end.iface);
      t.is(dev?.peers.length, 1);
      const p = dev?.peers[0];
      t.is(p?.publicKey, peer.publicKey);
      t.is(p?.endpoint, `${peer.underlay}:${PORT}`);
      t.deepEqual(p?.allowedIPs, [`${peer.tunnel}/32`]);
      t.true((p?.latestHandshake ?? 0) > 0, `${end.iface} saw a handshake`);
      t.true((p?.rxBytes ?? 0) > 0 && (p?.txBytes ?? 0) > 0, `${end.iface} counted traffic`);
    }
  },
);

test.serial(
  'setPeer replaces allowed IPs exactly, down to none, and removePeer removes',
  async (t) => {
    const spare = (
      await runner.run(['wg', 'pubkey'], { input: (await runner.run(['wg', 'genkey'])).stdout })
    ).stdout.trim();
    await A.wg.setPeer(A.iface, {
      publicKey: spare,
      endpoint: '[fd00::1]:51825',
      allowedIPs: ['100.127.252.0/24', 'fd00:251::/64'],
      persistentKeepalive: 25,
    });
    let p = (await A.wg.show(A.iface))?.peers.find((x) => x.publicKey === spare);
    t.deepEqual(p, {
      publicKey: spare,
      endpoint: '[fd00::1]:51825',
      allowedIPs: ['100.127.252.0/24', 'fd00:251::/64'],
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: 25,
    });
    await A.wg.setPeer(A.iface, {
      publicKey: spare,
      endpoint: null,
      allowedIPs: [],
      persistentKeepalive: 0,
    });
    p = (await A.wg.show(A.iface))?.peers.find((x) => x.publicKey === spare);
    t.like(p, { endpoint: '[fd00::1]:51825', allowedIPs: [], persistentKeepalive: 0 });
    await A.wg.removePeer(A.iface, spare);
    t.deepEqual(
      (await A.wg.show(A.iface))?.peers.map((x) => x.publicKey),
      [B.publicKey],
    );
  },
);

test.serial(
  'a killed wireguard-go is restarted; its config is gone until re-applied',
  async (t) => {
    const supervisor = A.supervisor;
    const oldPid = supervisor?.pid;
    if (!supervisor || oldPid === undefined) throw new Error('wireguard-go for A is not running');
    const restarted = once(supervisor, 'restarted', { signal: AbortSignal.timeout(10_000) });
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');
    const [newPid] = (await restarted.catch((e: unknown) => {
      throw new Error(`not restarted within 10 s; its output: ${A.output.join(' | ')}`, {
        cause: e,
      });
    })) as [number];
    t.log(`restarted in ${Date.now() - killedAt} ms`);
    t.not(newPid, oldPid);
    t.is(supervisor.pid, newPid);
    t.is(supervisor.restarts, 1);
    t.false(alive(oldPid));
    await t.notThrowsAsync(inNs(A, ['ip', 'link', 'show', A.iface]), 'the link is back');

    const bare = await A.wg.show(A.iface);
    t.like(bare, { publicKey: null, peers: [] });

    await configure(A, B);
    t.regex(await ping(A, B), / 0% packet loss/);
  },
);

test.serial('cleanup leaves no namespace, link, socket or process behind', async (t) => {
  await cleanup();
  const netns = (await runner.run(['ip', 'netns', 'list'])).stdout;
  for (const end of ends) {
    t.false(netns.includes(end.netns), `netns ${end.netns} is gone`);
    t.false(existsSync(`${RUN_DIR}/${end.iface}.sock`), `${end.iface}.sock is gone`);
  }
  const links = (await runner.run(['ip', '-o', 'link', 'show'])).stdout;
  t.false(links.includes(`wmt${tag}`), 'no link of this test on the host');
  t.true(wireguardGoPids.size >= 3, 'two starts and one restart were seen');
  t.deepEqual([...wireguardGoPids].filter(alive), [], 'no wireguard-go of this test runs');
});
