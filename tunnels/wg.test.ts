import test from 'ava';
import { CommandError, type RunOptions, type RunResult, type Runner } from '../sys/index.ts';
import { FakeWg } from './wg-fake.ts';
import {
  WgCli,
  assertAllowedIP,
  assertEndpoint,
  canonicalCidr,
  parseWgDump,
  type WgPeerConfig,
} from './wg.ts';

// Keys as `wg genkey` / `wg pubkey` print them (generated for these tests only).
const PRIV = '2AhxZztSe6RvpUQNMe9gIef3t2HYszyKmRwWDnf0cFQ=';
const PUB = 'ZoSK3J0AegB7hlfFmxnrsogYXwnxrvD1peiXxiUspBw=';
const PEER1 = 'kB6n6VxSZ2J1cAGRf0reBs5713CRf5fO8bayeMrv724=';
const PEER2 = '7Yvgt/kx9EwnjRQ8kyyVGzy4y9eHGpeeMR25ZE04JWo=';
const PSK = 'S4ynkNptarQfuGhfVjjeBe1MOCT3h2hN4cTo/pvkJ6E=';

const dump = (...lines: string[][]) => lines.map((l) => l.join('\t')).join('\n') + '\n';

test('a device with no peers: the private key is dropped', (t) => {
  const dev = parseWgDump('wiremesh.wg', dump([PRIV, PUB, '51825', 'off']));
  t.deepEqual(dev, {
    name: 'wiremesh.wg',
    publicKey: PUB,
    listenPort: 51825,
    fwmark: 0,
    peers: [],
  });
  t.false(JSON.stringify(dev).includes(PRIV));
});

test('a device without a key yet, and a hex fwmark', (t) => {
  const dev = parseWgDump('wg0', dump(['(none)', '(none)', '0', '0x10']));
  t.is(dev.publicKey, null);
  t.is(dev.fwmark, 16);
});

test('peers: (none) endpoint and allowed IPs, off keepalive, IPv6 endpoint, counters', (t) => {
  const text = dump(
    [PRIV, PUB, '51825', 'off'],
    [
      PEER1,
      PSK,
      '[fd00::1]:51825',
      '100.64.1.0/26,fd00:10::/64',
      '1763942400',
      '9124',
      '8876',
      '25',
    ],
    [PEER2, '(none)', '(none)', '(none)', '0', '0', '0', 'off'],
  );
  const dev = parseWgDump('wiremesh.wg', text);
  t.deepEqual(dev.peers, [
    {
      publicKey: PEER1,
      endpoint: '[fd00::1]:51825',
      allowedIPs: ['100.64.1.0/26', 'fd00:10::/64'],
      latestHandshake: 1763942400,
      rxBytes: 9124,
      txBytes: 8876,
      persistentKeepalive: 25,
    },
    {
      publicKey: PEER2,
      endpoint: null,
      allowedIPs: [],
      latestHandshake: 0,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: 0,
    },
  ]);
  const json = JSON.stringify(dev);
  t.false(json.includes(PRIV), 'no private key');
  t.false(json.includes(PSK), 'no preshared key');
});

test('malformed dumps fail naming the line and field, never quoting a secret', (t) => {
  const cases: [string, RegExp][] = [
    ['', /line 1: empty output/],
    [dump([PRIV, PUB, '51825']), /line 1: expected 4 fields/],
    [dump([PRIV, 'nope', '51825', 'off']), /line 1: public key/],
    [dump([PRIV, PUB, 'x', 'off']), /line 1: listen port/],
    [dump([PRIV, PUB, '1', 'off'], [PEER1, PSK, '(none)']), /line 2: expected 8 fields/],
    [
      dump([PRIV, PUB, '1', 'off'], [PEER1, PSK, 'x', '(none)', '0', '0', '0', 'off']),
      /line 2: invalid endpoint/,
    ],
    [
      dump([PRIV, PUB, '1', 'off'], [PEER1, PSK, '(none)', '(none)', '-1', '0', '0', 'off']),
      /line 2: latest handshake/,
    ],
  ];
  for (const [text, message] of cases) {
    const e = t.throws(() => parseWgDump('wg0', text), { message });
    t.false(e?.message.includes(PRIV) ?? true);
    t.false(e?.message.includes(PSK) ?? true);
  }
});

// ---- WgCli against a scripted runner ----

interface Call {
  argv: string[];
  options: RunOptions | undefined;
}

function scripted(...results: (Partial<RunResult> | Error)[]): { runner: Runner; calls: Call[] } {
  const calls: Call[] = [];
  const runner: Runner = {
    run: async (argv, options) => {
      calls.push({ argv: [...argv], options });
      const next = results.shift() ?? {};
      if (next instanceof Error) throw next;
      return { stdout: '', stderr: '', code: 0, ...next };
    },
  };
  return { runner, calls };
}

test('show runs `wg show IFACE dump` and parses it', async (t) => {
  const { runner, calls } = scripted({ stdout: dump([PRIV, PUB, '51825', 'off']) });
  const dev = await new WgCli(runner).show('wiremesh.wg');
  t.deepEqual(calls[0]?.argv, ['wg', 'show', 'wiremesh.wg', 'dump']);
  t.is(dev?.publicKey, PUB);
});

test('show is null for a missing device, kernel module or not', async (t) => {
  for (const stderr of [
    'Unable to access interface: No such device\n',
    'Unable to access interface: Protocol not supported\n',
  ]) {
    const { runner } = scripted({ code: 1, stderr });
    t.is(await new WgCli(runner).show('wiremesh.wg'), null);
  }
});

test('show fails on any other error, without the dump it might have printed', async (t) => {
  const { runner } = scripted({ code: 1, stderr: 'Unable to access interface: Permission denied' });
  await t.throwsAsync(new WgCli(runner).show('wg0'), {
    instanceOf: CommandError,
    message: /wg show wg0 dump: exit code 1: Unable to access interface: Permission denied/,
  });
  // A timeout after wg printed its first line: the error must not carry that line.
  const timedOut = new CommandError(['wg'], null, `${PRIV}\t${PUB}\t1\toff\n`, '', 'timed out');
  const e = await t.throwsAsync(new WgCli(scripted(timedOut).runner).show('wg0'));
  t.false(e?.message.includes(PRIV) ?? true);
  t.false(JSON.stringify({ ...e, cause: String(e?.cause) }).includes(PRIV));
});

test('setPrivateKey puts the key on stdin only, through a pipe wg can open', async (t) => {
  const { runner, calls } = scripted({});
  await new WgCli(runner).setPrivateKey('wiremesh.wg', PRIV);
  const call = calls[0];
  t.deepEqual(call?.argv, [
    'sh',
    '-c',
    'cat | "$1" set "$2" private-key /dev/stdin',
    'sh',
    'wg',
    'wiremesh.wg',
  ]);
  t.false(call?.argv.some((a) => a.includes(PRIV)));
  t.is(call?.options?.input, `${PRIV}\n`);
});

test('a failing setPrivateKey never shows the key, even if wg echoes it', async (t) => {
  const echo = `Key is not the correct length or format: \`${PRIV}'`;
  const { runner } = scripted(new CommandError(['sh'], 1, '', echo, 'exit code 1'));
  const e = await t.throwsAsync(new WgCli(runner).setPrivateKey('wg0', PRIV), {
    instanceOf: CommandError,
  });
  t.false(e?.message.includes(PRIV) ?? true);
  t.false(e?.stderr.includes(PRIV) ?? true);
  t.is(e?.cause, undefined);
});

test('setPeer, removePeer and setListenPort build exact argv', async (t) => {
  const { runner, calls } = scripted();
  const wg = new WgCli(runner);
  await wg.setPeer('wiremesh.wg', {
    publicKey: PEER1,
    endpoint: '[fd00::1]:51825',
    allowedIPs: ['100.64.1.0/26', 'fd00:10::/64'],
    persistentKeepalive: 25,
  });
  await wg.setPeer('wiremesh.wg', {
    publicKey: PEER2,
    endpoint: null,
    allowedIPs: [],
    persistentKeepalive: 0,
  });
  await wg.removePeer('wiremesh.wg', PEER1);
  await wg.setListenPort('wiremesh.wg', 51825);
  t.deepEqual(
    calls.map((c) => c.argv),
    [
      [
        'wg',
        'set',
        'wiremesh.wg',
        'peer',
        PEER1,
        'endpoint',
        '[fd00::1]:51825',
        'allowed-ips',
        '100.64.1.0/26,fd00:10::/64',
        'persistent-keepalive',
        '25',
      ],
      ['wg', 'set', 'wiremesh.wg', 'peer', PEER2, 'allowed-ips', '', 'persistent-keepalive', 'off'],
      ['wg', 'set', 'wiremesh.wg', 'peer', PEER1, 'remove'],
      ['wg', 'set', 'wiremesh.wg', 'listen-port', '51825'],
    ],
  );
  t.true(calls.every((c) => c.options?.timeoutMs !== undefined));
});

test('setPeers writes many peers per wg call, 200 at most', async (t) => {
  const { runner, calls } = scripted();
  const configs = Array.from({ length: 450 }, () => ({
    publicKey: PEER2,
    endpoint: null,
    allowedIPs: [],
    persistentKeepalive: 0,
  }));
  await new WgCli(runner).setPeers('wiremesh.wg', configs);
  t.deepEqual(
    calls.map((c) => c.argv.filter((a) => a === 'peer').length),
    [200, 200, 50],
  );
  t.deepEqual(calls[0]?.argv.slice(0, 9), [
    'wg',
    'set',
    'wiremesh.wg',
    'peer',
    PEER2,
    'allowed-ips',
    '',
    'persistent-keepalive',
    'off',
  ]);
});

const peer = (over: Partial<WgPeerConfig> = {}): WgPeerConfig => ({
  publicKey: PEER1,
  endpoint: '198.18.0.12:51825',
  allowedIPs: ['100.64.1.0/26'],
  persistentKeepalive: 0,
  ...over,
});

test('bad inputs throw a clear error and run nothing', async (t) => {
  const { runner, calls } = scripted();
  const wg = new WgCli(runner);
  const bad: [() => Promise<unknown>, RegExp][] = [
    [() => wg.show(''), /invalid interface name ""/],
    [() => wg.show('a-name-too-long-x'), /1-15 characters/],
    [() => wg.show('wg0 dump'), /invalid interface name/],
    [() => wg.show('-h'), /not starting with '-'/],
    [() => wg.setListenPort('wg0', 65536), /invalid listen port 65536/],
    [() => wg.setListenPort('wg0', 1.5), /invalid listen port/],
    [() => wg.setPrivateKey('wg0', 'short'), /invalid WireGuard private key/],
    [() => wg.setPeer('wg0', peer({ publicKey: 'x' })), /invalid WireGuard public key/],
    [
      () => wg.setPeer('wg0', peer({ endpoint: '198.18.0.12' })),
      /invalid endpoint .*not host:port/,
    ],
    [() => wg.setPeer('wg0', peer({ endpoint: 'fd00::1:51825' })), /invalid endpoint/],
    [() => wg.setPeer('wg0', peer({ endpoint: '[fd00::1]:0' })), /port out of range/],
    [() => wg.setPeer('wg0', peer({ endpoint: '[fe80::1%eth0]:1' })), /not an IPv6 address/],
    [() => wg.setPeer('wg0', peer({ endpoint: '1.2.3.4:5 --x' })), /invalid endpoint/],
    [
      () => wg.setPeer('wg0', peer({ allowedIPs: ['100.64.1.1/26'] })),
      /host bits set; the network is 100.64.1.0\/26/,
    ],
    [() => wg.setPeer('wg0', peer({ allowedIPs: ['100.64.1.0/33'] })), /prefix longer than 32/],
    [() => wg.setPeer('wg0', peer({ allowedIPs: ['100.64.1.0'] })), /expected ADDRESS\/PREFIX/],
    [
      () => wg.setPeer('wg0', peer({ allowedIPs: ['100.64.1.0/26,1.0.0.0/8'] })),
      /invalid allowed IP/,
    ],
    [() => wg.setPeer('wg0', peer({ persistentKeepalive: -1 })), /invalid persistent keepalive/],
    [() => wg.removePeer('wg0', `${PEER1} `), /invalid WireGuard public key/],
  ];
  for (const [call, message] of bad) await t.throwsAsync(call, { message });
  t.deepEqual(calls, []);
  // The private key is never echoed in a validation error.
  const e = await t.throwsAsync(wg.setPrivateKey('wg0', `${PRIV}x`));
  t.false(e?.message.includes(PRIV) ?? true);
});

test('endpoints and allowed IPs that are fine', (t) => {
  for (const e of ['198.18.0.12:51825', '[fd00::1]:51825', 'node-1.example.org:1']) {
    t.notThrows(() => assertEndpoint(e), e);
  }
  for (const c of ['0.0.0.0/0', '::/0', '100.64.0.0/10', 'fd00::/8', '100.127.251.2/32']) {
    t.notThrows(() => assertAllowedIP(c), c);
  }
  t.is(canonicalCidr('FD00:0:0::/64'), 'fd00::/64');
  t.is(canonicalCidr('::ffff:1.2.3.4/128'), '::ffff:1.2.3.4/128');
});

// ---- FakeWg ----

test('FakeWg holds devices, derives the public key and records calls without secrets', async (t) => {
  const wg = new FakeWg();
  t.is(await wg.show('wiremesh.wg'), null);
  wg.addDevice('wiremesh.wg');
  await wg.setPrivateKey('wiremesh.wg', PRIV);
  await wg.setListenPort('wiremesh.wg', 51825);
  await wg.setPeer('wiremesh.wg', peer());
  const dev = await wg.show('wiremesh.wg');
  t.is(dev?.publicKey, PUB);
  t.is(dev?.listenPort, 51825);
  t.deepEqual(
    dev?.peers.map((p) => p.publicKey),
    [PEER1],
  );
  t.is(wg.privateKeyOf('wiremesh.wg'), PRIV);
  t.false(JSON.stringify(dev).includes(PRIV));
  t.deepEqual(wg.calls, [
    'show wiremesh.wg',
    'setPrivateKey wiremesh.wg',
    'setListenPort wiremesh.wg 51825',
    `setPeer wiremesh.wg ${PEER1}`,
    'show wiremesh.wg',
  ]);
});

test('FakeWg behaves as wg: endpoint kept when null, allowed IPs replaced and moved', async (t) => {
  const wg = new FakeWg();
  wg.addDevice('wg0');
  await wg.setPeer('wg0', peer({ endpoint: '[FD00::1]:51825', allowedIPs: ['100.64.1.0/26'] }));
  await wg.setPeer(
    'wg0',
    peer({ endpoint: null, allowedIPs: ['100.64.2.0/26'], persistentKeepalive: 25 }),
  );
  await wg.setPeer(
    'wg0',
    peer({ publicKey: PEER2, endpoint: null, allowedIPs: ['100.64.2.0/26'] }),
  );
  const peers = (await wg.show('wg0'))?.peers;
  t.deepEqual(peers?.[0], {
    publicKey: PEER1,
    endpoint: '[fd00::1]:51825',
    allowedIPs: [],
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 25,
  });
  t.deepEqual(peers?.[1]?.allowedIPs, ['100.64.2.0/26']);
  t.is(peers?.[1]?.endpoint, null);
  // The device's own key is never a peer.
  await wg.setPrivateKey('wg0', PRIV);
  await wg.setPeer('wg0', peer({ publicKey: PUB }));
  t.false((await wg.show('wg0'))?.peers.some((p) => p.publicKey === PUB));
  await wg.removePeer('wg0', PEER1);
  await wg.removePeer('wg0', PEER1); // removing a missing peer is fine, as in wg
  t.deepEqual(
    (await wg.show('wg0'))?.peers.map((p) => p.publicKey),
    [PEER2],
  );
});

test('FakeWg: stats, deleted devices and validation', async (t) => {
  const wg = new FakeWg();
  wg.addDevice('wg0');
  await wg.setPeer('wg0', peer());
  wg.setPeerStats('wg0', PEER1, { latestHandshake: 100, rxBytes: 1, txBytes: 2 });
  t.like((await wg.show('wg0'))?.peers[0], { latestHandshake: 100, rxBytes: 1, txBytes: 2 });
  wg.deleteDevice('wg0');
  t.is(await wg.show('wg0'), null);
  await t.throwsAsync(wg.setPeer('wg0', peer()), {
    instanceOf: CommandError,
    message: /No such device/,
  });
  await t.throwsAsync(wg.setPeer('wg0', peer({ allowedIPs: ['1.2.3.4/8'] })), {
    message: /host bits/,
  });
  t.throws(() => wg.addDevice('bad name'), { message: /invalid interface name/ });
});

test('FakeWg.failNext fails the next call of one operation, once, after recording it', async (t) => {
  const wg = new FakeWg();
  wg.addDevice('wg0');
  wg.failNext('setPeer');
  wg.failNext('setPeer', new Error('second'));
  wg.failNext('show', new Error('busy'));
  await t.throwsAsync(wg.setPeer('wg0', peer()), { message: 'FakeWg: injected setPeer failure' });
  await t.throwsAsync(wg.setPeer('wg0', peer()), { message: 'second' });
  await t.throwsAsync(wg.show('wg0'), { message: 'busy' });
  await wg.setPeer('wg0', peer());
  t.is((await wg.show('wg0'))?.peers.length, 1);
  t.deepEqual(wg.calls, [
    `setPeer wg0 ${PEER1}`,
    `setPeer wg0 ${PEER1}`,
    'show wg0',
    `setPeer wg0 ${PEER1}`,
    'show wg0',
  ]);
  // A failed call changed nothing.
  const fresh = new FakeWg();
  fresh.addDevice('wg0');
  fresh.failNext('setListenPort');
  await t.throwsAsync(fresh.setListenPort('wg0', 1));
  t.is((await fresh.show('wg0'))?.listenPort, 0);
});
