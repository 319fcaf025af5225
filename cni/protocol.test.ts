import test, { type ExecutionContext } from 'ava';
import {
  CNI_VERSION,
  CniError,
  CniErrorCode,
  SUPPORTED_VERSIONS,
  cniVersionOf,
  errorResult,
  parseCniArgs,
  parseCniRequest,
  toCniError,
  versionResult,
  type CniRequest,
} from './protocol.ts';

type Env = Record<string, string | undefined>;

/** A title that shows control, non-ASCII and space characters (ava folds whitespace). */
const show = (s: string) =>
  JSON.stringify(s).replace(
    /[^\x21-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );

const conf = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '1.1.0', name: 'wiremesh', type: 'wiremesh', ...over });

const addEnv: Env = {
  CNI_COMMAND: 'ADD',
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/cni-1234',
  CNI_IFNAME: 'eth0',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
  CNI_PATH: '/opt/cni/bin:/usr/libexec/cni',
};

const rejects = test.macro({
  exec(t: ExecutionContext, env: Env, stdin: string, code: number, message: RegExp) {
    const e = t.throws(() => parseCniRequest(env, stdin), { instanceOf: CniError });
    t.is(e?.code, code);
    t.regex(`${e?.message} ${e?.details ?? ''}`, message);
  },
  title: (title = '') => `rejects: ${title}`,
});

// Environment (code 4)
test('no CNI_COMMAND', rejects, { ...addEnv, CNI_COMMAND: undefined }, conf(), 4, /CNI_COMMAND/);
test('unknown command', rejects, { ...addEnv, CNI_COMMAND: 'REMOVE' }, conf(), 4, /REMOVE/);
test('lower-case command', rejects, { ...addEnv, CNI_COMMAND: 'add' }, conf(), 4, /CNI_COMMAND/);
for (const command of ['ADD', 'CHECK', 'DEL']) {
  for (const name of ['CNI_CONTAINERID', 'CNI_IFNAME']) {
    test(
      `${command} without ${name}`,
      rejects,
      { ...addEnv, CNI_COMMAND: command, [name]: undefined },
      conf(),
      4,
      new RegExp(name),
    );
    test(
      `${command} with empty ${name}`,
      rejects,
      { ...addEnv, CNI_COMMAND: command, [name]: '' },
      conf(),
      4,
      new RegExp(name),
    );
  }
}
test('ADD without CNI_NETNS', rejects, { ...addEnv, CNI_NETNS: undefined }, conf(), 4, /CNI_NETNS/);
test(
  'CHECK without CNI_NETNS',
  rejects,
  { ...addEnv, CNI_COMMAND: 'CHECK', CNI_NETNS: '' },
  conf(),
  4,
  /CNI_NETNS/,
);
test(
  'every missing variable is named',
  rejects,
  { CNI_COMMAND: 'ADD' },
  conf(),
  4,
  /CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME/,
);
test('GC without CNI_PATH', rejects, { CNI_COMMAND: 'GC' }, conf(), 4, /CNI_PATH/);
for (const id of ['-abc', '_abc', '.abc', 'abc/def', 'abc def', 'abc;x', 'ab:c', 'é', 'abc\n']) {
  test(
    `container ID ${show(id)}`,
    rejects,
    { ...addEnv, CNI_CONTAINERID: id },
    conf(),
    4,
    /CNI_CONTAINERID/,
  );
}
for (const ifName of [
  '.',
  '..',
  'eth0/1',
  'eth:0',
  'eth 0',
  'eth\t0',
  'eth\u00a00',
  'a'.repeat(16),
  'é'.repeat(8),
]) {
  test(
    `interface name ${show(ifName)}`,
    rejects,
    { ...addEnv, CNI_IFNAME: ifName },
    conf(),
    4,
    /CNI_IFNAME/,
  );
}
test(
  'DEL validates the interface name too',
  rejects,
  { ...addEnv, CNI_COMMAND: 'DEL', CNI_IFNAME: '..' },
  conf(),
  4,
  /CNI_IFNAME/,
);
test(
  'CNI_ARGS pair without =',
  rejects,
  { ...addEnv, CNI_ARGS: 'K8S_POD_NAME' },
  conf(),
  4,
  /CNI_ARGS.*K8S_POD_NAME/,
);
test('CNI_ARGS pair with two =', rejects, { ...addEnv, CNI_ARGS: 'A=B=C' }, conf(), 4, /CNI_ARGS/);
test('CNI_ARGS pair with empty key', rejects, { ...addEnv, CNI_ARGS: '=x' }, conf(), 4, /CNI_ARGS/);

// Decoding (code 6)
test('empty stdin', rejects, addEnv, '', 6, /decode/);
test('stdin not JSON', rejects, addEnv, '{"cniVersion": ', 6, /decode/);
test('stdin a JSON array', rejects, addEnv, '[]', 6, /an array/);
test('stdin a JSON string', rejects, addEnv, '"x"', 6, /string/);
test('stdin JSON null', rejects, addEnv, 'null', 6, /object/);
test('cniVersion a number', rejects, addEnv, conf({ cniVersion: 1 }), 6, /cniVersion/);

// Version (code 1)
test('no cniVersion', rejects, addEnv, conf({ cniVersion: undefined }), 1, /no cniVersion/);
test('cniVersion 0.2.0', rejects, addEnv, conf({ cniVersion: '0.2.0' }), 1, /0\.2\.0/);
test('cniVersion 2.0.0', rejects, addEnv, conf({ cniVersion: '2.0.0' }), 1, /supported: 0\.3\.0/);
test(
  'CHECK on 0.3.1',
  rejects,
  { ...addEnv, CNI_COMMAND: 'CHECK' },
  conf({ cniVersion: '0.3.1' }),
  1,
  /CHECK/,
);
test(
  'GC on 1.0.0',
  rejects,
  { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' },
  conf({ cniVersion: '1.0.0' }),
  1,
  /GC/,
);
test(
  'STATUS on 0.4.0',
  rejects,
  { CNI_COMMAND: 'STATUS' },
  conf({ cniVersion: '0.4.0' }),
  1,
  /STATUS/,
);

// Network config (code 7)
test('no name', rejects, addEnv, conf({ name: undefined }), 7, /network name/);
test('empty name', rejects, addEnv, conf({ name: '' }), 7, /network name/);
test('name with a slash', rejects, addEnv, conf({ name: 'a/b' }), 7, /network name/);
test('name a number', rejects, addEnv, conf({ name: 5 }), 7, /network name/);
test('no type', rejects, addEnv, conf({ type: undefined }), 7, /type/);
test('type a path', rejects, addEnv, conf({ type: '../bin/sh' }), 7, /type/);
test('mtu not a number', rejects, addEnv, conf({ mtu: '1400' }), 7, /mtu/);
test('mtu not an integer', rejects, addEnv, conf({ mtu: 1400.5 }), 7, /mtu/);
test('mtu too small', rejects, addEnv, conf({ mtu: 10 }), 7, /mtu/);
test(
  'prevResult a list',
  rejects,
  { ...addEnv, CNI_COMMAND: 'DEL' },
  conf({ prevResult: [] }),
  7,
  /prevResult/,
);
test('runtimeConfig a string', rejects, addEnv, conf({ runtimeConfig: 'x' }), 7, /runtimeConfig/);
const gcEnv: Env = { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' };
test(
  'GC attachments not a list',
  rejects,
  gcEnv,
  conf({ 'cni.dev/valid-attachments': {} }),
  7,
  /not a list/,
);
test(
  'GC attachment without ifname',
  rejects,
  gcEnv,
  conf({ 'cni.dev/valid-attachments': [{ containerID: 'a' }] }),
  7,
  /entry 0/,
);

// Happy paths
test('ADD: every field of the request', (t) => {
  const stdin = conf({
    mtu: 1380,
    ipam: {},
    runtimeConfig: { portMappings: [] },
    capabilitiesSeenByUs: true,
  });
  const req = parseCniRequest({ ...addEnv, HOME: '/root' }, stdin);
  t.deepEqual<CniRequest, CniRequest>(req, {
    command: 'ADD',
    containerID: 'c0ffee',
    netns: '/var/run/netns/cni-1234',
    ifName: 'eth0',
    args: { IgnoreUnknown: '1', K8S_POD_NAMESPACE: 'default', K8S_POD_NAME: 'web-0' },
    path: ['/opt/cni/bin', '/usr/libexec/cni'],
    conf: {
      cniVersion: '1.1.0',
      name: 'wiremesh',
      type: 'wiremesh',
      mtu: 1380,
      ipam: {},
      runtimeConfig: { portMappings: [] },
      raw: JSON.parse(stdin) as Record<string, unknown>,
    },
  });
});

test('ADD: every supported version, and the longest legal names', (t) => {
  for (const cniVersion of SUPPORTED_VERSIONS) {
    const env = { ...addEnv, CNI_CONTAINERID: 'A1_b.c-d', CNI_IFNAME: 'a'.repeat(15) };
    const req = parseCniRequest(env, conf({ cniVersion }));
    t.is(req.conf.cniVersion, cniVersion);
    t.is(req.ifName, 'a'.repeat(15));
  }
});

test('DEL: netns may be missing, prevResult is kept', (t) => {
  const prevResult = { cniVersion: '1.1.0', ips: [{ address: '100.64.0.5/32', interface: 1 }] };
  const req = parseCniRequest(
    { ...addEnv, CNI_COMMAND: 'DEL', CNI_NETNS: undefined, CNI_PATH: undefined },
    conf({ prevResult }),
  );
  t.is(req.netns, '');
  t.deepEqual(req.path, []);
  t.deepEqual(req.conf.prevResult, prevResult);
});

test('CHECK with prevResult on 0.4.0', (t) => {
  const req = parseCniRequest(
    { ...addEnv, CNI_COMMAND: 'CHECK' },
    conf({ cniVersion: '0.4.0', prevResult: { ips: [] } }),
  );
  t.is(req.command, 'CHECK');
  t.deepEqual(req.conf.prevResult, { ips: [] });
});

test('VERSION needs only the command and tolerates any stdin', (t) => {
  for (const [stdin, asked] of [
    ['{"cniVersion":"0.4.0"}', '0.4.0'],
    ['{"cniVersion":"9.9.9"}', '9.9.9'],
    ['', CNI_VERSION],
    ['not json', CNI_VERSION],
    ['[1]', CNI_VERSION],
  ] as const) {
    const req = parseCniRequest(
      { CNI_COMMAND: 'VERSION', CNI_IFNAME: '..', CNI_ARGS: 'bad' },
      stdin,
    );
    t.like(req, { command: 'VERSION', containerID: '', ifName: '', args: {} });
    t.deepEqual(versionResult(req.conf), {
      cniVersion: asked,
      supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'],
    });
  }
  t.deepEqual(versionResult(), { cniVersion: '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] });
});

test('GC: no container, valid attachments from either key', (t) => {
  const attachments = [
    { containerID: 'c0ffee', ifname: 'eth0' },
    { containerID: 'beef', ifname: 'net1', extra: 1 },
  ];
  const want = [
    { containerID: 'c0ffee', ifname: 'eth0' },
    { containerID: 'beef', ifname: 'net1' },
  ];
  const gc = { CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin', CNI_IFNAME: '..' };
  const a = parseCniRequest(gc, conf({ 'cni.dev/valid-attachments': attachments }));
  t.like(a, { command: 'GC', containerID: '', netns: '', ifName: '', path: ['/opt/cni/bin'] });
  t.deepEqual(a.conf['cni.dev/valid-attachments'], want);
  const b = parseCniRequest(gc, conf({ 'cni.dev/attachments': attachments }));
  t.deepEqual(b.conf['cni.dev/valid-attachments'], want);
  const c = parseCniRequest(gc, conf({ 'cni.dev/valid-attachments': null }));
  t.deepEqual(c.conf['cni.dev/valid-attachments'], []);
  t.false('cni.dev/valid-attachments' in parseCniRequest(gc, conf()).conf);
});

test('STATUS: no container, no path needed', (t) => {
  const req = parseCniRequest({ CNI_COMMAND: 'STATUS' }, conf());
  t.like(req, { command: 'STATUS', containerID: '', path: [] });
  t.is(req.conf.name, 'wiremesh');
});

test('CNI_ARGS parsing', (t) => {
  t.deepEqual(parseCniArgs(''), {});
  t.deepEqual(parseCniArgs('A=1;B=;C=x y'), { A: '1', B: '', C: 'x y' });
  t.deepEqual(parseCniArgs('A=1;;B=2;'), { A: '1', B: '2' });
  t.deepEqual(parseCniArgs('A=1;A=2'), { A: '2' });
  const proto = parseCniArgs('__proto__=x;constructor=y');
  t.is(Object.getPrototypeOf(proto), Object.prototype);
  t.deepEqual(Object.entries(proto), [
    ['__proto__', 'x'],
    ['constructor', 'y'],
  ]);
});

test('errorResult and cniVersionOf', (t) => {
  const e = new CniError(CniErrorCode.tryAgainLater, 'IPAM not ready', 'no block yet');
  t.deepEqual(errorResult(e, '0.4.0'), {
    cniVersion: '0.4.0',
    code: 11,
    msg: 'IPAM not ready',
    details: 'no block yet',
  });
  t.deepEqual(errorResult(new CniError(7, 'bad'), '7.7.7'), {
    cniVersion: '1.1.0',
    code: 7,
    msg: 'bad',
  });
  t.is(cniVersionOf(conf({ cniVersion: '0.3.1' })), '0.3.1');
  t.is(cniVersionOf(conf({ cniVersion: '0.1.0' })), CNI_VERSION);
  t.is(cniVersionOf('{'), CNI_VERSION);
  t.is(cniVersionOf('null'), CNI_VERSION);
});

test('toCniError keeps CniErrors and wraps the rest as 999', (t) => {
  const e = new CniError(3, 'gone');
  t.is(toCniError(e), e);
  const wrapped = toCniError(new Error('boom'));
  t.like(wrapped, { code: 999, message: 'boom' });
  t.true(wrapped.cause instanceof Error);
  t.is(toCniError('text').message, 'text');
});

test('the named codes are the spec table', (t) => {
  t.deepEqual(CniErrorCode, {
    incompatibleVersion: 1,
    unsupportedField: 2,
    unknownContainer: 3,
    invalidEnvironment: 4,
    ioFailure: 5,
    decodingFailure: 6,
    invalidNetworkConfig: 7,
    tryAgainLater: 11,
    pluginNotAvailable: 50,
    limitedConnectivity: 51,
    internal: 999,
  });
});

// Fuzz: whatever the runtime (or an attacker with the socket) sends, the parser
// answers with a request or a CniError, nothing else.
test('fuzz: random environments and configs only ever throw CniError', (t) => {
  let seed = 0x5eed;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return (seed >>> 16) % n; // the low bits of an LCG repeat quickly
  };
  const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)] as T;
  const strings = [
    '',
    'ADD',
    'DEL',
    'CHECK',
    'VERSION',
    'GC',
    'STATUS',
    'x',
    '.',
    '..',
    'eth0',
    'a=b',
    'a=b;c',
    ';;',
    '=',
    '/',
    'a'.repeat(20),
    '\u0000',
    '\ud800',
    '__proto__',
    'constructor',
    '1.1.0',
  ];
  const values: unknown[] = [
    null,
    true,
    0,
    -1,
    1e300,
    1400,
    'x',
    '',
    '1.1.0',
    '0.4.0',
    [],
    [{}],
    [{ containerID: 'a', ifname: 'b' }],
    {},
    { a: 1 },
    '__proto__',
  ];
  const keys = [
    'cniVersion',
    'name',
    'type',
    'mtu',
    'ipam',
    'prevResult',
    'runtimeConfig',
    'cni.dev/valid-attachments',
    'cni.dev/attachments',
    '__proto__',
    'constructor',
    'toString',
  ];
  const envNames = [
    'CNI_COMMAND',
    'CNI_CONTAINERID',
    'CNI_NETNS',
    'CNI_IFNAME',
    'CNI_ARGS',
    'CNI_PATH',
  ];
  let ok = 0;
  let errors = 0;
  for (let i = 0; i < 5000; i++) {
    // A valid request, then a few random mutations of its environment and config.
    const env: Env = { ...addEnv, CNI_COMMAND: pick(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']) };
    const obj: Record<string, unknown> = { cniVersion: '1.1.0', name: 'n', type: 'wiremesh' };
    for (let k = rand(4); k > 0; k--) {
      if (rand(2)) env[pick(envNames)] = rand(4) ? pick(strings) : undefined;
      else obj[pick(keys)] = rand(6) ? pick(values) : undefined;
    }
    let stdin = rand(8) === 0 ? pick(strings) : JSON.stringify(obj);
    if (rand(10) === 0) stdin = stdin.slice(0, rand(stdin.length + 1));
    try {
      parseCniRequest(env, stdin);
      ok++;
    } catch (e) {
      if (!(e instanceof CniError)) {
        t.fail(
          `non-CniError for env ${JSON.stringify(env)} stdin ${JSON.stringify(stdin)}: ${String(e)}`,
        );
        return;
      }
      t.true(Number.isInteger(e.code) && e.code > 0);
      errors++;
    }
  }
  t.log(`${ok} accepted, ${errors} rejected with CniError`);
  t.true(ok > 0 && errors > 0);
});
