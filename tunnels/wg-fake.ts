// An in-memory WgClient for unit tests of drivers: devices, peers and keys as `wg`
// would hold them, every call recorded, failures injected on demand.
import ipaddr from 'ipaddr.js';
import nacl from 'tweetnacl';
import { CommandError } from '../sys/index.ts';
import {
  assertInterfaceName,
  assertWgKey,
  assertPort,
  canonicalCidr,
  formatAddress,
  assertPeerConfig,
  assertFwmark,
  type WgClient,
  type WgDevice,
  type WgPeer,
  type WgPeerConfig,
} from './wg.ts';

export type WgOperation =
  'show' | 'setPrivateKey' | 'setListenPort' | 'setFwmark' | 'setPeer' | 'removePeer';

interface FakeDevice {
  privateKey: string | null;
  publicKey: string | null;
  listenPort: number;
  fwmark: number;
  peers: Map<string, WgPeer>;
}

/**
 * WireGuard devices in memory, for unit tests of drivers. Behaves as wg does where a
 * driver could notice: validation, allowed IPs canonicalised and moved between peers,
 * endpoint kept when null, a peer with the device's own public key ignored, missing
 * devices. Records every call in `calls` (no secrets) and fails on demand.
 */
export class FakeWg implements WgClient {
  /** e.g. 'show wiremesh.wg', 'setPeer wiremesh.wg KEY', 'setListenPort wiremesh.wg 51825'. */
  readonly calls: string[] = [];
  /** How many setPeers calls came (their peers are recorded in `calls` one by one). */
  setPeersCalls = 0;
  private readonly devices = new Map<string, FakeDevice>();
  private readonly failures = new Map<WgOperation, Error[]>();

  addDevice(name: string, options: { listenPort?: number; fwmark?: number } = {}): void {
    assertInterfaceName(name);
    if (this.devices.has(name)) throw new Error(`FakeWg: device ${name} already exists`);
    this.devices.set(name, {
      privateKey: null,
      publicKey: null,
      listenPort: options.listenPort ?? 0,
      fwmark: options.fwmark ?? 0,
      peers: new Map(),
    });
  }

  /** Removes the device and all its configuration, as a dying wireguard-go does. */
  deleteDevice(name: string): void {
    this.devices.delete(name);
  }

  hasDevice(name: string): boolean {
    return this.devices.has(name);
  }

  privateKeyOf(iface: string): string | null {
    return this.device(iface, 'privateKeyOf').privateKey;
  }

  /** Simulates traffic: sets a peer's handshake time and counters. */
  setPeerStats(
    iface: string,
    publicKey: string,
    stats: Partial<Pick<WgPeer, 'latestHandshake' | 'rxBytes' | 'txBytes'>>,
  ): void {
    const peer = this.device(iface, 'setPeerStats').peers.get(publicKey);
    if (!peer) throw new Error(`FakeWg: ${iface} has no peer ${publicKey}`);
    Object.assign(peer, stats);
  }

  /** The next call of `op` records itself, then throws `error`. Queued per operation. */
  failNext(op: WgOperation, error: Error = new Error(`FakeWg: injected ${op} failure`)): void {
    const queue = this.failures.get(op) ?? [];
    queue.push(error);
    this.failures.set(op, queue);
  }

  async show(iface: string): Promise<WgDevice | null> {
    assertInterfaceName(iface);
    this.begin('show', `show ${iface}`);
    const dev = this.devices.get(iface);
    if (!dev) return null;
    return {
      name: iface,
      publicKey: dev.publicKey,
      listenPort: dev.listenPort,
      fwmark: dev.fwmark,
      peers: [...dev.peers.values()].map((p) => ({ ...p, allowedIPs: [...p.allowedIPs] })),
    };
  }

  async setPrivateKey(iface: string, privateKey: string): Promise<void> {
    assertInterfaceName(iface);
    assertWgKey(privateKey, 'private key');
    this.begin('setPrivateKey', `setPrivateKey ${iface}`);
    const dev = this.device(iface);
    dev.privateKey = privateKey;
    dev.publicKey = Buffer.from(
      nacl.scalarMult.base(new Uint8Array(Buffer.from(privateKey, 'base64'))),
    ).toString('base64');
    dev.peers.delete(dev.publicKey); // as wg does: a device is never its own peer
  }

  async setListenPort(iface: string, port: number): Promise<void> {
    assertInterfaceName(iface);
    assertPort(port, 'listen port');
    this.begin('setListenPort', `setListenPort ${iface} ${port}`);
    this.device(iface).listenPort = port;
  }

  async setFwmark(iface: string, mark: number): Promise<void> {
    assertInterfaceName(iface);
    assertFwmark(mark);
    this.begin('setFwmark', `setFwmark ${iface} ${mark}`);
    this.device(iface).fwmark = mark;
  }

  async setPeer(iface: string, config: WgPeerConfig): Promise<void> {
    assertInterfaceName(iface);
    assertPeerConfig(config);
    this.begin('setPeer', `setPeer ${iface} ${config.publicKey}`);
    const dev = this.device(iface);
    if (config.publicKey === dev.publicKey) return; // wg ignores it silently
    const allowedIPs = [...new Set(config.allowedIPs.map(canonicalCidr))];
    for (const other of dev.peers.values()) {
      other.allowedIPs = other.allowedIPs.filter((c) => !allowedIPs.includes(c));
    }
    const endpoint = config.endpoint === null ? null : canonicalEndpoint(config.endpoint);
    const peer = dev.peers.get(config.publicKey);
    if (peer) {
      peer.endpoint = endpoint ?? peer.endpoint;
      peer.allowedIPs = allowedIPs;
      peer.persistentKeepalive = config.persistentKeepalive;
    } else {
      dev.peers.set(config.publicKey, {
        publicKey: config.publicKey,
        endpoint,
        allowedIPs,
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: config.persistentKeepalive,
      });
    }
  }

  /**
   * As `wg set` with many peers: when a failure of setPeer is pending (a bad peer),
   * the whole call fails and writes nothing, leaving that failure to the one-by-one
   * retry that finds the bad peer.
   */
  async setPeers(iface: string, peers: readonly WgPeerConfig[]): Promise<void> {
    assertInterfaceName(iface);
    for (const p of peers) assertPeerConfig(p);
    this.setPeersCalls++;
    if (this.failures.get('setPeer')?.length) {
      const stderr = 'Unable to modify interface: one of the peers failed';
      throw new CommandError(['wg', 'set', iface], 1, '', stderr, 'exit code 1');
    }
    for (const p of peers) await this.setPeer(iface, p);
  }

  async removePeer(iface: string, publicKey: string): Promise<void> {
    assertInterfaceName(iface);
    assertWgKey(publicKey, 'public key');
    this.begin('removePeer', `removePeer ${iface} ${publicKey}`);
    this.device(iface).peers.delete(publicKey);
  }

  private begin(op: WgOperation, call: string): void {
    this.calls.push(call);
    const failure = this.failures.get(op)?.shift();
    if (failure) throw failure;
  }

  /** The device; a missing one fails as `wg set` does, or plainly for a test helper. */
  private device(iface: string, helper?: string): FakeDevice {
    const dev = this.devices.get(iface);
    if (dev) return dev;
    if (helper) throw new Error(`FakeWg.${helper}: no device ${iface}`);
    const stderr = 'Unable to modify interface: No such device';
    throw new CommandError(['wg', 'set', iface], 1, '', stderr, 'exit code 1');
  }
}

function canonicalEndpoint(endpoint: string): string {
  const v6 = /^\[(.+)\]:(\d+)$/.exec(endpoint);
  if (v6?.[1] !== undefined) return `[${formatAddress(ipaddr.parse(v6[1]))}]:${v6[2]}`;
  return endpoint;
}
