// Userspace WireGuard: wireguard-go under supervision, for kernels without the module.
// The supervisor runs `wireguard-go -f IFACE` (optionally behind an argv prefix such as
// `ip netns exec NS`, which must exec rather than fork, so the pid is wireguard-go's),
// waits until the device is usable (its UAPI socket answers and its link exists in the
// process's own network namespace), sends its output to a log callback line by line, and
// restarts it with exponential backoff when it dies.
//
// When wireguard-go dies, its link and all its configuration (key, port, peers, and the
// addresses and routes on the link) vanish with it. The supervisor only brings the process
// back; re-applying the configuration is the caller's job, on the 'restarted' event.
//
// Events: 'started' (pid) once start() has a ready device; 'exited' (code, signal) for
// every exit, expected or not; 'restarted' (pid) when an automatic restart is ready.
// wireguard-go is not detached: it shares the agent's process group. Its output is piped
// to us, so it does not outlive the supervising process for long either way (Go exits on
// SIGPIPE at its next log line); stop() is the clean way to end it.
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertInterfaceName } from './wg.ts';

/** The part of a ChildProcess the supervisor uses; a real ChildProcess is one. */
export interface WireguardGoProcess {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals): boolean;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
}

export type SpawnProcess = (argv: readonly string[], env: NodeJS.ProcessEnv) => WireguardGoProcess;

/** Whether a running wireguard-go is usable yet. */
export interface Readiness {
  socket: boolean;
  link: boolean;
}

export interface WireguardGoOptions {
  /** Path of the wireguard-go binary. */
  binary: string;
  iface: string;
  /** Runs before the binary, e.g. ['ip', 'netns', 'exec', 'NS']; must exec, not fork. */
  argvPrefix?: readonly string[];
  /** Where the UAPI socket appears, as this process sees it. */
  runDir?: string;
  /** wireguard-go's LOG_LEVEL; its own default is 'error'. */
  logLevel?: 'verbose' | 'error' | 'silent';
  log?: (line: string) => void;
  /**
   * Send wireguard-go's output to this file instead of a pipe. A piped wireguard-go
   * dies of SIGPIPE at its next log line once its supervisor is gone; with a file it
   * outlives an agent restart and keeps the tunnel up meanwhile.
   */
  logFile?: string;
  /** For unit tests: spawn something else than a real process. */
  spawnProcess?: SpawnProcess;
  /** For unit tests: decide readiness without a real socket and link. */
  probe?: (pid: number) => Promise<Readiness>;
  startTimeoutMs?: number;
  stopGraceMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** A process that ran this long resets the backoff to its minimum. */
  stableAfterMs?: number;
  /** The clock that measures how long a process ran (for tests). */
  now?: () => number;
}

interface Child {
  proc: WireguardGoProcess;
  pid: number;
  spawnedAt: number;
  ready: boolean;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  exited: Promise<void>;
}

const RECENT_LINES = 20;

export class WireguardGoSupervisor extends EventEmitter {
  private readonly argv: readonly string[];
  private readonly iface: string;
  private readonly socketPath: string;
  private readonly options: WireguardGoOptions;
  private readonly spawnProcess: SpawnProcess;
  private readonly probe: (pid: number) => Promise<Readiness>;
  private readonly now: () => number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private child: Child | undefined;
  private stopped = true;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private restartCount = 0;
  private readonly recent: string[] = [];

  constructor(options: WireguardGoOptions) {
    super();
    assertInterfaceName(options.iface);
    this.options = options;
    this.iface = options.iface;
    this.argv = [...(options.argvPrefix ?? []), options.binary, '-f', options.iface];
    this.socketPath = `${options.runDir ?? '/var/run/wireguard'}/${options.iface}.sock`;
    this.spawnProcess =
      options.spawnProcess ?? (options.logFile ? spawnToFile(options.logFile) : spawnPiped);
    this.probe = options.probe ?? ((pid) => probeReadiness(pid, this.iface, this.socketPath));
    this.now = options.now ?? Date.now;
    this.minBackoffMs = options.minBackoffMs ?? 100;
    this.maxBackoffMs = options.maxBackoffMs ?? 5000;
    this.backoffMs = this.minBackoffMs;
  }

  /** The running wireguard-go's pid; undefined between a crash and its restart. */
  get pid(): number | undefined {
    return this.child && !this.child.exit ? this.child.pid : undefined;
  }

  /** How many times wireguard-go was respawned after dying unexpectedly. */
  get restarts(): number {
    return this.restartCount;
  }

  /** Starts wireguard-go and resolves once its device is usable; rejects saying why not. */
  async start(): Promise<void> {
    if (!this.stopped) throw new Error(`wireguard-go for ${this.iface} is already supervised`);
    if (this.options.binary.includes('/') && !this.options.spawnProcess) {
      if (!existsSync(this.options.binary)) {
        throw new Error(`wireguard-go binary not found at ${this.options.binary}`);
      }
    }
    this.stopped = false;
    this.backoffMs = this.minBackoffMs;
    try {
      const pid = await this.launch();
      this.emit('started', pid);
    } catch (e) {
      this.stopped = true;
      throw e;
    }
  }

  /** SIGTERM, then SIGKILL after a grace period; no restart afterwards. Removes nothing. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (!child || child.exit) return;
    child.proc.kill('SIGTERM');
    if (await settlesWithin(child.exited, this.options.stopGraceMs ?? 5000)) return;
    this.logLine(`wireguard-go for ${this.iface} (pid ${child.pid}) ignored SIGTERM; killing it`);
    child.proc.kill('SIGKILL');
    await child.exited;
  }

  /** Spawns one wireguard-go and waits until it is ready; returns its pid. */
  private async launch(): Promise<number> {
    const env: NodeJS.ProcessEnv = { ...process.env, WG_PROCESS_FOREGROUND: '1' };
    if (this.options.logLevel) env.LOG_LEVEL = this.options.logLevel;
    this.recent.length = 0;
    const proc = this.spawnProcess(this.argv, env);
    let markExited = () => {};
    const exited = new Promise<void>((resolve) => (markExited = resolve));
    const child: Child = { proc, pid: proc.pid ?? 0, spawnedAt: this.now(), ready: false, exited };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      if (child.exit) return;
      child.exit = { code, signal };
      markExited();
      this.emit('exited', code, signal);
      if (this.child === child && child.ready && !this.stopped) {
        this.scheduleRestart(this.now() - child.spawnedAt);
      }
    };
    proc.once('exit', onExit);
    proc.once('error', (e) => {
      this.logLine(`wireguard-go for ${this.iface}: ${e.message}`);
      onExit(null, null);
    });
    for (const stream of [proc.stdout, proc.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (l) => this.logLine(l));
    }
    this.child = child;
    await this.waitReady(child);
    child.ready = true;
    return child.pid;
  }

  private async waitReady(child: Child): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    let state: Readiness = { socket: false, link: false };
    for (;;) {
      if (this.stopped) {
        await child.exited; // stop() is ending it
        throw new Error(`wireguard-go for ${this.iface} was stopped while starting`);
      }
      if (child.exit) throw this.exitedEarly(child);
      if (child.pid) state = await this.probe(child.pid);
      if (state.socket && state.link && !child.exit) return;
      if (Date.now() >= deadline) break;
      await Promise.race([sleep(20), child.exited]);
    }
    child.proc.kill('SIGKILL');
    await child.exited;
    throw new Error(
      `wireguard-go for ${this.iface} (pid ${child.pid}) was not ready within ${timeoutMs} ms: ` +
        `UAPI socket ${this.socketPath} ${state.socket ? 'answers' : 'does not answer'}, ` +
        `link ${this.iface} ${state.link ? 'exists' : 'missing'} in its network namespace` +
        this.recentOutput(),
    );
  }

  private exitedEarly(child: Child): Error {
    const how = child.exit?.signal
      ? `killed by ${child.exit.signal}`
      : `exit code ${child.exit?.code}`;
    return new Error(
      `wireguard-go for ${this.iface} (${this.argv.join(' ')}) exited before it was ready ` +
        `(${how})${this.recentOutput()}`,
    );
  }

  private recentOutput(): string {
    return this.recent.length ? `; its last output: ${this.recent.join(' | ')}` : '';
  }

  private scheduleRestart(ranForMs: number): void {
    if (ranForMs >= (this.options.stableAfterMs ?? 30_000)) this.backoffMs = this.minBackoffMs;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.logLine(`wireguard-go for ${this.iface} died; restarting in ${delay} ms`);
    this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    this.restartTimer = undefined;
    if (this.stopped) return;
    this.restartCount++;
    try {
      const pid = await this.launch();
      if (!this.stopped) this.emit('restarted', pid);
    } catch (e) {
      if (this.stopped) return;
      this.logLine(`restarting wireguard-go for ${this.iface} failed: ${(e as Error).message}`);
      this.scheduleRestart(0);
    }
  }

  private logLine(line: string): void {
    this.recent.push(line);
    if (this.recent.length > RECENT_LINES) this.recent.shift();
    this.options.log?.(line);
  }
}

const spawnToFile =
  (logFile: string): SpawnProcess =>
  (argv, env) => {
    const [file = '', ...args] = argv;
    const fd = openSync(logFile, 'a', 0o600);
    try {
      return spawn(file, args, { env, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
  };

const spawnPiped: SpawnProcess = (argv, env) => {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('wireguard-go: empty command');
  return spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
};

/**
 * Ready = the UAPI socket accepts a connection (a socket left by a killed wireguard-go
 * exists but refuses) and the link is listed in /proc/PID/net/dev, which shows the
 * process's own network namespace wherever it runs.
 */
export async function probeReadiness(
  pid: number,
  iface: string,
  socketPath: string,
): Promise<Readiness> {
  const dev = await readFile(`/proc/${pid}/net/dev`, 'utf8').catch(() => '');
  const link = dev.split('\n').some((l) => l.split(':')[0]?.trim() === iface);
  return { link, socket: await socketAnswers(socketPath) };
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection({ path });
    const done = (ok: boolean) => {
      conn.destroy();
      resolve(ok);
    };
    conn.setTimeout(500, () => done(false));
    conn.once('connect', () => done(true));
    conn.once('error', () => done(false));
  });
}

async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
