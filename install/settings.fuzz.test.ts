// Fuzz of the agent's settings (settings.ts): the wiremesh-config ConfigMap is edited
// by hand. Whatever its values, resolveAgentSettings returns settings that hold (a
// canonical tunnel CIDR with room for nodes, durations a Node.js timer can wait,
// a port, a listen address) or throws one Error naming each bad key and its source;
// accepted settings survive the round trip through settingsToData unchanged.
import test from 'ava';
import { isIP } from 'node:net';
import { parseCanonicalCidr } from '../ipam/cidr.ts';
import { expect, fuzz, hostileValue, mutateString, type Rng } from '../sys/fuzz.ts';
import {
  DEFAULT_AGENT_SETTINGS,
  SETTING_KEYS,
  configSource,
  flagSource,
  parseListenAddress,
  resolveAgentSettings,
  settingsToData,
  type AgentSettings,
} from './settings.ts';

/** setTimeout and setInterval fire at once (after 1 ms) for a longer delay. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

const NEAR: Record<string, string[]> = {
  'tunnel-cidr': [
    '100.127.0.0/16',
    '100.127.0.0/31',
    '100.127.0.0/30',
    'fd00:7f::/64',
    '10.0.0.1/8',
  ],
  resync: ['30s', '1s', '999ms', '0s', '5m', '24h', '596h', '597h', '9999999999999999999h'],
  wireguard: ['auto', 'kernel', 'userspace', 'Kernel'],
  'key-rotation-period': ['0s', '59s', '1m', '24h', '720h', '8760h', '1e3s'],
  'host-encryption': ['true', 'false', 'yes', 'True'],
  'listen-port': ['51825', '0', '65535', '65536', '080', '1'],
  'log-level': ['debug', 'info', 'warn', 'error', 'trace'],
  'metrics-address': ['0.0.0.0:9825', '[::]:9825', 'off', ':9825', '[0.0.0.0]:1', '::1:9825'],
  'health-address': ['127.0.0.1:9826', '[::1]:9826', 'off', '0.0.0.0:9826', 'localhost:9826'],
  'default-pool-cidr': [
    '100.64.0.0/16',
    'off',
    '100.64.0.0/26',
    '100.64.0.0/16,fd00:64::/48',
    'fd00:64::/122',
    '100.64.0.0/27',
    '100.64.0.0/16,100.65.0.0/16',
  ],
  'bgp-as': ['off', '64512', '65000', '4294967295', '0', '4294967296', 'AS64512'],
  'bgp-node-mesh': ['true', 'false', 'true', 'yes'],
  'bgp-hold-time': ['9s', '3s', '30s', '65535s', '2s', '1500ms'],
};

function configCandidate(rng: Rng): Record<string, string> {
  const values: Record<string, string> = {};
  for (const key of SETTING_KEYS) {
    if (rng.chance(0.5)) continue;
    const near = rng.pick(NEAR[key] ?? ['']);
    const r = rng.next();
    values[key] = r < 0.7 ? near : r < 0.9 ? mutateString(rng, near) : String(hostileValue(rng));
  }
  if (rng.chance(0.05)) values[rng.pick(['resync-period', 'Resync', '__proto__'])] = '30s';
  return values;
}

function checkSettings(s: AgentSettings): void {
  const c = parseCanonicalCidr(s.tunnelCIDR);
  expect(c.ok && c.value.bits - c.value.prefix >= 2, `tunnel CIDR ${s.tunnelCIDR}`);
  expect(
    Number.isSafeInteger(s.resyncMs) && s.resyncMs >= 1000 && s.resyncMs <= LONGEST_TIMER_MS,
    `resync ${s.resyncMs} ms`,
  );
  const k = s.keyRotationPeriodMs;
  expect(
    k === 0 || (Number.isSafeInteger(k) && k >= 60_000 && k <= LONGEST_TIMER_MS),
    `key rotation ${k} ms`,
  );
  expect(['auto', 'kernel', 'userspace'].includes(s.wireguardMode), s.wireguardMode);
  expect(typeof s.hostEncryption === 'boolean', 'host encryption');
  expect(Number.isInteger(s.listenPort) && s.listenPort >= 1 && s.listenPort <= 65535, 'port');
  expect(['debug', 'info', 'warn', 'error'].includes(s.logLevel), s.logLevel);
  for (const address of [s.metricsAddress, s.healthAddress]) {
    if (address === null) continue;
    const a = parseListenAddress(address);
    expect(a !== null && isIP(a.host) !== 0, `listen address ${address}`);
  }
  const families = new Set<number>();
  for (const cidr of s.defaultPoolCIDRs) {
    const c = parseCanonicalCidr(cidr);
    expect(c.ok && c.value.prefix <= (c.value.family === 4 ? 26 : 122), `default pool ${cidr}`);
    if (c.ok) {
      expect(!families.has(c.value.family), `two default pools of one family: ${cidr}`);
      families.add(c.value.family);
    }
  }
}

test('fuzz: ConfigMap settings resolve to valid settings or an error naming each bad key', (t) => {
  let accepted = 0;
  fuzz(0x73657474, 4000, configCandidate, (values) => {
    let s: AgentSettings;
    try {
      s = resolveAgentSettings([configSource(values), flagSource({})]);
    } catch (e) {
      const message = (e as Error).message;
      expect(message.startsWith('invalid settings:\n'), `unexpected error: ${message}`);
      // Every key that is bad on its own is named, with its source.
      let named = 0;
      for (const [key, value] of Object.entries(values)) {
        try {
          resolveAgentSettings([configSource({ [key]: value })]);
        } catch {
          const where = `ConfigMap kube-system/wiremesh-config key '${key}'`;
          expect(message.includes(where), `the error does not name ${key}: ${message}`);
          named++;
        }
      }
      expect(named > 0, `an error for no bad key: ${message}`);
      return;
    }
    accepted++;
    checkSettings(s);
    const again = resolveAgentSettings([configSource(settingsToData(s))]);
    expect(JSON.stringify(again) === JSON.stringify(s), 'settings do not round-trip');
  });
  checkSettings(DEFAULT_AGENT_SETTINGS);
  // Thirteen keys, each possibly bad: about one candidate in forty resolves.
  t.true(accepted > 50 && accepted < 3600, `${accepted} of 4000 accepted`);
});
