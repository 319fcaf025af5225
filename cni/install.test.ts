// `wiremesh install-cni`: the conflist it writes (golden, install.test.ts.md) and the
// files on the node. Its cniVersion is 1.0.0, what containerd 1.6 and podman 4 accept
// results in; cniVersions offers 1.1.0 to newer runtimes when nothing is chained.
// portmap and bandwidth are chained by default, the node's own binaries kept.
import test from 'ava';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFLIST_VERSION, DEFAULT_CHAIN, installCni, wiremeshConflist } from './install.ts';
import { SUPPORTED_VERSIONS } from './protocol.ts';

test('the conflist as installed by default: portmap and bandwidth chained, 1.0.0', (t) => {
  const c = wiremeshConflist({ chain: DEFAULT_CHAIN });
  t.snapshot(c);
  t.deepEqual(
    (c as { plugins: { type: string }[] }).plugins.map((p) => p.type),
    ['wiremesh', 'portmap', 'bandwidth'],
  );
});

test('the conflist alone: 1.0.0, with 1.1.0 offered through cniVersions', (t) => {
  const c = wiremeshConflist({ chain: [] });
  t.snapshot(c);
  t.like(c, { cniVersion: '1.0.0', cniVersions: ['1.0.0', '1.1.0'] });
});

test('with chained plugins and an MTU: 1.0.0 only', (t) => {
  const c = wiremeshConflist({ chain: ['portmap', 'bandwidth'], mtu: 1400 });
  t.snapshot(c);
  t.false('cniVersions' in c);
  t.is((c as { cniVersion: string }).cniVersion, CONFLIST_VERSION);
});

test('every version the conflist names is one the plugin speaks', (t) => {
  for (const c of [wiremeshConflist({ chain: [] }), wiremeshConflist({ chain: ['portmap'] })]) {
    const { cniVersion, cniVersions = [] } = c as { cniVersion: string; cniVersions?: string[] };
    for (const v of [cniVersion, ...cniVersions]) t.true(SUPPORTED_VERSIONS.includes(v), v);
  }
});

test('installCni writes the relay (0755) and the conflist', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-install-cni-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const relay = join(dir, 'relay');
  await writeFile(relay, '#!/bin/sh\n');
  const res = await installCni({
    relay,
    binDir: join(dir, 'bin'),
    confDir: join(dir, 'net.d'),
    chain: [],
  });
  t.is(res.binary, join(dir, 'bin', 'wiremesh'));
  t.is((await stat(res.binary)).mode & 0o777, 0o755);
  t.is(res.conflist, join(dir, 'net.d', '10-wiremesh.conflist'));
  t.deepEqual(JSON.parse(await readFile(res.conflist, 'utf8')), wiremeshConflist({ chain: [] }));
});

test("installCni keeps the node's own chained plugins and copies the missing ones", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-install-cni-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const relay = join(dir, 'relay');
  await writeFile(relay, '#!/bin/sh\n');
  const ours = join(dir, 'ours');
  const binDir = join(dir, 'bin');
  await mkdir(ours);
  await mkdir(binDir);
  await writeFile(join(ours, 'portmap'), 'ours\n', { mode: 0o755 });
  await writeFile(join(ours, 'bandwidth'), 'ours\n', { mode: 0o755 });
  await writeFile(join(binDir, 'portmap'), 'node\n', { mode: 0o755 });
  const res = await installCni({
    relay,
    binDir,
    confDir: join(dir, 'net.d'),
    chain: DEFAULT_CHAIN,
    pluginsDir: ours,
  });
  t.deepEqual(res.plugins, [join(binDir, 'bandwidth')]);
  t.is(await readFile(join(binDir, 'portmap'), 'utf8'), 'node\n', "the node's own is kept");
  t.is(await readFile(join(binDir, 'bandwidth'), 'utf8'), 'ours\n');
  t.is((await stat(join(binDir, 'bandwidth'))).mode & 0o777, 0o755);
  t.deepEqual(
    JSON.parse(await readFile(res.conflist, 'utf8')),
    wiremeshConflist({ chain: DEFAULT_CHAIN }),
  );
});

test('installCni fails, naming the plugin, when a chained one is nowhere', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-install-cni-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const relay = join(dir, 'relay');
  await writeFile(relay, '#!/bin/sh\n');
  const e = await t.throwsAsync(
    installCni({
      relay,
      binDir: join(dir, 'bin'),
      confDir: join(dir, 'net.d'),
      chain: ['bandwidth'],
      pluginsDir: join(dir, 'none'),
    }),
  );
  t.regex(e?.message ?? '', /the bandwidth CNI plugin is chained but is neither in/);
});
