import test from 'ava';
import { mkdtemp, writeFile, rm, mkdir, symlink } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  DEFAULT_AGENT_SETTINGS,
  SETTING_KEYS,
  configSource,
  dirSource,
  flagSource,
  readSettingsDir,
  resolveAgentSettings,
  settingsToData,
} from './settings.ts';
import { defaultAgentConfig } from '../agent/index.ts';
import { agentOptions } from '../cli/agent.ts';
import { DEPLOY_DIR } from './manifest.ts';

const manifestData = (
  parseYaml(readFileSync(join(DEPLOY_DIR, 'config.yaml'), 'utf8')) as {
    data: Record<string, string>;
  }
).data;

test('the defaults are the agent defaults', (t) => {
  const a = defaultAgentConfig('n');
  const d = DEFAULT_AGENT_SETTINGS;
  t.is(d.tunnelCIDR, a.tunnelCIDR);
  t.is(d.resyncMs, a.resyncMs);
  t.is(d.wireguardMode, a.wireguardMode);
  t.is(d.keyRotationPeriodMs, a.keyRotationPeriodMs);
  t.is(d.hostEncryption, a.hostEncryption);
  t.is(d.listenPort, a.listenPort);
  t.deepEqual(d.defaultPoolCIDRs, a.defaultPoolCIDRs);
});

test('deploy/config.yaml sets every setting, each valid, to the defaults', (t) => {
  t.deepEqual(Object.keys(manifestData).sort(), [...SETTING_KEYS].sort());
  t.deepEqual(resolveAgentSettings([configSource(manifestData)]), DEFAULT_AGENT_SETTINGS);
  t.deepEqual(settingsToData(DEFAULT_AGENT_SETTINGS), manifestData);
});

test('config values become agent options; flags win over the config', (t) => {
  const s = resolveAgentSettings([
    configSource({
      'tunnel-cidr': '100.126.0.0/20',
      resync: '2m',
      wireguard: 'userspace',
      'key-rotation-period': '24h',
      'host-encryption': 'true',
      'listen-port': '51900',
      'log-level': 'debug',
      'metrics-address': '198.18.0.2:9900',
      'health-address': '[::1]:9901',
      'default-pool-cidr': '100.80.0.0/16,fd00:80::/48',
    }),
    flagSource({ resync: '5s', 'host-encryption': false, wireguard: undefined }),
  ]);
  t.deepEqual(s, {
    tunnelCIDR: '100.126.0.0/20',
    resyncMs: 5000,
    wireguardMode: 'userspace',
    keyRotationPeriodMs: 86_400_000,
    hostEncryption: false,
    listenPort: 51900,
    logLevel: 'debug',
    metricsAddress: '198.18.0.2:9900',
    healthAddress: '[::1]:9901',
    defaultPoolCIDRs: ['100.80.0.0/16', 'fd00:80::/48'],
    bgpAS: null,
    bgpNodeMesh: true,
    bgpHoldTimeMs: 9000,
  });
});

test('bgp-as: off or an AS number; bgp-hold-time: whole seconds, 3s to 65535s', (t) => {
  const s = resolveAgentSettings([
    configSource({ 'bgp-as': '64512', 'bgp-node-mesh': 'false', 'bgp-hold-time': '30s' }),
  ]);
  t.like(s, { bgpAS: 64512, bgpNodeMesh: false, bgpHoldTimeMs: 30_000 });
  t.like(settingsToData(s), {
    'bgp-as': '64512',
    'bgp-node-mesh': 'false',
    'bgp-hold-time': '30s',
  });
  for (const [key, bad] of [
    ['bgp-as', '0'],
    ['bgp-as', '4294967296'],
    ['bgp-hold-time', '2s'],
    ['bgp-hold-time', '1500ms'],
  ] as const)
    t.throws(() => resolveAgentSettings([configSource({ [key]: bad })]), {
      message: new RegExp(key),
    });
});

test('health-address and default-pool-cidr: off', (t) => {
  const s = resolveAgentSettings([
    configSource({ 'health-address': 'off', 'default-pool-cidr': 'off' }),
  ]);
  t.is(s.healthAddress, null);
  t.deepEqual(s.defaultPoolCIDRs, []);
  t.like(settingsToData(s), { 'health-address': 'off', 'default-pool-cidr': 'off' });
});

test('metrics-address: off, IPv4 or bracketed IPv6 with a port', (t) => {
  const m = (v: string) =>
    resolveAgentSettings([flagSource({ 'metrics-address': v })]).metricsAddress;
  t.is(m('off'), null);
  t.is(m('[::]:9825'), '[::]:9825');
  t.is(m('0.0.0.0:1'), '0.0.0.0:1');
});

test('an IPv6 tunnel CIDR is accepted', (t) => {
  t.is(
    resolveAgentSettings([flagSource({ 'tunnel-cidr': 'fd00:127::/64' })]).tunnelCIDR,
    'fd00:127::/64',
  );
});

const bad = test.macro({
  exec(t, key: string, value: string, message: RegExp) {
    const e = t.throws(() => resolveAgentSettings([configSource({ [key]: value })]));
    t.regex(e?.message ?? '', new RegExp(`ConfigMap kube-system/wiremesh-config key '${key}'`));
    t.regex(e?.message ?? '', message);
  },
  title: (_, key: string, value: string) => `config ${key}: '${value}' is refused`,
});

test(bad, 'tunnel-cidr', '100.127.0.1/16', /host bits set; the network is 100\.127\.0\.0\/16/);
test(bad, 'tunnel-cidr', 'not-a-cidr', /is not a CIDR/);
test(bad, 'tunnel-cidr', '100.127.0.0/32', /no room for nodes/);
test(bad, 'resync', '30', /duration like 500ms, 30s, 5m or 24h, not '30'/);
test(bad, 'resync', '100ms', /at least 1s/);
test(bad, 'wireguard', 'Kernel', /takes auto, kernel, userspace, not 'Kernel'/);
test(bad, 'key-rotation-period', '30s', /at least 1m \(or 0 for off\)/);
test(bad, 'host-encryption', 'yes', /takes true or false, not 'yes'/);
test(bad, 'listen-port', '70000', /port from 1 to 65535/);
test(bad, 'listen-port', '0x50', /port from 1 to 65535/);
test(bad, 'log-level', 'trace', /takes debug, info, warn, error/);
test(bad, 'metrics-address', '9825', /takes off or IP:PORT/);
test(bad, 'metrics-address', 'node1:9825', /takes off or IP:PORT/);
test(bad, 'metrics-address', '::1:9825', /takes off or IP:PORT/);
test(bad, 'metrics-address', '0.0.0.0:0', /port from 1 to 65535/);
test(bad, 'health-address', 'localhost:9826', /takes off or IP:PORT/);
test(bad, 'default-pool-cidr', '100.64.0.1/16', /host bits set/);
test(bad, 'default-pool-cidr', '100.64.0.0/27', /smaller than one \/26 block/);
test(bad, 'default-pool-cidr', 'fd00:64::/123', /smaller than one \/122 block/);
test(bad, 'default-pool-cidr', '100.64.0.0/16,100.65.0.0/16', /at most one CIDR per family/);
test(bad, 'default-pool-cidr', '', /takes off or CIDRs like 100\.64\.0\.0\/16/);

test('an unknown key is refused, naming the known ones', (t) => {
  const e = t.throws(() => resolveAgentSettings([configSource({ resynk: '30s' })]));
  t.regex(e?.message ?? '', /key 'resynk' is not a setting \(known: tunnel-cidr, resync,/);
});

test('every problem is reported at once, each naming its source', (t) => {
  const e = t.throws(() =>
    resolveAgentSettings([configSource({ resync: 'soon' }), flagSource({ 'listen-port': 'http' })]),
  );
  t.regex(e?.message ?? '', /key 'resync' takes a duration/);
  t.regex(e?.message ?? '', /--listen-port takes a port/);
});

test('a mounted ConfigMap directory is read without the kubelet links', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-settings-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The kubelet's layout: ..<timestamp>/KEY, ..data -> it, KEY -> ..data/KEY.
  await mkdir(join(dir, '..2024_01_01'));
  await writeFile(join(dir, '..2024_01_01', 'resync'), '45s\n');
  await symlink('..2024_01_01', join(dir, '..data'));
  await symlink('..data/resync', join(dir, 'resync'));
  t.deepEqual(await readSettingsDir(dir), { resync: '45s' });
  const e = await t.throwsAsync(readSettingsDir(join(dir, 'missing')));
  t.regex(e?.message ?? '', /cannot read the settings directory .*missing/);
});

test('wiremesh agent: --config-dir settings, flags over them, errors name the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wm-settings-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  for (const [k, v] of Object.entries({ ...manifestData, wireguard: 'userspace', resync: '1m' }))
    await writeFile(join(dir, k), v);
  const { config, logLevel } = await agentOptions(
    ['--node-name', 'n1', '--config-dir', dir, '--resync', '10s', '--host-encryption'],
    {},
  );
  t.is(config.nodeName, 'n1');
  t.is(config.wireguardMode, 'userspace');
  t.is(config.resyncMs, 10_000);
  t.true(config.hostEncryption);
  t.is(config.tunnelCIDR, '100.127.0.0/16');
  t.is(logLevel, 'info');
  t.is(config.stateDir, '/var/lib/wiremesh');

  await writeFile(join(dir, 'log-level'), 'loud');
  const e = await t.throwsAsync(agentOptions(['--node-name', 'n1', '--config-dir', dir], {}));
  t.regex(
    e?.message ?? '',
    new RegExp(`${join(dir, 'log-level')} \\(wiremesh-config key 'log-level'\\) takes debug`),
  );
  await t.throwsAsync(agentOptions(['--config-dir', dir], {}), { message: /--node-name/ });
});

test('a directory source names the file', (t) => {
  const e = t.throws(() =>
    resolveAgentSettings([dirSource('/etc/wiremesh/config', { wireguard: 'x' })]),
  );
  t.regex(
    e?.message ?? '',
    /\/etc\/wiremesh\/config\/wireguard \(wiremesh-config key 'wireguard'\)/,
  );
});
