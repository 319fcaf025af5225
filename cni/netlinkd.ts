// The agent's side of its netlink worker (cni/netlinkd, a static Go program): pod
// wiring without a process start per CNI ADD or DEL. The worker is started once, in
// the agent's network namespace, and takes one JSON request per line on its stdin,
// answering on its stdout (the protocol is described in cni/netlinkd/main.go).
//
// Supervision, and why it is shaped so: a CNI request must end in a result or a CNI
// error, never a hang. So
// - a request sent to a worker that then exits is rejected at once with
//   `WiringUnavailableError` (its effect is unknown: the handler's cleanup runs);
// - a request unanswered after `requestTimeoutMs` is rejected, and the worker, now
//   suspect, is killed (its other requests are rejected with it) and restarted;
// - a worker that dies is restarted with exponential backoff; requests that arrive
//   meanwhile wait for it at most `startTimeoutMs`, then are rejected;
// - a missing binary fails start() with its path and how to build it.
// The handler turns `WiringUnavailableError` into CNI code 11 (try again later).
//
// The worker also runs the agent's commands (ip, wg, nft: `run`, a Runner through
// sys/exec.ts's WorkerRunner), so that they cost the agent's event loop a line each
// instead of a fork of the agent. Commands have no stuck timer (an nft transaction
// may take long); their own timeoutMs is enforced by the worker.
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { join } from 'node:path';
import {
  CommandError,
  settleCommand,
  systemEnv,
  toolCacheDir,
  type CommandWorker,
  type RunOptions,
  type RunResult,
} from '../sys/index.ts';
import {
  podNetProblems,
  vethMac,
  type PodNetFacts,
  type PodNetResult,
  type PodNetSpec,
  type PodWiring,
} from './podnet.ts';

export const NETLINKD_PROTOCOL = 2;

/** The worker could not carry out a request (not running, died, stuck): try again later. */
export class WiringUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'WiringUnavailableError';
  }
}

/** The part of a ChildProcess the supervisor uses; a real ChildProcess is one. */
export interface WorkerProcess {
  readonly pid?: number | undefined;
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals): boolean;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
}

export type SpawnWorker = (argv: readonly string[]) => WorkerProcess;

export interface NetlinkWorkerOptions {
  /** Path of the wiremesh-netlinkd binary. */
  binary: string;
  /** Runs before the binary, e.g. ['nsenter', '--net=/run/netns/x', '--'] (must exec). */
  argvPrefix?: readonly string[];
  log?: (msg: string, fields: Record<string, unknown>) => void;
  /** A request unanswered this long fails, and the worker is restarted. Default 30 s. */
  requestTimeoutMs?: number;
  /** How long start(), or a request during a restart, waits for the worker. Default 10 s. */
  startTimeoutMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** For unit tests: something else than a real process. */
  spawnWorker?: SpawnWorker;
}

interface Pending {
  what: string;
  resolve: (reply: WorkerReply) => void;
  reject: (e: Error) => void;
  /** The stuck-worker timer; commands (exec) have none, they may take their time. */
  timer?: NodeJS.Timeout;
  /** exec: told the program's pid before its input is written. */
  onStarted?: (pid: number) => void;
}

interface WorkerReply {
  id: number;
  error?: string;
  removed?: boolean;
  facts?: PodNetFacts;
  started?: number;
  exit?: { code: number; signal?: string; stdout: string; stderr: string; timedOut?: boolean };
}

interface Child {
  proc: WorkerProcess;
  pid: number;
  ready: boolean;
  exited: boolean;
  startedAt: number;
  /** Settles with the exit (or the failure to start). */
  done: Promise<void>;
}

const spawnReal: SpawnWorker = (argv) => {
  const [file, ...args] = argv;
  return spawn(file ?? '', args, { env: systemEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
};

/**
 * PodWiring through the netlink worker. Events: 'ready' (pid) for every worker that
 * came up, 'exited' (code, signal) for every exit.
 */
export class NetlinkWorker extends EventEmitter implements PodWiring, CommandWorker {
  private readonly opts: NetlinkWorkerOptions;
  private readonly spawnWorker: SpawnWorker;
  private readonly requestTimeoutMs: number;
  private readonly startTimeoutMs: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private child: Child | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stopped = true;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private lastExit = '';
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private restartCount = 0;

  constructor(opts: NetlinkWorkerOptions) {
    super();
    this.opts = opts;
    this.spawnWorker = opts.spawnWorker ?? spawnReal;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.startTimeoutMs = opts.startTimeoutMs ?? 10_000;
    this.minBackoffMs = opts.minBackoffMs ?? 100;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5_000;
    this.backoffMs = this.minBackoffMs;
  }

  /** The running worker's pid, when one is ready. */
  get pid(): number | undefined {
    return this.child?.ready && !this.child.exited ? this.child.pid : undefined;
  }

  /** How many times a worker was started again after dying. */
  get restarts(): number {
    return this.restartCount;
  }

  /** Starts the worker and resolves once it said it is ready. */
  async start(): Promise<void> {
    if (!this.stopped) throw new Error('the netlink worker is already running');
    if (!this.opts.spawnWorker && !existsSync(this.opts.binary)) {
      throw new Error(
        `the netlink worker wiremesh-netlinkd was not found at ${this.opts.binary}; ` +
          `build it with 'make deps' (hack/build-tools.sh) or point WIREMESH_NETLINKD at it`,
      );
    }
    this.stopped = false;
    try {
      await this.launch();
    } catch (e) {
      this.stopped = true;
      throw e;
    }
  }

  /** Ends the worker (it finishes what is in flight when its stdin closes); no restart. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.failReadyWaiters(new WiringUnavailableError('the netlink worker was stopped'));
    const child = this.child;
    if (!child || child.exited) return;
    child.proc.stdin?.end();
    const timer = setTimeout(() => child.proc.kill('SIGKILL'), 5_000);
    await child.done;
    clearTimeout(timer);
  }

  async setup(spec: PodNetSpec): Promise<PodNetResult> {
    const hostMac = vethMac(spec.hostIfName, 'host');
    const podMac = vethMac(spec.hostIfName, 'pod');
    await this.request(`wiring ${spec.hostIfName}`, {
      op: 'setup',
      netns: spec.netns,
      hostIf: spec.hostIfName,
      podIf: spec.podIfName,
      addresses: spec.addresses,
      mtu: spec.mtu,
      owner: spec.owner ?? null,
      hostMac,
      podMac,
    });
    return { hostMac, podMac };
  }

  async teardown(hostIfName: string, owner?: string): Promise<void> {
    await this.request(`removing ${hostIfName}`, {
      op: 'teardown',
      hostIf: hostIfName,
      owner: owner ?? null,
    });
  }

  async check(spec: PodNetSpec): Promise<string[]> {
    const reply = await this.request(`inspecting ${spec.hostIfName}`, {
      op: 'inspect',
      netns: spec.netns,
      hostIf: spec.hostIfName,
      podIf: spec.podIfName,
    });
    if (!reply.facts) throw new Error(`the netlink worker sent no facts for ${spec.hostIfName}`);
    return podNetProblems(spec, reply.facts);
  }

  running(): boolean {
    return this.pid !== undefined;
  }

  /**
   * Runs a program from the worker (Runner's contract: stdout, stderr, exit code, a
   * CommandError on failure). The program runs in the worker's namespaces, which are
   * the agent's. A worker that dies meanwhile fails the command: its outcome is unknown.
   */
  async run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const env = Object.entries(options.env ?? systemEnv()).flatMap(([k, v]) =>
      v === undefined ? [] : [`${k}=${v}`],
    );
    let reply: WorkerReply;
    try {
      reply = await this.request(
        `running ${argv[0] ?? ''}`,
        {
          op: 'exec',
          argv,
          env,
          dir: options.cwd ?? '',
          ...(typeof options.input === 'string' || options.input === undefined
            ? { input: options.input ?? '' }
            : { inputBase64: options.input.toString('base64') }),
          timeoutMs: options.timeoutMs ?? 0,
        },
        { stuckTimer: false, onStarted: options.onSpawn },
      );
    } catch (e) {
      // The worker gone mid-command (outcome unknown), or the program not startable.
      const why =
        e instanceof WiringUnavailableError
          ? `through the netlink worker: ${e.message}`
          : `cannot start (${(e as Error).message})`;
      throw new CommandError(argv, null, '', '', why, { cause: e });
    }
    const exit = reply.exit;
    if (!exit) throw new CommandError(argv, null, '', '', 'the netlink worker sent no exit status');
    return settleCommand(argv, options, {
      stdout: exit.stdout,
      stderr: exit.stderr,
      code: exit.signal ? null : exit.code,
      signal: exit.signal ?? null,
      timedOut: exit.timedOut === true,
    });
  }

  private async request(
    what: string,
    body: Record<string, unknown>,
    opts: { stuckTimer?: boolean; onStarted?: ((pid: number) => void) | undefined } = {},
  ): Promise<WorkerReply> {
    const child = await this.readyChild(what);
    const id = this.nextId++;
    const reply = await new Promise<WorkerReply>((resolve, reject) => {
      const timer =
        opts.stuckTimer === false
          ? undefined
          : setTimeout(() => {
              this.pending.delete(id);
              reject(
                new WiringUnavailableError(
                  `the netlink worker did not finish ${what} within ${this.requestTimeoutMs} ms; restarting it`,
                ),
              );
              this.opts.log?.('netlink worker is stuck; killing it', { pid: child.pid, what });
              child.proc.kill('SIGKILL');
            }, this.requestTimeoutMs);
      this.pending.set(id, {
        what,
        resolve,
        reject,
        ...(timer ? { timer } : {}),
        ...(opts.onStarted ? { onStarted: opts.onStarted } : {}),
      });
      child.proc.stdin?.write(JSON.stringify({ id, ...body }) + '\n');
    });
    if (reply.error !== undefined) throw new Error(reply.error);
    return reply;
  }

  /** The ready worker, waiting for a restart in progress at most startTimeoutMs. */
  private async readyChild(what: string): Promise<Child> {
    const c = this.child;
    if (c?.ready && !c.exited) return c;
    if (this.stopped)
      throw new WiringUnavailableError(`the netlink worker is not running (${what})`);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w.resolve !== done);
        reject(
          new WiringUnavailableError(
            `the netlink worker is restarting (${this.lastExit || 'not ready'}) and was not back within ${this.startTimeoutMs} ms (${what})`,
          ),
        );
      }, this.startTimeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.readyWaiters.push({
        resolve: done,
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
    const ready = this.child;
    if (!ready?.ready || ready.exited)
      throw new WiringUnavailableError(`the netlink worker is not running (${what})`);
    return ready;
  }

  private failReadyWaiters(e: Error): void {
    for (const w of this.readyWaiters.splice(0)) w.reject(e);
  }

  /** Spawns one worker and waits for its ready line. */
  private launch(): Promise<void> {
    const argv = [...(this.opts.argvPrefix ?? []), this.opts.binary];
    const proc = this.spawnWorker(argv);
    let markDone = () => {};
    const done = new Promise<void>((resolve) => (markDone = resolve));
    const child: Child = {
      proc,
      pid: proc.pid ?? 0,
      ready: false,
      exited: false,
      startedAt: Date.now(),
      done,
    };
    this.child = child;
    return new Promise<void>((resolve, reject) => {
      const startTimer = setTimeout(() => {
        reject(
          new Error(`the netlink worker did not become ready within ${this.startTimeoutMs} ms`),
        );
        proc.kill('SIGKILL');
      }, this.startTimeoutMs);
      const onExit = (code: number | null, signal: NodeJS.Signals | null, error?: Error) => {
        if (child.exited) return;
        child.exited = true;
        clearTimeout(startTimer);
        markDone();
        const how = error
          ? `could not start: ${error.message}`
          : `exited with ${signal ? `signal ${signal}` : `code ${String(code)}`}`;
        this.lastExit = `pid ${child.pid} ${how}`;
        this.emit('exited', code, signal);
        if (this.child !== child) return;
        for (const [id, p] of this.pending) {
          clearTimeout(p.timer);
          this.pending.delete(id);
          p.reject(
            new WiringUnavailableError(
              `the netlink worker ${how} while ${p.what} was in flight; its outcome is unknown`,
            ),
          );
        }
        if (!child.ready) {
          reject(new Error(`the netlink worker ${how} before it was ready`));
          return;
        }
        if (this.stopped) return;
        this.opts.log?.('netlink worker exited; restarting it', {
          pid: child.pid,
          code,
          signal,
          backoffMs: this.backoffMs,
        });
        this.scheduleRestart(Date.now() - child.startedAt);
      };
      proc.once('exit', (code, signal) => onExit(code, signal));
      proc.once('error', (e) => onExit(null, null, e));
      if (proc.stderr) {
        createInterface({ input: proc.stderr }).on('line', (line) =>
          this.opts.log?.('netlink worker', { pid: child.pid, line }),
        );
      }
      proc.stdin?.on('error', () => {}); // EPIPE when it died: the exit handler reports it
      if (!proc.stdout) {
        reject(new Error('the netlink worker has no stdout'));
        return;
      }
      createInterface({ input: proc.stdout }).on('line', (line) => {
        let msg: { ready?: boolean; protocol?: number } & Partial<WorkerReply>;
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          this.opts.log?.('netlink worker wrote a line that is not JSON', { line });
          return;
        }
        if (msg.ready === true) {
          clearTimeout(startTimer);
          if (msg.protocol !== NETLINKD_PROTOCOL) {
            reject(
              new Error(
                `the netlink worker speaks protocol ${String(msg.protocol)}, not ${NETLINKD_PROTOCOL}: rebuild it ('make deps')`,
              ),
            );
            proc.kill('SIGKILL');
            return;
          }
          child.ready = true;
          this.emit('ready', child.pid);
          for (const w of this.readyWaiters.splice(0)) w.resolve();
          resolve();
          return;
        }
        const p = typeof msg.id === 'number' ? this.pending.get(msg.id) : undefined;
        if (!p) return; // answered after its timeout
        // The program's pid, before its input; its reply comes later under the same id.
        if (typeof msg.started === 'number') {
          p.onStarted?.(msg.started);
          return;
        }
        clearTimeout(p.timer);
        this.pending.delete(msg.id as number);
        p.resolve(msg as WorkerReply);
      });
    });
  }

  private scheduleRestart(ranMs: number): void {
    if (ranMs > 10_000) this.backoffMs = this.minBackoffMs;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.restartCount++;
      this.launch().catch((e: unknown) => {
        this.opts.log?.('netlink worker failed to restart', { error: (e as Error).message });
        if (!this.stopped) this.scheduleRestart(0);
      });
    }, delay);
    this.restartTimer.unref();
  }
}

/**
 * Where the agent finds the worker: $WIREMESH_NETLINKD, else the image's
 * /usr/lib/wiremesh/wiremesh-netlinkd, else the checkout's tool cache (`make deps`).
 */
export function defaultNetlinkdPath(): string {
  const fromEnv = process.env.WIREMESH_NETLINKD;
  if (fromEnv) return fromEnv;
  const image = '/usr/lib/wiremesh/wiremesh-netlinkd';
  if (existsSync(image)) return image;
  return join(toolCacheDir(), 'bin', 'wiremesh-netlinkd');
}
