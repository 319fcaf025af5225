// How the WireGuard link comes to exist: the kernel module where `ip link add type
// wireguard` works, otherwise userspace wireguard-go under supervision. Detected
// once at start-up and reported; never pretended. A link left by a previous agent
// (wireguard-go outlives an agent restart, so traffic keeps flowing) is adopted as it is.
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IpClient } from '../sys/index.ts';
import { WireguardGoSupervisor } from '../tunnels/index.ts';
import type { DeviceProvider } from './meshdriver.ts';
import type { Logger } from './log.ts';

export type WireGuardMode = 'auto' | 'kernel' | 'userspace';

export async function kernelHasWireGuard(ip: IpClient): Promise<boolean> {
  const probe = `wmprobe${process.pid % 100000}`;
  try {
    await ip.linkAddWireGuard(probe);
  } catch {
    return false;
  }
  await ip.linkDelete(probe).catch(() => {});
  return true;
}

export class KernelDevice implements DeviceProvider {
  readonly mode = 'kernel' as const;
  private readonly ip: IpClient;
  constructor(ip: IpClient) {
    this.ip = ip;
  }
  async ensure(name: string): Promise<void> {
    if (!(await this.ip.linkShow(name))) await this.ip.linkAddWireGuard(name);
  }
}

export class UserspaceDevice implements DeviceProvider {
  readonly mode = 'userspace' as const;
  private readonly ip: IpClient;
  private readonly binary: string;
  private readonly log: Logger;
  private readonly logFile: string | undefined;
  private readonly onRestart: () => void;
  private supervisor: WireguardGoSupervisor | undefined;

  constructor(
    ip: IpClient,
    binary: string,
    log: Logger,
    opts: { logFile?: string; onRestart?: () => void } = {},
  ) {
    this.ip = ip;
    this.binary = binary;
    this.log = log;
    this.logFile = opts.logFile;
    this.onRestart = opts.onRestart ?? (() => {});
  }

  get pid(): number | undefined {
    return this.supervisor?.pid;
  }

  get restarts(): number {
    return this.supervisor?.restarts ?? 0;
  }

  async ensure(name: string): Promise<void> {
    if (await this.ip.linkShow(name)) return;
    if (!this.supervisor) {
      this.supervisor = new WireguardGoSupervisor({
        binary: this.binary,
        iface: name,
        log: (line) => this.log.info('wireguard-go', { line }),
        ...(this.logFile ? { logFile: this.logFile } : {}),
      });
      this.supervisor.on('restarted', (pid: number) => {
        // The new process starts with an empty device: re-apply everything.
        this.log.warn('wireguard-go restarted; re-applying the mesh', { pid });
        this.onRestart();
      });
      this.supervisor.on('exited', (code: number | null, signal: string | null) =>
        this.log.warn('wireguard-go exited', { code, signal }),
      );
      await this.supervisor.start();
      return;
    }
    // The supervisor is restarting a crashed wireguard-go: wait for its link.
    for (let i = 0; i < 100 && !(await this.ip.linkShow(name)); i++) await sleep(100);
    if (!(await this.ip.linkShow(name)))
      throw new Error(`wireguard-go has not recreated ${name} yet`);
  }

  async stop(): Promise<void> {
    await this.supervisor?.stop();
  }
}

/**
 * wireguard-go run by another process whose lifetime is not the agent's: in the
 * manifest, the wiremesh-wireguard DaemonSet (`wiremesh wireguard-go`). A container
 * runtime ends every process of a container when it stops, so wireguard-go started by
 * the agent would die with each agent upgrade or restart, and encrypted traffic with
 * it. This provider only waits for that process's device; it never starts one.
 */
export class ExternalUserspaceDevice implements DeviceProvider {
  readonly mode = 'userspace' as const;
  private readonly ip: IpClient;
  private readonly waitMs: number;
  constructor(ip: IpClient, opts: { waitMs?: number } = {}) {
    this.ip = ip;
    this.waitMs = opts.waitMs ?? 10_000;
  }
  async ensure(name: string): Promise<void> {
    for (let waited = 0; waited < this.waitMs; waited += 200) {
      if (await this.ip.linkShow(name)) return;
      await sleep(200);
    }
    if (await this.ip.linkShow(name)) return;
    throw new Error(
      `${name} does not exist: wireguard-go is run for it by the wiremesh-wireguard pod on ` +
        'this node (kubectl -n kube-system get pods -l app.kubernetes.io/component=wireguard)',
    );
  }
}

/** The --wireguard-go value saying another process runs wireguard-go (ExternalUserspaceDevice). */
export const EXTERNAL_WIREGUARD_GO = 'external';

export async function chooseDevice(
  mode: WireGuardMode,
  ip: IpClient,
  wireguardGo: string | undefined,
  log: Logger,
  userspace: { logFile?: string; onRestart?: () => void } = {},
): Promise<DeviceProvider & { stop?: () => Promise<void> }> {
  const kernel = mode !== 'userspace' && (await kernelHasWireGuard(ip));
  if (mode === 'kernel' && !kernel) {
    throw new Error(
      'WireGuard mode "kernel" was asked for but this kernel has no WireGuard module',
    );
  }
  if (kernel) {
    log.info('WireGuard: using the kernel module');
    return new KernelDevice(ip);
  }
  if (wireguardGo === EXTERNAL_WIREGUARD_GO) {
    log.info(
      'WireGuard: kernel module missing, using the wireguard-go of the wiremesh-wireguard pod',
    );
    return new ExternalUserspaceDevice(ip);
  }
  if (!wireguardGo || !existsSync(wireguardGo)) {
    throw new Error(
      `this kernel has no WireGuard module and wireguard-go was not found (${wireguardGo ?? 'not set'}); ` +
        'install wireguard-go or set --wireguard-go',
    );
  }
  log.info('WireGuard: kernel module missing, using userspace wireguard-go', {
    binary: wireguardGo,
  });
  return new UserspaceDevice(ip, wireguardGo, log, userspace);
}
