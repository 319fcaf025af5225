// The agent's settings: one table of keys shared by the `wiremesh-config` ConfigMap
// (deploy/config.yaml, mounted as a directory with one file per key) and the agent's
// flags of the same names. `resolveAgentSettings` layers defaults < config < flags and
// validates every value through the same parser, so a bad value fails the same way
// whichever source it came from, with an error naming that source. Pure: reading
// the directory is `readSettingsDir`, the only I/O here.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isIP } from 'node:net';
// IPAM's CIDR parser directly: the settings must not load the IPAM engine.
import { parseCanonicalCidr } from '../ipam/cidr.ts';
import type { WireGuardMode } from '../agent/index.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The agent options the settings decide (a subset of AgentConfig, plus the log level). */
export interface AgentSettings {
  tunnelCIDR: string;
  resyncMs: number;
  wireguardMode: WireGuardMode;
  keyRotationPeriodMs: number;
  hostEncryption: boolean;
  listenPort: number;
  logLevel: LogLevel;
  /** host:port of the Prometheus /metrics endpoint; null: no endpoint. */
  metricsAddress: string | null;
  /** host:port of the health endpoints (/healthz, /readyz) the kubelet probes; null: none. */
  healthAddress: string | null;
  /** The IPPools the agent creates when the cluster has none (at most one per family). */
  defaultPoolCIDRs: string[];
  /** The nodes' BGP AS number; null: no BGP. */
  bgpAS: number | null;
  /** Every node peers with every other over BGP (unless route reflectors exist). */
  bgpNodeMesh: boolean;
  /** BGP hold time: a node that stops announcing is withdrawn after this long. */
  bgpHoldTimeMs: number;
}

export const DEFAULT_AGENT_SETTINGS: AgentSettings = {
  tunnelCIDR: '100.127.0.0/16',
  resyncMs: 30_000,
  wireguardMode: 'auto',
  keyRotationPeriodMs: 0,
  hostEncryption: false,
  listenPort: 51825,
  logLevel: 'info',
  metricsAddress: '0.0.0.0:9825',
  healthAddress: '127.0.0.1:9826',
  defaultPoolCIDRs: ['100.64.0.0/16'],
  bgpAS: null,
  bgpNodeMesh: true,
  bgpHoldTimeMs: 9000,
};

function parseBool(text: string): boolean {
  if (text === 'true') return true;
  if (text === 'false') return false;
  throw new Error(`takes true or false, not '${text}'`);
}

interface SettingDef<K extends keyof AgentSettings> {
  field: K;
  /** Parses the text form; throws a message saying what is accepted. */
  parse: (text: string) => AgentSettings[K];
  help: string;
}

const DURATION = /^(\d+)(ms|s|m|h)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
/** The longest delay setTimeout / setInterval keep (about 24.8 days, 596 h). */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** '500ms', '30s', '5m', '24h' to milliseconds. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`takes a duration like 500ms, 30s, 5m or 24h, not '${text}'`);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}

function parsePort(text: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`takes a port from 1 to 65535, not '${text}'`);
  return n;
}

/** 'off', or an IP address and a port: '0.0.0.0:9825', '198.18.0.2:9825', '[::]:9825'. */
export function parseListenAddress(text: string): { host: string; port: number } | null {
  if (text === 'off') return null;
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):([^:]+)$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  if (!m || host === undefined || isIP(host) !== (m[1] !== undefined ? 6 : 4))
    throw new Error(`takes off or IP:PORT ('0.0.0.0:9825', '[::]:9825'), not '${text}'`);
  return { host, port: parsePort(m[3] ?? '') };
}

/**
 * 'off', or one canonical CIDR per family, comma-separated: '100.64.0.0/16',
 * '100.64.0.0/16,fd00:64::/48'. Each must hold one block of the family's default
 * size (/26, /122), the block size the created pool gets.
 */
export function parseDefaultPoolCidrs(text: string): string[] {
  if (text === 'off') return [];
  const cidrs = text.split(',').map((c) => c.trim());
  const families = new Set<number>();
  for (const cidr of cidrs) {
    const c = parseCanonicalCidr(cidr);
    if (!c.ok) throw new Error(`takes off or CIDRs like 100.64.0.0/16: ${c.reason}`);
    const block = c.value.family === 4 ? 26 : 122;
    if (c.value.prefix > block)
      throw new Error(`'${cidr}' is smaller than one /${block} block of addresses`);
    if (families.has(c.value.family))
      throw new Error(`takes at most one CIDR per family, not '${text}'`);
    families.add(c.value.family);
  }
  return cidrs;
}

function oneOf<T extends string>(values: readonly T[]): (text: string) => T {
  return (text) => {
    if ((values as readonly string[]).includes(text)) return text as T;
    throw new Error(`takes ${values.join(', ')}, not '${text}'`);
  };
}

function durationAtLeast(minMs: number, minText: string, zeroAllowed: boolean) {
  return (text: string): number => {
    const ms = parseDuration(text);
    if (zeroAllowed && ms === 0) return 0;
    if (ms < minMs)
      throw new Error(
        `must be at least ${minText}${zeroAllowed ? ' (or 0 for off)' : ''}, not '${text}'`,
      );
    // Node.js fires a timer with a longer delay after 1 ms: '720h' would rotate the
    // key, or resync, a thousand times a second.
    if (ms > LONGEST_TIMER_MS) throw new Error(`must be at most 596h, not '${text}'`);
    return ms;
  };
}

/** Every setting, keyed by its ConfigMap key, which is also its flag name. */
export const SETTINGS = {
  'tunnel-cidr': {
    field: 'tunnelCIDR',
    help: 'the range tunnel addresses of nodes come from, e.g. 100.127.0.0/16',
    parse: (text) => {
      const c = parseCanonicalCidr(text);
      if (!c.ok) throw new Error(c.reason);
      const hostBits = c.value.bits - c.value.prefix;
      if (hostBits < 2) throw new Error(`'${text}' has no room for nodes`);
      return text;
    },
  } satisfies SettingDef<'tunnelCIDR'>,
  resync: {
    field: 'resyncMs',
    help: 'how often the agent re-applies its state to repair drift (at least 1s)',
    parse: durationAtLeast(1000, '1s', false),
  } satisfies SettingDef<'resyncMs'>,
  wireguard: {
    field: 'wireguardMode',
    help: 'auto (the kernel module, else wireguard-go), kernel or userspace',
    parse: oneOf<WireGuardMode>(['auto', 'kernel', 'userspace']),
  } satisfies SettingDef<'wireguardMode'>,
  'key-rotation-period': {
    field: 'keyRotationPeriodMs',
    help: 'rotate the node key this often (at least 1m, at most 596h; 0s for never)',
    parse: durationAtLeast(60_000, '1m', true),
  } satisfies SettingDef<'keyRotationPeriodMs'>,
  'host-encryption': {
    field: 'hostEncryption',
    help: 'true to route host-to-host traffic between nodes through the mesh too',
    parse: parseBool,
  } satisfies SettingDef<'hostEncryption'>,
  'listen-port': {
    field: 'listenPort',
    help: 'the WireGuard UDP port (51825)',
    parse: parsePort,
  } satisfies SettingDef<'listenPort'>,
  'log-level': {
    field: 'logLevel',
    help: 'debug, info, warn or error',
    parse: oneOf<LogLevel>(['debug', 'info', 'warn', 'error']),
  } satisfies SettingDef<'logLevel'>,
  'metrics-address': {
    field: 'metricsAddress',
    help: 'IP:PORT of the Prometheus /metrics endpoint (0.0.0.0:9825), or off',
    parse: (text) => (parseListenAddress(text) === null ? null : text),
  } satisfies SettingDef<'metricsAddress'>,
  'health-address': {
    field: 'healthAddress',
    help: 'IP:PORT of the health endpoints /healthz and /readyz (127.0.0.1:9826), or off',
    parse: (text) => (parseListenAddress(text) === null ? null : text),
  } satisfies SettingDef<'healthAddress'>,
  'default-pool-cidr': {
    field: 'defaultPoolCIDRs',
    help: 'the IPPool created when the cluster has none (100.64.0.0/16; one per family), or off',
    parse: parseDefaultPoolCidrs,
  } satisfies SettingDef<'defaultPoolCIDRs'>,
  'bgp-as': {
    field: 'bgpAS',
    help: 'off, or the AS number (1-4294967295) the nodes speak BGP with for natively routed pools',
    parse: (text) => {
      if (text === 'off') return null;
      const n = /^\d{1,10}$/.test(text) ? Number(text) : NaN;
      if (!(n >= 1 && n <= 4294967295))
        throw new Error(`takes off or an AS number from 1 to 4294967295, not '${text}'`);
      return n;
    },
  } satisfies SettingDef<'bgpAS'>,
  'bgp-node-mesh': {
    field: 'bgpNodeMesh',
    help: 'true: every node peers with every other (unless route reflectors are labelled)',
    parse: parseBool,
  } satisfies SettingDef<'bgpNodeMesh'>,
  'bgp-hold-time': {
    field: 'bgpHoldTimeMs',
    help: 'BGP hold time (at least 3s, at most 65535s): how soon a silent node is withdrawn',
    parse: (text) => {
      const ms = parseDuration(text);
      if (ms < 3000 || ms > 65_535_000 || ms % 1000 !== 0)
        throw new Error(`takes whole seconds from 3s to 65535s, not '${text}'`);
      return ms;
    },
  } satisfies SettingDef<'bgpHoldTimeMs'>,
} as const;

export type SettingKey = keyof typeof SETTINGS;
export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

export function isSettingKey(key: string): key is SettingKey {
  return Object.hasOwn(SETTINGS, key);
}

/** One source of settings as text, e.g. the ConfigMap's data or the flags given. */
export interface SettingsSource {
  /** How errors name a key of this source, e.g. (k) => `--${k}`. */
  describe: (key: string) => string;
  values: Record<string, string | boolean | undefined>;
}

export function configSource(
  values: Record<string, string>,
  where = 'ConfigMap kube-system/wiremesh-config',
): SettingsSource {
  return { describe: (k) => `${where} key '${k}'`, values };
}

/** A settings directory (the mounted ConfigMap): errors name the file and the key. */
export function dirSource(dir: string, values: Record<string, string>): SettingsSource {
  return {
    describe: (k) => `${join(dir, k)} (wiremesh-config key '${k}')`,
    values,
  };
}

export function flagSource(values: Record<string, string | boolean | undefined>): SettingsSource {
  return { describe: (k) => `--${k}`, values };
}

/**
 * Defaults, then each source in order (later wins: pass the config, then the flags).
 * Unknown keys and bad values throw, naming the source and what is accepted.
 */
export function resolveAgentSettings(sources: SettingsSource[]): AgentSettings {
  const out: AgentSettings = { ...DEFAULT_AGENT_SETTINGS };
  const problems: string[] = [];
  for (const source of sources) {
    for (const [key, raw] of Object.entries(source.values)) {
      if (raw === undefined) continue;
      if (!isSettingKey(key)) {
        problems.push(
          `${source.describe(key)} is not a setting (known: ${SETTING_KEYS.join(', ')})`,
        );
        continue;
      }
      const def: SettingDef<keyof AgentSettings> = SETTINGS[key];
      // A boolean flag given bare (--host-encryption) arrives as true.
      const text = typeof raw === 'boolean' ? String(raw) : raw.trim();
      try {
        (out as unknown as Record<string, unknown>)[def.field] = def.parse(text);
      } catch (e) {
        problems.push(`${source.describe(key)} ${(e as Error).message}`);
      }
    }
  }
  if (problems.length) throw new Error(`invalid settings:\n  ${problems.join('\n  ')}`);
  return out;
}

/**
 * A ConfigMap mounted as a volume: one file per key, plus the kubelet's hidden
 * `..data` links, which are skipped. A missing directory is an error: the agent
 * was told to read it.
 */
export async function readSettingsDir(dir: string): Promise<Record<string, string>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw new Error(`cannot read the settings directory ${dir}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const values: Record<string, string> = {};
  for (const name of names.sort()) {
    if (name.startsWith('.')) continue;
    values[name] = (await readFile(join(dir, name), 'utf8')).trim();
  }
  return values;
}

/** The settings as ConfigMap data (text values), e.g. for rendering or for tests. */
export function settingsToData(s: AgentSettings): Record<SettingKey, string> {
  return {
    'tunnel-cidr': s.tunnelCIDR,
    resync: formatDuration(s.resyncMs),
    wireguard: s.wireguardMode,
    'key-rotation-period': formatDuration(s.keyRotationPeriodMs),
    'host-encryption': String(s.hostEncryption),
    'listen-port': String(s.listenPort),
    'log-level': s.logLevel,
    'metrics-address': s.metricsAddress ?? 'off',
    'health-address': s.healthAddress ?? 'off',
    'default-pool-cidr': s.defaultPoolCIDRs.length ? s.defaultPoolCIDRs.join(',') : 'off',
    'bgp-as': s.bgpAS === null ? 'off' : String(s.bgpAS),
    'bgp-node-mesh': String(s.bgpNodeMesh),
    'bgp-hold-time': formatDuration(s.bgpHoldTimeMs),
  };
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
