// The request side of the CNI protocol (spec 1.1), as pure functions: it turns the
// environment and stdin that the runtime gave /opt/cni/bin/wiremesh (and that the
// relay forwarded to the agent) into a validated `CniRequest`, and renders the VERSION
// and error results. No I/O, so every rule below is a table test.
//
// The rules are the spec's (containernetworking/cni SPEC.md, sections 1, 2 and 5),
// checked in the order of the reference library's skel package, so a runtime sees the
// same error codes it would from a reference plugin. Where the spec and skel differ we
// follow the spec, and say so: CNI_PATH is required only for GC (we delegate to no
// plugin), and VERSION tolerates a missing or unreadable stdin (skel ignores it).
// Bad input only ever throws `CniError`; anything else escaping is a bug.

export const CNI_VERSION = '1.1.0';
/** Oldest first: a version's index orders it. 0.1.0 and 0.2.0 had no rich result. */
export const SUPPORTED_VERSIONS: readonly string[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'GC' | 'STATUS';
export const CNI_COMMANDS: readonly CniCommand[] = [
  'ADD',
  'DEL',
  'CHECK',
  'VERSION',
  'GC',
  'STATUS',
];

/** The well-known error codes of the spec (section 5, "Error"); 100+ are ours to use. */
export const CniErrorCode = {
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
  /** Not in the spec: what the reference skel reports for an unexpected failure. */
  internal: 999,
} as const;

/** An error the runtime sees as `{cniVersion, code, msg, details}` on stdout. */
export class CniError extends Error {
  readonly code: number;
  readonly details?: string;

  constructor(code: number, msg: string, details?: string, options?: ErrorOptions) {
    super(msg, options);
    this.name = 'CniError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

/** Any failure as a CniError: CniErrors pass through, the rest become code 999. */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new CniError(CniErrorCode.internal, message, undefined, { cause: e });
}

/** One entry of GC's `cni.dev/valid-attachments`: an attachment the runtime still uses. */
export interface GcAttachment {
  containerID: string;
  ifname: string;
}

/** The plugin configuration on stdin. Unknown keys stay available in `raw`. */
export interface NetConf {
  cniVersion: string;
  /** Network name; '' only for VERSION, which has no network. */
  name: string;
  /** Plugin type ('wiremesh'); '' only for VERSION. */
  type: string;
  mtu?: number;
  ipam?: unknown;
  dns?: unknown;
  /** A result object: the chain's result so far (ADD) or the final ADD result (CHECK, DEL). */
  prevResult?: Record<string, unknown>;
  runtimeConfig?: Record<string, unknown>;
  /**
   * GC only: attachments that are still valid. Also read from the misspelt
   * `cni.dev/attachments` that libcni sends alongside (containernetworking/cni#1101);
   * null becomes []. Absent when the runtime sent neither key; libcni itself treats
   * that as "no attachment is valid".
   */
  'cni.dev/valid-attachments'?: GcAttachment[];
  /** The whole parsed object, with every key the conflist passed through. */
  raw: Record<string, unknown>;
}

export interface CniRequest {
  command: CniCommand;
  /** '' for VERSION, GC and STATUS, which concern no container. */
  containerID: string;
  /** The container's netns path; '' for DEL when the runtime no longer has one. */
  netns: string;
  ifName: string;
  /** CNI_ARGS "K=V;K=V", e.g. K8S_POD_NAMESPACE, K8S_POD_NAME, IgnoreUnknown. */
  args: Record<string, string>;
  /** CNI_PATH split on ':'. */
  path: string[];
  conf: NetConf;
}

type Need = 'required' | 'optional' | 'ignored';
interface EnvNeeds {
  CNI_CONTAINERID: Need;
  CNI_NETNS: Need;
  CNI_IFNAME: Need;
  CNI_ARGS: Need;
  CNI_PATH: Need;
}

// Section 2, "Required environment parameters" of each operation.
const ENV_NEEDS: Record<CniCommand, EnvNeeds> = {
  ADD: att('required'),
  CHECK: att('required'),
  DEL: att('optional'),
  VERSION: noAtt('ignored'),
  GC: noAtt('required'),
  STATUS: noAtt('optional'),
};
function att(netns: Need): EnvNeeds {
  return {
    CNI_CONTAINERID: 'required',
    CNI_NETNS: netns,
    CNI_IFNAME: 'required',
    CNI_ARGS: 'optional',
    CNI_PATH: 'optional',
  };
}
function noAtt(path: Need): EnvNeeds {
  return {
    CNI_CONTAINERID: 'ignored',
    CNI_NETNS: 'ignored',
    CNI_IFNAME: 'ignored',
    CNI_ARGS: 'ignored',
    CNI_PATH: path,
  };
}

/** The oldest config version each command exists in (CHECK 0.4.0, GC and STATUS 1.1.0). */
const SINCE: Partial<Record<CniCommand, string>> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

/** Container IDs and network names: alphanumeric first, then alphanumerics, _ . - */
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const IFNAME_MAX = 15; // IFNAMSIZ - 1

/** Validates a request as the spec defines it; throws CniError with the spec's code. */
export function parseCniRequest(
  env: Record<string, string | undefined>,
  stdin: string,
): CniRequest {
  const command = env.CNI_COMMAND ?? '';
  if (command === '') throw invalidEnv('required environment variable CNI_COMMAND is missing');
  if (!isCommand(command)) {
    throw invalidEnv(
      'unknown CNI_COMMAND',
      `CNI_COMMAND=${command}; known: ${CNI_COMMANDS.join(', ')}`,
    );
  }
  const needs = ENV_NEEDS[command];
  const value = (name: keyof EnvNeeds): string =>
    needs[name] === 'ignored' ? '' : (env[name] ?? '');
  const missing = (Object.keys(needs) as (keyof EnvNeeds)[]).filter(
    (name) => needs[name] === 'required' && value(name) === '',
  );
  if (missing.length > 0) {
    throw invalidEnv(`required environment variables missing: ${missing.join(', ')}`);
  }
  const containerID = value('CNI_CONTAINERID');
  if (containerID !== '' && !NAME_RE.test(containerID)) {
    throw invalidEnv(
      'invalid CNI_CONTAINERID',
      `${JSON.stringify(containerID)} must start with a letter or digit, then letters, digits, _ . -`,
    );
  }
  const ifName = value('CNI_IFNAME');
  if (needs.CNI_IFNAME !== 'ignored') checkIfName(ifName);
  const args = parseCniArgs(value('CNI_ARGS'));
  const path = value('CNI_PATH')
    .split(':')
    .filter((p) => p !== '');
  const conf = command === 'VERSION' ? versionConf(stdin) : parseNetConf(command, stdin);
  return { command, containerID, netns: value('CNI_NETNS'), ifName, args, path, conf };
}

/** CNI_ARGS, "K=V;K=V". Empty segments are skipped; a pair without exactly one '=' is code 4. */
export function parseCniArgs(text: string): Record<string, string> {
  const args: Record<string, string> = {};
  for (const pair of text.split(';')) {
    if (pair === '') continue;
    const kv = pair.split('=');
    const [key, val] = kv;
    if (kv.length !== 2 || key === undefined || key === '' || val === undefined) {
      throw invalidEnv('invalid CNI_ARGS', `${JSON.stringify(pair)} is not KEY=VALUE`);
    }
    // Own data properties only: a key like __proto__ must not touch the prototype.
    Object.defineProperty(args, key, {
      value: val,
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return args;
}

/** The VERSION result: the cniVersion asked with (or ours) and what we support. */
export function versionResult(conf?: Partial<NetConf>): {
  cniVersion: string;
  supportedVersions: string[];
} {
  const asked = conf?.cniVersion;
  return {
    cniVersion: typeof asked === 'string' && asked !== '' ? asked : CNI_VERSION,
    supportedVersions: [...SUPPORTED_VERSIONS],
  };
}

/** The error result. A cniVersion we do not speak is reported as ours. */
export function errorResult(
  e: CniError,
  cniVersion: string,
): { cniVersion: string; code: number; msg: string; details?: string } {
  return {
    cniVersion: SUPPORTED_VERSIONS.includes(cniVersion) ? cniVersion : CNI_VERSION,
    code: e.code,
    msg: e.message,
    ...(e.details !== undefined && e.details !== '' ? { details: e.details } : {}),
  };
}

/** The cniVersion of a raw config, for an error result when parsing failed; else ours. */
export function cniVersionOf(stdin: string): string {
  try {
    const parsed: unknown = JSON.parse(stdin);
    const v =
      isObject(parsed) && Object.hasOwn(parsed, 'cniVersion') ? parsed.cniVersion : undefined;
    if (typeof v === 'string' && SUPPORTED_VERSIONS.includes(v)) return v;
  } catch {
    /* not JSON: ours */
  }
  return CNI_VERSION;
}

function parseNetConf(command: CniCommand, stdin: string): NetConf {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(
      CniErrorCode.decodingFailure,
      'cannot decode the network config on stdin',
      (e as Error).message,
    );
  }
  if (!isObject(parsed)) {
    throw new CniError(
      CniErrorCode.decodingFailure,
      'cannot decode the network config on stdin',
      `expected a JSON object, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}`,
    );
  }
  const raw = parsed;
  const field = (key: string): unknown => (Object.hasOwn(raw, key) ? raw[key] : undefined);

  const name = field('name');
  if (typeof name !== 'string' || name === '') throw invalidConf('missing network name');
  if (!NAME_RE.test(name)) {
    throw invalidConf(
      'invalid network name',
      `${JSON.stringify(name)}: letters, digits, _ . - only`,
    );
  }

  const cniVersion = field('cniVersion');
  if (cniVersion === undefined || cniVersion === '') {
    throw new CniError(
      CniErrorCode.incompatibleVersion,
      'incompatible CNI version',
      `the config has no cniVersion; supported: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  if (typeof cniVersion !== 'string') {
    throw new CniError(CniErrorCode.decodingFailure, 'cniVersion is not a string');
  }
  if (!SUPPORTED_VERSIONS.includes(cniVersion)) {
    throw new CniError(
      CniErrorCode.incompatibleVersion,
      'incompatible CNI version',
      `config version ${cniVersion}; supported: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  const since = SINCE[command];
  if (since !== undefined && !atLeast(cniVersion, since)) {
    throw new CniError(
      CniErrorCode.incompatibleVersion,
      `config version does not allow ${command}`,
      `${command} needs cniVersion ${since} or later; the config has ${cniVersion}`,
    );
  }

  const type = field('type');
  if (typeof type !== 'string' || type === '') throw invalidConf('missing plugin type');
  if (/[/\\]/.test(type)) throw invalidConf('invalid plugin type', JSON.stringify(type));

  const conf: NetConf = { cniVersion, name, type, raw };
  const mtu = field('mtu');
  if (mtu !== undefined) {
    if (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
      throw invalidConf('invalid mtu', `${JSON.stringify(mtu)}: an integer from 68 to 65535`);
    }
    conf.mtu = mtu;
  }
  if (field('ipam') !== undefined) conf.ipam = field('ipam');
  if (field('dns') !== undefined) conf.dns = field('dns');
  const prevResult = field('prevResult');
  if (prevResult !== undefined && prevResult !== null) {
    if (!isObject(prevResult)) throw invalidConf('prevResult is not an object');
    conf.prevResult = prevResult;
  }
  const runtimeConfig = field('runtimeConfig');
  if (runtimeConfig !== undefined && runtimeConfig !== null) {
    if (!isObject(runtimeConfig)) throw invalidConf('runtimeConfig is not an object');
    conf.runtimeConfig = runtimeConfig;
  }
  if (command === 'GC') {
    const key = Object.hasOwn(raw, 'cni.dev/valid-attachments')
      ? 'cni.dev/valid-attachments'
      : 'cni.dev/attachments';
    if (Object.hasOwn(raw, key)) conf['cni.dev/valid-attachments'] = attachments(key, raw[key]);
  }
  return conf;
}

function attachments(key: string, value: unknown): GcAttachment[] {
  if (value === null) return [];
  if (!Array.isArray(value)) throw invalidConf(`${key} is not a list`);
  return value.map((a: unknown, i) => {
    if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
      throw invalidConf(
        `invalid entry in ${key}`,
        `entry ${i} must be {"containerID": string, "ifname": string}`,
      );
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** VERSION sends `{"cniVersion": ...}`; anything else is answered with ours. */
function versionConf(stdin: string): NetConf {
  let raw: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(stdin);
    if (isObject(parsed)) raw = parsed;
  } catch {
    /* the reference plugins ignore VERSION's stdin */
  }
  const v = Object.hasOwn(raw, 'cniVersion') ? raw.cniVersion : undefined;
  return {
    cniVersion: typeof v === 'string' && v !== '' ? v : CNI_VERSION,
    name: '',
    type: '',
    raw,
  };
}

// The kernel's dev_valid_name, as the reference utils.ValidateInterfaceName checks it.
function checkIfName(ifName: string): void {
  const why =
    ifName === ''
      ? 'is empty'
      : Buffer.byteLength(ifName) > IFNAME_MAX
        ? `is longer than ${IFNAME_MAX} bytes`
        : ifName === '.' || ifName === '..'
          ? 'is . or ..'
          : /[/:\s\u0085]/u.test(ifName)
            ? 'contains /, : or whitespace'
            : undefined;
  if (why !== undefined) throw invalidEnv('invalid CNI_IFNAME', `${JSON.stringify(ifName)} ${why}`);
}

function atLeast(version: string, min: string): boolean {
  return SUPPORTED_VERSIONS.indexOf(version) >= SUPPORTED_VERSIONS.indexOf(min);
}

function isCommand(s: string): s is CniCommand {
  return (CNI_COMMANDS as readonly string[]).includes(s);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function invalidEnv(msg: string, details?: string): CniError {
  return new CniError(CniErrorCode.invalidEnvironment, msg, details);
}

function invalidConf(msg: string, details?: string): CniError {
  return new CniError(CniErrorCode.invalidNetworkConfig, msg, details);
}
