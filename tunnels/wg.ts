// The typed wrapper over the `wg` CLI (wireguard-tools): read a device with `wg show
// IFACE dump`, change it with `wg set`. Works the same for the kernel module and for
// userspace wireguard-go (wg finds its UAPI socket in /var/run/wireguard). Drivers take
// a `WgClient`: `WgCli` in production, `FakeWg` (in memory, fails on demand) in tests.
//
// Secrets: the private key on the dump's first line (and any preshared key) is dropped
// by the parser and never reaches a return value, an error or a log. The private key is
// written on stdin, never in argv. `wg set IFACE private-key /dev/stdin` alone fails under
// Node: a child's piped stdin is a socketpair, which cannot be opened by path (fopen:
// ENXIO), so `cat` turns it into a pipe first. Every input is validated before any argv is
// built; wg itself echoes a malformed key back on stderr, so bad keys never reach it.
//
// A missing device is `null` from `show`: wg says "No such device" when the kernel has
// the module, "Protocol not supported" when it has none (and no wireguard-go socket).
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { CommandError, type Runner, type RunResult } from '../sys/index.ts';

export interface WgPeer {
  publicKey: string;
  endpoint: string | null;
  allowedIPs: string[];
  /** Unix seconds; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  /** Seconds; 0 = off. */
  persistentKeepalive: number;
}

/** What `wg show` reports about a device. Never carries the private key. */
export interface WgDevice {
  name: string;
  /** null until a private key is set. */
  publicKey: string | null;
  listenPort: number;
  fwmark: number;
  peers: WgPeer[];
}

export interface WgPeerConfig {
  publicKey: string;
  /** null leaves the peer's endpoint as it is (unset for a new peer). */
  endpoint: string | null;
  /** Replaces the peer's allowed IPs exactly; may be empty. */
  allowedIPs: string[];
  /** Seconds; 0 turns it off. */
  persistentKeepalive: number;
}

export interface WgClient {
  /** null when the device does not exist. */
  show(iface: string): Promise<WgDevice | null>;
  setPrivateKey(iface: string, privateKey: string): Promise<void>;
  setListenPort(iface: string, port: number): Promise<void>;
  /** The firewall mark on the device's own UDP packets (0 = off), for policy routing. */
  setFwmark(iface: string, mark: number): Promise<void>;
  /** Creates or updates the peer. */
  setPeer(iface: string, peer: WgPeerConfig): Promise<void>;
  /**
   * Creates or updates many peers with as few `wg` processes as it takes. All or
   * nothing per call as `wg set` is: one bad peer (an endpoint that does not resolve)
   * fails it before anything is written, and the caller sets them one by one to find it.
   */
  setPeers(iface: string, peers: readonly WgPeerConfig[]): Promise<void>;
  removePeer(iface: string, publicKey: string): Promise<void>;
}

// ---- validation: nothing unchecked goes into an argv ----------------------------------

const shown = (value: unknown) =>
  typeof value === 'string' ? JSON.stringify(value.slice(0, 64)) : String(value);

/** A Linux interface name: 1-15 characters of [A-Za-z0-9_.=-], not '.', '..' or '-...'. */
export function assertInterfaceName(name: string): void {
  if (
    typeof name !== 'string' ||
    !/^[A-Za-z0-9_.=-]{1,15}$/.test(name) ||
    name === '.' ||
    name === '..' ||
    name.startsWith('-')
  ) {
    throw new Error(
      `invalid interface name ${shown(name)}: expected 1-15 characters of A-Z a-z 0-9 _ . = - ` +
        `(not starting with '-')`,
    );
  }
}

/** A WireGuard key: canonical base64 of 32 bytes. The value is never echoed in the error. */
export function assertWgKey(key: string, what: 'public key' | 'private key'): void {
  const ok =
    typeof key === 'string' &&
    /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(key) &&
    Buffer.from(key, 'base64').length === 32;
  if (!ok)
    throw new Error(`invalid WireGuard ${what}: expected 44 characters of base64 (32 bytes)`);
}

export function assertPort(port: number, what: string, min = 0): void {
  if (!Number.isInteger(port) || port < min || port > 65535) {
    throw new Error(`invalid ${what} ${shown(port)}: expected an integer from ${min} to 65535`);
  }
}

const hostnamePattern =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * `a.b.c.d:port`, `[v6]:port` or `hostname:port` (wg resolves names itself, retrying for
 * up to about 15 s). Port 1-65535; no IPv6 zone.
 */
export function assertEndpoint(endpoint: string): void {
  const bad = (why: string) =>
    new Error(`invalid endpoint ${shown(endpoint)}: ${why} (expected host:port or [v6]:port)`);
  if (typeof endpoint !== 'string') throw bad('not a string');
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(endpoint);
  if (!m) throw bad('not host:port');
  const [, v6, host, port] = m;
  if (v6 !== undefined && (!isIPv6(v6) || v6.includes('%'))) throw bad('not an IPv6 address');
  if (
    host !== undefined &&
    !isIPv4(host) &&
    (!hostnamePattern.test(host) || /^[\d.]+$/.test(host))
  ) {
    throw bad('not an IPv4 address or host name');
  }
  if (Number(port) < 1 || Number(port) > 65535) throw bad('port out of range 1-65535');
}

/**
 * An allowed IP: ADDRESS/PREFIX of either family, with no bits set past the prefix (wg
 * would silently mask them, and the device would then never match the desired state).
 */
export function assertAllowedIP(cidr: string): void {
  const bad = (why: string) => new Error(`invalid allowed IP ${shown(cidr)}: ${why}`);
  if (typeof cidr !== 'string') throw bad('not a string');
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  if (!m || m[1] === undefined || m[2] === undefined) throw bad('expected ADDRESS/PREFIX');
  const [address, prefix] = [m[1], Number(m[2])];
  const bits = isIPv4(address) ? 32 : isIPv6(address) && !address.includes('%') ? 128 : 0;
  if (bits === 0) throw bad('not an IPv4 or IPv6 address');
  if (prefix > bits) throw bad(`prefix longer than ${bits}`);
  const { addr, net } = networkOf(cidr);
  if (addr.toByteArray().join() !== net.toByteArray().join()) {
    throw bad(`host bits set; the network is ${canonicalCidr(cidr)}`);
  }
}

/** The form `wg show` prints an allowed IP in: host bits masked, IPv6 compressed lower case. */
export function canonicalCidr(cidr: string): string {
  const { net, prefix } = networkOf(cidr);
  return `${formatAddress(net)}/${prefix}`;
}

function networkOf(cidr: string) {
  const [addr, prefix] = ipaddr.parseCIDR(cidr);
  const net =
    addr.kind() === 'ipv4'
      ? ipaddr.IPv4.networkAddressFromCIDR(cidr)
      : ipaddr.IPv6.networkAddressFromCIDR(cidr);
  return { addr, net, prefix };
}

export function formatAddress(addr: ipaddr.IPv4 | ipaddr.IPv6): string {
  // inet_ntop (what wg uses) writes IPv4-mapped addresses with a dotted tail.
  if (addr instanceof ipaddr.IPv6 && addr.isIPv4MappedAddress()) {
    return `::ffff:${addr.toIPv4Address().toString()}`;
  }
  return addr.toString();
}

export function assertPeerConfig(peer: WgPeerConfig): void {
  assertWgKey(peer.publicKey, 'public key');
  if (peer.endpoint !== null) assertEndpoint(peer.endpoint);
  if (!Array.isArray(peer.allowedIPs)) throw new Error('invalid allowed IPs: expected a list');
  for (const cidr of peer.allowedIPs) assertAllowedIP(cidr);
  assertPort(peer.persistentKeepalive, 'persistent keepalive');
}

// ---- parsing `wg show IFACE dump` -----------------------------------------------------

/**
 * Parses `wg show IFACE dump`: a device line (private-key public-key listen-port fwmark)
 * then one line per peer (public-key preshared-key endpoint allowed-ips latest-handshake
 * rx tx persistent-keepalive), tab-separated. Both keys that are secrets are dropped
 * here, and errors name the line and field but never quote a secret field.
 */
export function parseWgDump(iface: string, text: string): WgDevice {
  const fail = (line: number, why: string) =>
    new Error(`cannot parse 'wg show ${iface} dump', line ${line}: ${why}`);
  const lines = text.split('\n').filter((l) => l !== '');
  const [deviceLine, ...peerLines] = lines;
  if (deviceLine === undefined) throw fail(1, 'empty output');
  const d = deviceLine.split('\t');
  if (d.length !== 4) throw fail(1, `expected 4 fields on the device line, found ${d.length}`);
  // d[0] is the private key: not read, not copied.
  const device: WgDevice = {
    name: iface,
    publicKey: d[1] === '(none)' ? null : parseKey(d[1], (why) => fail(1, `public key: ${why}`)),
    listenPort: parseCount(d[2], 'listen port', (why) => fail(1, why)),
    // `wg` prints the firewall mark in hex (0x...), or 'off'.
    fwmark:
      d[3] === 'off'
        ? 0
        : /^0x[0-9a-f]{1,8}$/i.test(d[3] ?? '')
          ? parseInt(d[3] ?? '', 16)
          : parseCount(d[3], 'fwmark', (why) => fail(1, why)),
    peers: [],
  };
  if (device.listenPort > 65535) throw fail(1, `listen port ${device.listenPort} out of range`);
  peerLines.forEach((line, i) => {
    const n = i + 2;
    const p = line.split('\t');
    if (p.length !== 8) throw fail(n, `expected 8 fields on a peer line, found ${p.length}`);
    const why = (w: string) => fail(n, w);
    // p[1] is the preshared key: dropped like the private key.
    const endpoint = p[2] === '(none)' ? null : (p[2] ?? '');
    if (endpoint !== null) {
      try {
        assertEndpoint(endpoint);
      } catch (e) {
        throw fail(n, (e as Error).message);
      }
    }
    const allowedIPs = p[3] === '(none)' ? [] : (p[3] ?? '').split(',');
    for (const cidr of allowedIPs) {
      try {
        assertAllowedIP(cidr);
      } catch (e) {
        throw fail(n, (e as Error).message);
      }
    }
    device.peers.push({
      publicKey: parseKey(p[0], (w) => fail(n, `peer public key: ${w}`)),
      endpoint,
      allowedIPs,
      latestHandshake: parseCount(p[4], 'latest handshake', why),
      rxBytes: parseCount(p[5], 'rx bytes', why),
      txBytes: parseCount(p[6], 'tx bytes', why),
      persistentKeepalive: p[7] === 'off' ? 0 : parseCount(p[7], 'persistent keepalive', why),
    });
  });
  return device;
}

function parseKey(field: string | undefined, fail: (why: string) => Error): string {
  try {
    assertWgKey(field ?? '', 'public key');
  } catch {
    throw fail('not a 32-byte base64 key');
  }
  return field ?? '';
}

function parseCount(field: string | undefined, what: string, fail: (why: string) => Error): number {
  const value = field !== undefined && /^(\d+|0x[0-9a-f]+)$/i.test(field) ? Number(field) : NaN;
  if (!Number.isSafeInteger(value)) throw fail(`${what}: expected a count, found ${shown(field)}`);
  return value;
}

// ---- the real client -------------------------------------------------------------------

const missingDevice = /Unable to access interface: (No such device|Protocol not supported)/;

export interface WgCliOptions {
  /** The wg program; default `wg` from PATH. */
  binary?: string;
  /** Kill wg and fail after this long (a wedged wireguard-go can hang its socket). */
  timeoutMs?: number;
}

export class WgCli implements WgClient {
  private readonly runner: Runner;
  private readonly wg: string;
  private readonly timeoutMs: number;

  constructor(runner: Runner, options: WgCliOptions = {}) {
    this.runner = runner;
    this.wg = options.binary ?? 'wg';
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  async show(iface: string): Promise<WgDevice | null> {
    assertInterfaceName(iface);
    const argv = [this.wg, 'show', iface, 'dump'];
    let res: RunResult;
    try {
      res = await this.runner.run(argv, { allowFailure: true, timeoutMs: this.timeoutMs });
    } catch (e) {
      throw withoutStdout(e, this.timeoutMs); // stdout may hold the private key
    }
    if (res.code !== 0) {
      if (missingDevice.test(res.stderr)) return null;
      throw new CommandError(argv, res.code, '', res.stderr, `exit code ${res.code}`);
    }
    return parseWgDump(iface, res.stdout);
  }

  async setPrivateKey(iface: string, privateKey: string): Promise<void> {
    assertInterfaceName(iface);
    assertWgKey(privateKey, 'private key');
    // "$1" is wg, "$2" the interface: no value is interpolated into the script.
    const argv = ['sh', '-c', 'cat | "$1" set "$2" private-key /dev/stdin', 'sh', this.wg, iface];
    try {
      await this.runner.run(argv, { input: `${privateKey}\n`, timeoutMs: this.timeoutMs });
    } catch (e) {
      throw redacted(e, privateKey);
    }
  }

  async setListenPort(iface: string, port: number): Promise<void> {
    assertInterfaceName(iface);
    assertPort(port, 'listen port');
    await this.set([iface, 'listen-port', String(port)]);
  }

  async setFwmark(iface: string, mark: number): Promise<void> {
    assertInterfaceName(iface);
    assertFwmark(mark);
    await this.set([iface, 'fwmark', mark === 0 ? 'off' : `0x${mark.toString(16)}`]);
  }

  async setPeer(iface: string, peer: WgPeerConfig): Promise<void> {
    await this.setPeers(iface, [peer]);
  }

  async setPeers(iface: string, peers: readonly WgPeerConfig[]): Promise<void> {
    assertInterfaceName(iface);
    for (const peer of peers) assertPeerConfig(peer);
    // One process per peer took minutes for a first pass over a thousand nodes; a
    // bounded number of peers per call keeps each argv far below the kernel's limits.
    for (let i = 0; i < peers.length; i += PEERS_PER_CALL) {
      const args = [iface];
      for (const peer of peers.slice(i, i + PEERS_PER_CALL)) args.push(...peerArgs(peer));
      await this.set(args);
    }
  }

  async removePeer(iface: string, publicKey: string): Promise<void> {
    assertInterfaceName(iface);
    assertWgKey(publicKey, 'public key');
    await this.set([iface, 'peer', publicKey, 'remove']);
  }

  private async set(args: string[]): Promise<void> {
    await this.runner.run([this.wg, 'set', ...args], { timeoutMs: this.timeoutMs });
  }
}

const PEERS_PER_CALL = 200;

function peerArgs(peer: WgPeerConfig): string[] {
  const args = ['peer', peer.publicKey];
  if (peer.endpoint !== null) args.push('endpoint', peer.endpoint);
  args.push('allowed-ips', peer.allowedIPs.join(','));
  args.push(
    'persistent-keepalive',
    peer.persistentKeepalive === 0 ? 'off' : String(peer.persistentKeepalive),
  );
  return args;
}

/** A failed `wg show` rebuilt without its stdout, which may hold the private key. */
function withoutStdout(e: unknown, timeoutMs: number): unknown {
  if (!(e instanceof CommandError) || e.stdout === '') return e;
  const reason =
    e.code === null ? `failed or timed out (limit ${timeoutMs} ms)` : `exit code ${e.code}`;
  return new CommandError(e.argv, e.code, '', e.stderr, reason);
}

/** An error with every occurrence of the secret replaced, and no cause that might hold it. */
function redacted(e: unknown, secret: string): Error {
  const scrub = (s: string) => s.split(secret).join('<redacted>');
  if (e instanceof CommandError) {
    const clean = new CommandError(e.argv, e.code, scrub(e.stdout), scrub(e.stderr), 'failed');
    clean.message = scrub(e.message);
    return clean;
  }
  return new Error(scrub(e instanceof Error ? e.message : String(e)));
}

export function assertFwmark(mark: number): void {
  if (!Number.isInteger(mark) || mark < 0 || mark > 0xffffffff)
    throw new Error(`invalid fwmark ${mark}`);
}
