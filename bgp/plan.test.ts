// bird.conf as text: golden files for the four kinds of node (full-mesh member, route
// reflector, reflector client, node with an external router), determinism, and the
// validation sentences. Whether BIRD does what the text says (filters, recursive next
// hops, kernel routes) is checked for real in bird.netns.test.ts, which also runs the
// golden files through `bird -p`. WIREMESH_UPDATE_GOLDEN=1 rewrites the golden files.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { neighborName, renderBirdConfig, validatePlan, type BirdPlan } from './index.ts';
import { GOLDEN } from './golden.ts';

const fixtures = join(import.meta.dirname, 'fixtures');

for (const [name, plan] of Object.entries(GOLDEN)) {
  test(`golden bird.conf: ${name}`, (t) => {
    const file = join(fixtures, `${name}.conf`);
    const text = renderBirdConfig(plan);
    if (process.env.WIREMESH_UPDATE_GOLDEN) writeFileSync(file, text);
    t.is(text, readFileSync(file, 'utf8'));
  });
}

const base = GOLDEN.mesh;

test('the text does not depend on the order of lists', (t) => {
  const shuffled: BirdPlan = {
    ...base,
    announce: [...base.announce].reverse(),
    accept: [...base.accept].reverse(),
    neighbors: [...base.neighbors].reverse(),
  };
  t.is(renderBirdConfig(shuffled), renderBirdConfig(base));
  t.is(
    renderBirdConfig({ ...base, announce: [...base.announce, ...base.announce] }),
    renderBirdConfig(base),
  );
});

test('what the text promises, line by line', (t) => {
  const rr = renderBirdConfig(GOLDEN.reflector);
  t.regex(rr, /protocol bgp node_c1\n\{[^}]*rr client;\n {2}rr cluster id 198\.18\.253\.1;/);
  t.regex(rr, /protocol bgp node_c1\n\{[^}]*export filter wm_bgp_export_reflected;/);
  const ext = renderBirdConfig(GOLDEN.external);
  t.regex(
    ext,
    /protocol bgp tor\n\{[^}]*direct;[^}]*allow local as;[^}]*import filter wm_bgp_import_external;\n {4}export filter wm_bgp_export;\n {2}\};/,
  );
  // A router's routes: any owner, but only blocks some node owns.
  t.regex(
    ext,
    /filter wm_bgp_import_external\n\{\n {2}if wm_learnable\(\) && net ~ \[ 10\.250\.0\.0\/26, 10\.252\.1\.0\/26 \] then accept;/,
  );
  t.notRegex(ext, /protocol bgp tor\n\{[^}]*igp table/, 'a direct external next hop needs no IGP');
  // Nodes' routes are taken only for blocks their next hop owns.
  t.regex(
    ext,
    /if bgp_next_hop = 198\.18\.252\.2 then return net ~ \[ 10\.250\.0\.0\/26, 10\.252\.1\.0\/26 \];/,
  );
  t.regex(ext, /protocol bgp node_a\n\{[^}]*import filter wm_bgp_import_internal;/);
  t.notRegex(ext, /198\.18\.252\.3/, 'a node owning nothing is not listed');
  t.notRegex(renderBirdConfig(GOLDEN.reflector), /wm_from_owner/, 'no origins, no check');
  const mesh = renderBirdConfig(base);
  // Encrypted pools are checked first, so an encrypted pool inside `accept` stays out.
  t.true(
    mesh.indexOf('10.251.0.0/16+ ] then return false') <
      mesh.indexOf('return net ~ [ 10.250.0.0/16+'),
  );
  t.regex(
    mesh,
    /protocol kernel wm_kernel\n\{\n {2}ipv4 \{ table wm_kernel4;[^}]*export filter wm_to_kernel;/,
  );
  t.regex(mesh, /metric 1024;/);
  t.regex(
    mesh,
    /protocol pipe wm_pipe\n\{[^}]*import none;/,
    'nothing from the kernel side reaches BGP',
  );
  t.regex(mesh, /route 10\.250\.0\.0\/26 blackhole;/);
  t.regex(mesh, /graceful restart off;/);
});

test('an empty plan renders filters that match nothing', (t) => {
  const text = renderBirdConfig({
    ...base,
    announce: [],
    accept: [],
    neverAccept: [],
    neighbors: [],
  });
  t.regex(text, /function wm_learnable\(\)\n\{\n {2}return false;\n\}/);
  t.regex(text, /function wm_own_block\(\)\n\{\n {2}return false;\n\}/);
  t.regex(text, /filter wm_from_kernel\n\{\n {2}accept;\n\}/);
});

const bad: [string, Partial<BirdPlan>, RegExp][] = [
  [
    'router id',
    { routerId: '198.18.252.300' },
    /^routerId: '198\.18\.252\.300' is not an IP address$/,
  ],
  [
    'IPv6 local address',
    { localAddress: '2001:db8::1' },
    /^localAddress: '2001:db8::1' is not an IPv4 address$/,
  ],
  ['AS 0', { localAS: 0, neighbors: [] }, /^localAS 0 is outside 1\.\.4294967295$/],
  ['AS too large', { localAS: 4294967296, neighbors: [] }, /^localAS 4294967296 is outside/],
  [
    'host bits',
    { announce: ['10.250.0.1/26'] },
    /^announce: '10\.250\.0\.1\/26' has host bits set; the network is 10\.250\.0\.0\/26$/,
  ],
  ['not a CIDR', { accept: ['10.250.0.0'] }, /^accept: '10\.250\.0\.0' is not a CIDR$/],
  ['default route', { accept: ['0.0.0.0/0'] }, /^accept: '0\.0\.0\.0\/0' is a default route$/],
  [
    'encrypted announce',
    { announce: ['10.251.0.0/26'] },
    /^announce: 10\.251\.0\.0\/26 overlaps an encrypted pool/,
  ],
  ['metric', { kernelMetric: 0 }, /^kernelMetric 0 is outside/],
  [
    'hold time',
    { holdTime: 2 },
    /^holdTime must be a whole number of seconds in 3\.\.65535, not 2$/,
  ],
  ['keepalive', { holdTime: 9, keepaliveTime: 9 }, /^keepaliveTime 9 must be below holdTime 9$/],
  ['error wait', { errorWaitTime: [10, 5] }, /^errorWaitTime: 10 is above 5$/],
  ['origin address', { nodeOrigins: { node1: [] } }, /^nodeOrigins: 'node1' is not an IP address$/],
  [
    'origin block',
    { nodeOrigins: { '198.18.252.3': ['10.250.0.1/26'] } },
    /^nodeOrigins\[198\.18\.252\.3\]: '10\.250\.0\.1\/26' has host bits set/,
  ],
  ['cluster id', { reflectorClusterId: 'rr1' }, /^reflectorClusterId: 'rr1' is not an IP address$/],
];
for (const [what, change, error] of bad) {
  test(`validation: ${what}`, (t) => {
    const errors = validatePlan({ ...base, ...change });
    t.is(errors.length, 1, errors.join('\n'));
    t.regex(errors[0] ?? '', error);
    t.throws(() => renderBirdConfig({ ...base, ...change }), { message: /^invalid BGP plan: / });
  });
}

test('validation: neighbors', (t) => {
  const n = { name: 'node_b', address: '198.18.252.130', as: 64512, role: 'mesh' as const };
  const errors = validatePlan({
    ...base,
    neighbors: [
      n,
      { ...n, address: '198.18.252.131' },
      { ...n, name: 'wm_kernel', address: '198.18.252.132' },
      { ...n, name: '1node', address: '198.18.252.133' },
      { ...n, name: 'ext', address: '198.18.252.134', role: 'external' },
      { ...n, name: 'other_as', address: '198.18.252.135', as: 65001 },
      { ...n, name: 'cl', address: '198.18.252.136', role: 'client' },
      { ...n, name: 'self', address: base.localAddress },
      { ...n, name: 'dup_addr' },
    ],
  });
  t.deepEqual(errors, [
    "neighbor 'node_b': duplicate name",
    "neighbor 'wm_kernel': names starting 'wm_' are reserved",
    "neighbor '1node': a name is a letter then up to 63 letters, digits or '_'",
    "neighbor 'ext': role 'external' needs an AS other than localAS 64512",
    "neighbor 'other_as': role 'mesh' is iBGP but AS 65001 is not localAS 64512",
    "neighbor 'cl': a 'client' neighbor needs reflectorClusterId",
    "neighbor 'self': address is our own localAddress",
    "neighbor 'dup_addr': duplicate address 198.18.252.130",
  ]);
});

test('neighborName makes BIRD protocol names of node names', (t) => {
  t.is(neighborName('node', 'worker-1.example.com'), 'node_worker_1_example_com');
  t.is(neighborName('', 'x'), 'n_x');
  t.true(neighborName('node', 'a'.repeat(200)).length <= 60);
  t.deepEqual(
    validatePlan({
      ...base,
      neighbors: [{ ...base.neighbors[0]!, name: neighborName('node', 'k8s-w.1') }],
    }),
    [],
  );
});
