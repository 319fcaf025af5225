import test from 'ava';
import {
  planCleanup,
  describeAction,
  parseLinks,
  parseRoutes,
  parseRules,
  socketInodes,
  wiremeshPaths,
  DEFAULT_CLEANUP_PATHS,
  type NodeObservation,
} from './cleanup.ts';

const empty: NodeObservation = {
  links: ['lo', 'eth0'],
  routes: [],
  rules: [],
  nftTable: false,
  wireguardGo: [],
  paths: [],
  agentRunning: false,
};

const full: NodeObservation = {
  links: [
    'lo',
    'eth0',
    'wiremesh.wg',
    'wiremesh.vxlan',
    'wmdf436f0858c',
    'wmprobe.ipip',
    'wm-other',
    'cali12345',
  ],
  routes: [
    { family: 4, dst: '100.64.1.0/26', table: 'main', protocol: 251, dev: 'wiremesh.wg' },
    { family: 4, dst: '198.18.0.12', table: '51825', protocol: 251, dev: 'wiremesh.wg' },
    { family: 4, dst: '100.64.2.0/26', table: 'main', protocol: 253, dev: 'eth0' },
    { family: 4, dst: '100.64.0.5', table: 'main', protocol: 252, dev: 'wmdf436f0858c' },
    { family: 6, dst: 'fd00::5', table: 'main', protocol: 252, dev: 'wm0123456789a' },
  ],
  rules: [
    { family: 4, priority: 0, table: 'local' },
    { family: 4, priority: 5182, table: '51825' },
    { family: 4, priority: 5183, table: '51826' },
    { family: 6, priority: 32766, table: 'main' },
  ],
  nftTable: true,
  wireguardGo: [{ pid: 4242, comm: 'wireguard-go' }],
  paths: ['/etc/cni/net.d/10-wiremesh.conflist', '/var/lib/wiremesh'],
  agentRunning: false,
};

test('a clean node: nothing to do', (t) => {
  t.deepEqual(planCleanup(empty, { pods: true }), { actions: [], kept: [] });
});

test('with --pods: wireguard-go first, then links, the routes not gone with them, rules, nft, files', (t) => {
  const plan = planCleanup(full, { pods: true });
  t.deepEqual(plan.actions.map(describeAction), [
    'process wireguard-go (pid 4242) serving wiremesh.wg',
    'link wiremesh.wg',
    'link wiremesh.vxlan',
    'link wmprobe.ipip',
    'link wmdf436f0858c',
    'route 100.64.2.0/26 dev eth0 table main proto 253 (IPv4)',
    'route fd00::5 dev wm0123456789a table main proto 252 (IPv6)',
    'rule priority 5182 lookup 51825 (IPv4)',
    'rule priority 5183 lookup 51826 (IPv4)',
    'nftables table inet wiremesh',
    'path /etc/cni/net.d/10-wiremesh.conflist',
    'path /var/lib/wiremesh',
  ]);
  t.deepEqual(plan.kept, []);
});

test('without --pods: pod interfaces and pod routes stay, and the report says how to remove them', (t) => {
  const plan = planCleanup(full, { pods: false });
  const what = plan.actions.map(describeAction);
  t.false(what.some((w) => w.includes('wmdf436f0858c') || w.includes('proto 252')));
  t.true(what.includes('link wiremesh.wg'));
  t.is(plan.kept.length, 1);
  t.regex(plan.kept[0] ?? '', /^1 pod interface\(s\) \(wmdf436f0858c\).*pass --pods/);
});

test('links that only look like ours are never touched', (t) => {
  const what = planCleanup(full, { pods: true }).actions.map(describeAction);
  for (const other of ['eth0', 'lo', 'wm-other', 'cali12345'])
    t.false(what.includes(`link ${other}`), other);
});

test('parsing ip -j output', (t) => {
  t.deepEqual(parseLinks('[{"ifname":"lo"},{"ifname":"wiremesh.wg"}]'), ['lo', 'wiremesh.wg']);
  t.deepEqual(parseLinks(''), []);
  t.deepEqual(
    parseRoutes(
      '[{"dst":"100.64.114.64/26","dev":"wiremesh.wg","scope":"link"},{"dst":"198.18.0.12","table":"51825","dev":"wiremesh.wg"}]',
      4,
      251,
    ),
    [
      { family: 4, dst: '100.64.114.64/26', table: 'main', protocol: 251, dev: 'wiremesh.wg' },
      { family: 4, dst: '198.18.0.12', table: '51825', protocol: 251, dev: 'wiremesh.wg' },
    ],
  );
  t.deepEqual(
    parseRules(
      '[{"priority":0,"src":"all","table":"local"},{"priority":5182,"not":null,"fwmark":"0x51825","table":"51825"}]',
      6,
    ),
    [
      { family: 6, priority: 0, table: 'local' },
      { family: 6, priority: 5182, table: '51825' },
    ],
  );
});

test('the wireguard-go socket is found by its path in /proc/net/unix', (t) => {
  const unix = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    '000000000799af37: 00000002 00000000 00010000 0001 01 2706589 /run/wiremesh/agent.sock',
    '00000000888e6fbb: 00000002 00000000 00010000 0001 01 2706305 /var/run/wireguard/wiremesh.wg.sock',
    '00000000888e6fbc: 00000002 00000000 00010000 0001 01 2706306 /var/run/wireguard/wg0.sock',
    '00000000888e6fbd: 00000003 00000000 00000000 0001 03 2706307',
  ].join('\n');
  t.deepEqual(socketInodes(unix, '/wireguard/wiremesh.wg.sock'), [2706305]);
});

test('the paths: wiremesh files only, never the shared CNI and WireGuard directories', (t) => {
  const paths = wiremeshPaths(DEFAULT_CLEANUP_PATHS);
  t.deepEqual(paths, [
    '/etc/cni/net.d/10-wiremesh.conflist',
    '/opt/cni/bin/wiremesh',
    '/run/wireguard/wiremesh.wg.sock',
    '/run/wiremesh',
    '/var/lib/wiremesh',
    '/var/run/wiremesh',
    '/var/run/wireguard/wiremesh.wg.sock',
  ]);
  for (const shared of ['/etc/cni/net.d', '/opt/cni/bin', '/run/wireguard', '/var/lib'])
    t.false(paths.includes(shared));
});
