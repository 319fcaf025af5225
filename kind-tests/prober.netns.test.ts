// Kernel tier: wiremesh-prober (the traffic end of the network-policy suite) in two
// throwaway namespaces joined by a veth pair, with nftables rules the test writes
// itself. It shows the prober tells blocked from reachable for TCP, UDP and SCTP,
// that conntrack treats its SCTP INIT/INIT-ACK as one connection (the reply passes
// a policy that admits only established traffic), and that the kernel accepts its
// SCTP checksums, so a policy suite's verdicts are the dataplane's and not the
// prober's.
import test from 'ava';
import { defaultRunner, requireRoot, systemEnv, type Runner } from '../sys/index.ts';
import { background, eventually, type Background } from './probes.ts';
import {
  runProbes,
  serveArgv,
  proberPath,
  PROTOCOLS,
  type ProbeTarget,
  type Protocol,
} from './netpol/prober.ts';

const tag = `r${process.pid % 100000}`;
const clientNs = `wmk-${tag}-pc`;
const serverNs = `wmk-${tag}-ps`;
const clientIP = '100.64.251.1';
const serverIP = '100.64.251.2';
const inNs = (ns: string): Runner => ({
  run: (argv, o) => defaultRunner.run(['nsenter', `--net=/run/netns/${ns}`, '--', ...argv], o),
});
const client = inNs(clientNs);
const server = inNs(serverNs);
const probeFromClient = (targets: ProbeTarget[]) =>
  runProbes((argv, o) => client.run(argv, o), targets, 1000);
const servers: Background[] = [];

/** Every protocol on ports 80 and 81 of `ip`. */
const matrix = (ip = serverIP): ProbeTarget[] =>
  PROTOCOLS.flatMap((proto) => [80, 81].map((port) => ({ proto, ip, port })));
const key = (t: ProbeTarget) => `${t.proto}/${t.port}`;

async function outcomes(targets: ProbeTarget[]): Promise<Record<string, string>> {
  const results = await probeFromClient(targets);
  return Object.fromEntries(results.map((r) => [key(r), r.result]));
}

async function nft(ns: Runner, script: string): Promise<void> {
  await ns.run(['nft', '-f', '-'], { input: script });
}

async function flushNft(): Promise<void> {
  for (const ns of [client, server]) await ns.run(['nft', 'flush', 'ruleset']);
}

async function counter(ns: Runner, name: string): Promise<number> {
  const res = await ns.run(['nft', '-j', 'list', 'counter', 'inet', 'probetest', name]);
  const doc = JSON.parse(res.stdout) as { nftables: { counter?: { packets: number } }[] };
  const c = doc.nftables.find((o) => o.counter)?.counter;
  if (!c) throw new Error(`no counter ${name} in ${res.stdout}`);
  return c.packets;
}

test.before(async () => {
  requireRoot('the kernel tests');
  proberPath(); // names the missing binary and 'make deps' if it is not built
  for (const ns of [clientNs, serverNs]) await defaultRunner.run(['ip', 'netns', 'add', ns]);
  await client.run([
    'ip',
    'link',
    'add',
    `wmk${tag}c`,
    'type',
    'veth',
    'peer',
    'name',
    `wmk${tag}s`,
  ]);
  await client.run(['ip', 'link', 'set', `wmk${tag}s`, 'netns', serverNs]);
  for (const [ns, dev, ip] of [
    [client, `wmk${tag}c`, clientIP],
    [server, `wmk${tag}s`, serverIP],
  ] as const) {
    await ns.run(['ip', 'addr', 'add', `${ip}/24`, 'dev', dev]);
    await ns.run(['ip', 'link', 'set', dev, 'up']);
    await ns.run(['ip', 'link', 'set', 'lo', 'up']);
  }
  for (const [ns, id] of [
    [serverNs, 'server'],
    [clientNs, 'client'],
  ] as const) {
    servers.push(
      background(['nsenter', `--net=/run/netns/${ns}`, '--', ...serveArgv([80, 81], id)]),
    );
  }
  await eventually('the prober servers', async () =>
    Object.values(await outcomes([...matrix(serverIP), ...matrix(clientIP)])).every(
      (r) => r === 'reachable',
    ),
  );
});

test.after.always(async () => {
  for (const s of servers) await s.kill();
  for (const ns of [clientNs, serverNs])
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
});

test.afterEach.always(flushNft);

test.serial(
  'the packet tests of the prober pass (go test: CRC32c, INIT, INIT-ACK, ABORT)',
  async (t) => {
    const res = await defaultRunner.run(['go', 'test', '.'], {
      cwd: new URL('./prober/', import.meta.url).pathname,
      env: systemEnv({ CGO_ENABLED: '0', GOFLAGS: '-buildvcs=false' }),
      timeoutMs: 120_000,
    });
    t.regex(res.stdout, /^ok\s/m);
  },
);

test.serial('every protocol answers on the served ports, with the server id', async (t) => {
  const results = await probeFromClient(matrix());
  t.deepEqual(
    results.map((r) => `${key(r)} ${r.result} ${r.answer ?? ''}`),
    matrix().map((m) => `${key(m)} reachable server`),
  );
});

test.serial('a port nobody serves is refused, for TCP, UDP and SCTP (ABORT)', async (t) => {
  const results = await probeFromClient(
    PROTOCOLS.map((proto) => ({ proto, ip: serverIP, port: 82 })),
  );
  t.deepEqual(
    results.map((r) => `${r.proto} ${r.result}`),
    ['TCP refused', 'UDP refused', 'SCTP refused'],
  );
});

test.serial('a drop rule turns exactly the dropped probes into timeouts', async (t) => {
  await nft(
    server,
    `table inet probetest {
       chain input { type filter hook input priority 0; policy accept;
         tcp dport 80 drop
         udp dport 81 drop
         sctp dport 80 drop
       }
     }`,
  );
  t.deepEqual(await outcomes(matrix()), {
    'TCP/80': 'timeout',
    'TCP/81': 'reachable',
    'UDP/80': 'reachable',
    'UDP/81': 'timeout',
    'SCTP/80': 'timeout',
    'SCTP/81': 'reachable',
  });
});

test.serial('replies pass a policy that admits only established connections', async (t) => {
  // The client admits nothing new; the server sends nothing but replies.
  await nft(
    client,
    `table inet probetest {
       chain input { type filter hook input priority 0; policy drop;
         ct state established accept
       }
     }`,
  );
  await nft(
    server,
    `table inet probetest {
       chain output { type filter hook output priority 0; policy drop;
         ct state established accept
       }
     }`,
  );
  const all = Object.fromEntries(matrix().map((m) => [key(m), 'reachable']));
  t.deepEqual(await outcomes(matrix()), all);
  // Without the established rule the same replies are dropped: the rule is what let them in.
  await client.run(['nft', 'flush', 'chain', 'inet', 'probetest', 'input']);
  const none = Object.fromEntries(matrix().map((m) => [key(m), 'timeout']));
  t.deepEqual(await outcomes(matrix()), none);
});

test.serial('conntrack accepts the SCTP checksums the prober writes', async (t) => {
  // The server counts SCTP packets conntrack finds invalid (it checks the CRC32c).
  // The client corrupts the checksum of what it sends to port 81 only.
  await nft(
    server,
    `table inet probetest {
       counter invalid {}
       counter fresh {}
       chain input { type filter hook input priority 0; policy accept;
         meta l4proto sctp ct state invalid counter name "invalid" drop
         meta l4proto sctp ct state new counter name "fresh"
       }
     }`,
  );
  await nft(
    client,
    `table inet probetest {
       chain output { type filter hook output priority 0; policy accept;
         sctp dport 81 @th,64,32 set 0x12345678
       }
     }`,
  );
  const sctp = (port: number): ProbeTarget => ({ proto: 'SCTP', ip: serverIP, port });
  t.deepEqual(await outcomes([sctp(80)]), { 'SCTP/80': 'reachable' });
  t.is(await counter(server, 'invalid'), 0, 'the prober INIT is valid to conntrack');
  t.true((await counter(server, 'fresh')) >= 1, 'and starts a new connection');
  t.deepEqual(await outcomes([sctp(81)]), { 'SCTP/81': 'timeout' });
  t.true((await counter(server, 'invalid')) >= 1, 'a corrupt checksum is invalid to conntrack');
});

test.serial('many concurrent probes each get their own answer', async (t) => {
  // Both ends run a server and a client shares the namespace with one; probes to
  // both, repeated, with one protocol/port per address dropped.
  await nft(
    server,
    `table inet probetest {
       chain input { type filter hook input priority 0; policy accept;
         sctp dport 81 drop
         udp dport 80 drop
       }
     }`,
  );
  const targets: ProbeTarget[] = [];
  for (let i = 0; i < 10; i++) targets.push(...matrix(serverIP), ...matrix(clientIP));
  const results = await probeFromClient(targets);
  const blocked = new Set(['SCTP/81', 'UDP/80']);
  const wrong = results.filter((r) => {
    const fromServer = r.ip === serverIP;
    const expectReachable = !(fromServer && blocked.has(key(r)));
    const want = expectReachable ? (fromServer ? 'server' : 'client') : undefined;
    return expectReachable ? r.result !== 'reachable' || r.answer !== want : r.result !== 'timeout';
  });
  t.deepEqual(wrong, []);
  t.is(results.length, 120);
});

test.serial('bad targets are reported per target, not as a failed run', async (t) => {
  const results = await probeFromClient([
    { proto: 'ICMP' as Protocol, ip: serverIP, port: 80 },
    { proto: 'TCP', ip: 'not-an-ip', port: 80 },
    { proto: 'TCP', ip: serverIP, port: 80 },
  ]);
  t.deepEqual(
    results.map((r) => r.result),
    ['error', 'error', 'reachable'],
  );
});
