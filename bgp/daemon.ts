// The thin driver between a BirdPlan and a running BIRD: write bird.conf, check it,
// start BIRD or have it reload, and read its sessions back. Everything it decides is in
// plan.ts and status.ts; this file only moves text to and from processes.
//
// BIRD runs in the foreground (`bird -f`) as our child rather than daemonized with a
// pid file: we learn of its death from the 'exit' event at once (no polling a pid that
// may be reused), its log (`log stderr all`) arrives as lines on a pipe for the agent's
// own log, and its lifetime is the agent's to decide. When it dies unexpectedly it is
// started again, with backoff, on the configuration file as last written. The pid file
// (-P) is kept only so that a BIRD left behind by a previous agent process can be found
// and ended before ours starts; two BIRDs would fight over port 179 and the socket.
//
// A new text is written to a temporary file, checked with `bird -p`, and renamed over
// bird.conf, so the file BIRD reads is always complete and parseable; then `birdc
// configure` makes the running BIRD read it, and a reply other than "Reconfigured",
// "Reconfiguration in progress" or "queued" becomes an error carrying BIRD's words.
//
// With `external`, another process runs BIRD (in the manifest, `wiremesh bird` in the
// wiremesh-wireguard pod, whose lifetime is not the agent container's): this side
// only writes the file and has a running BIRD reload it. That process starts BIRD when
// the file appears and stops it when the file goes (ensureRunning, stop).
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultRunner, systemEnv, type Runner } from '../sys/index.ts';
import { renderBirdConfig, type BirdPlan } from './plan.ts';
import { parseBgpSessions, parseConfigureReply, type BgpSession } from './status.ts';

/** The part of a ChildProcess the daemon uses; a real ChildProcess is one. */
export interface BirdProcess {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  kill(signal?: NodeJS.Signals): boolean;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'error', listener: (error: Error) => void): this;
}

export interface BirdDaemonOptions {
  configPath: string;
  socketPath: string;
  /** Where BIRD writes its pid; used to end a BIRD a previous agent left running. */
  pidPath?: string;
  birdPath?: string;
  birdcPath?: string;
  /** Run BIRD inside this network namespace (`ip netns exec`, which execs). */
  netns?: string;
  /** Runs birdc and `bird -p`. */
  runner?: Runner;
  /** Starts the long-running BIRD; a real spawn by default. */
  spawnProcess?: (argv: readonly string[]) => BirdProcess;
  log?: (line: string) => void;
  /** Another process runs BIRD on configPath and socketPath; never start or end it. */
  external?: boolean;
  startTimeoutMs?: number;
  stopGraceMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface ApplyResult {
  /** bird.conf was rewritten (and BIRD told to read it, if it was running). */
  changed: boolean;
  /** BIRD was started by this call. */
  started: boolean;
  /** BIRD answers on its socket (and so runs this text, or is reading it). */
  running: boolean;
}

interface Child {
  proc: BirdProcess;
  pid: number;
  exited: Promise<void>;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

const RECENT_LINES = 20;

/** Events: 'exited' (code, signal) for every exit; 'restarted' (pid) after a crash. */
export class BirdDaemon extends EventEmitter {
  private readonly opts: BirdDaemonOptions;
  private readonly runner: Runner;
  private readonly bird: string;
  private readonly birdc: string;
  private child: Child | undefined;
  private stopped = false;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly recent: string[] = [];
  /** The text the running BIRD was last started on or reloaded with. */
  private loaded: string | undefined;

  constructor(opts: BirdDaemonOptions) {
    super();
    this.opts = opts;
    this.runner = opts.runner ?? defaultRunner;
    this.bird = opts.birdPath ?? '/usr/sbin/bird';
    this.birdc = opts.birdcPath ?? '/usr/sbin/birdc';
    this.backoffMs = opts.minBackoffMs ?? 500;
  }

  /** The running BIRD's pid, if there is one. */
  get pid(): number | undefined {
    return this.child && !this.child.exit ? this.child.pid : undefined;
  }

  /** Whether a BIRD answers on the control socket. */
  async answers(): Promise<boolean> {
    const status = await this.runner
      .run([this.birdc, '-s', this.opts.socketPath, 'show', 'status'], {
        allowFailure: true,
        timeoutMs: 2000,
      })
      .catch(() => undefined);
    return status?.code === 0 && status.stdout.includes('Daemon is up and running');
  }

  /**
   * Makes BIRD run the plan: rewrites bird.conf if its text differs, then starts BIRD
   * or has it reload. A reload is asked for whenever the running BIRD has not been
   * given this text yet, not only when the file changed: a reload that failed, or a
   * BIRD that outlived the previous agent, is brought to the file.
   */
  async apply(plan: BirdPlan): Promise<ApplyResult> {
    const text = renderBirdConfig(plan);
    const old = await readFile(this.opts.configPath, 'utf8').catch(() => undefined);
    const changed = text !== old;
    if (changed) await this.writeChecked(text);
    if (this.opts.external) {
      // Not running: the process that runs BIRD starts it on this file.
      if (!(await this.answers())) return { changed, started: false, running: false };
    } else if (!this.pid) {
      await this.start();
      this.loaded = text;
      return { changed, started: true, running: true };
    }
    if (this.loaded !== text) await this.configure();
    this.loaded = text;
    return { changed, started: false, running: true };
  }

  /**
   * Starts BIRD on the configuration file as it is, unless it runs or a restart after
   * a crash is already pending. For the process that runs BIRD for an `external` agent.
   */
  async ensureRunning(): Promise<boolean> {
    if (this.opts.external) throw new Error('ensureRunning: BIRD is run by another process');
    if (this.pid || this.restartTimer) return false;
    await this.start();
    return true;
  }

  /** Removes bird.conf: with `external`, the process running BIRD then stops it. */
  async removeConfig(): Promise<boolean> {
    this.loaded = undefined;
    return removeBirdConfig(this.opts.configPath);
  }

  /** The BGP sessions as BIRD reports them now. */
  async sessions(): Promise<BgpSession[]> {
    return parseBgpSessions(await this.birdcRun(['show', 'protocols', 'all']));
  }

  /** Runs a birdc command and returns its output, e.g. ['show', 'route', 'count']. */
  async birdcRun(args: readonly string[]): Promise<string> {
    const res = await this.runner.run([this.birdc, '-s', this.opts.socketPath, ...args], {
      timeoutMs: 10_000,
    });
    return res.stdout;
  }

  /**
   * Ends BIRD: SIGTERM, on which it withdraws its sessions (neighbours drop our routes at
   * once) and removes the routes it installed; SIGKILL after a grace period.
   */
  async stop(): Promise<void> {
    if (this.opts.external) return;
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const child = this.child;
    if (!child || child.exit) return;
    child.proc.kill('SIGTERM');
    if (await within(child.exited, this.opts.stopGraceMs ?? 5000)) return;
    this.logLine(`bird (pid ${child.pid}) ignored SIGTERM; killing it`);
    child.proc.kill('SIGKILL');
    await child.exited;
  }

  private async writeChecked(text: string): Promise<void> {
    const tmp = `${this.opts.configPath}.${process.pid}.tmp`;
    try {
      await writeFile(tmp, text, { mode: 0o644 });
      const check = await this.runner.run([this.bird, '-p', '-c', tmp], { allowFailure: true });
      if (check.code !== 0) {
        throw new Error(
          `BIRD rejects the configuration rendered for ${this.opts.configPath}: ` +
            (check.stderr.trim() || check.stdout.trim() || `exit code ${check.code}`),
        );
      }
      await rename(tmp, this.opts.configPath);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  private async configure(): Promise<void> {
    const argv = [this.birdc, '-s', this.opts.socketPath, 'configure'];
    const res = await this.runner.run(argv, { allowFailure: true, timeoutMs: 30_000 });
    const reply = parseConfigureReply(`${res.stdout}\n${res.stderr}`);
    if (!reply.ok) throw new Error(`${argv.join(' ')}: BIRD did not reconfigure: ${reply.message}`);
  }

  private async start(): Promise<void> {
    this.stopped = false;
    // A restart after a crash may be pending: this start replaces it.
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    await this.endLeftover();
    this.backoffMs = this.opts.minBackoffMs ?? 500;
    await this.launch();
  }

  /** Spawns BIRD and waits until its control socket answers. */
  private async launch(): Promise<number> {
    const argv = [
      ...(this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns] : []),
      this.bird,
      '-f',
      '-c',
      this.opts.configPath,
      '-s',
      this.opts.socketPath,
      ...(this.opts.pidPath ? ['-P', this.opts.pidPath] : []),
    ];
    this.recent.length = 0;
    const proc = (this.opts.spawnProcess ?? spawnBird)(argv);
    let markExited = () => {};
    const exited = new Promise<void>((resolve) => (markExited = resolve));
    const child: Child = { proc, pid: proc.pid ?? 0, exited };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      if (child.exit) return;
      child.exit = { code, signal };
      markExited();
      this.emit('exited', code, signal);
      if (this.child === child && !this.stopped) this.scheduleRestart();
    };
    proc.once('exit', onExit);
    proc.once('error', (e) => {
      this.logLine(`bird: ${e.message}`);
      onExit(null, null);
    });
    for (const stream of [proc.stdout, proc.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (l) => this.logLine(l));
    }
    this.child = child;
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 10_000);
    while (!child.exit) {
      if (await this.answers()) return child.pid;
      if (Date.now() > deadline) {
        child.proc.kill('SIGKILL');
        await child.exited;
        throw new Error(`${argv.join(' ')}: control socket did not answer${this.recentOutput()}`);
      }
      await Promise.race([sleep(50), child.exited]);
    }
    const how = child.exit.signal
      ? `killed by ${child.exit.signal}`
      : `exit code ${child.exit.code}`;
    throw new Error(`${argv.join(' ')}: exited while starting (${how})${this.recentOutput()}`);
  }

  private scheduleRestart(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.opts.maxBackoffMs ?? 30_000);
    this.logLine(`bird died; starting it again in ${delay} ms`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopped) return;
      this.launch().then(
        (pid) => this.emit('restarted', pid),
        (e: Error) => this.logLine(`restarting bird failed: ${e.message}`),
      );
    }, delay);
  }

  /** Ends a BIRD named by our pid file that is not our child (a previous agent's). */
  private async endLeftover(): Promise<void> {
    if (!this.opts.pidPath) return;
    const pid = Number((await readFile(this.opts.pidPath, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 1 || pid === this.pid) return;
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (comm !== 'bird') return;
    this.logLine(`ending bird (pid ${pid}) left running by an earlier process`);
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }

  private logLine(line: string): void {
    this.recent.push(line);
    if (this.recent.length > RECENT_LINES) this.recent.shift();
    this.opts.log?.(line);
  }

  private recentOutput(): string {
    return this.recent.length ? `; its last output: ${this.recent.join(' | ')}` : '';
  }
}

/** Removes a bird.conf; false when there was none. */
export async function removeBirdConfig(configPath: string): Promise<boolean> {
  try {
    await rm(configPath);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

function spawnBird(argv: readonly string[]): BirdProcess {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('bird: empty command');
  return spawn(file, args, { env: systemEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
