// A long-lived monitor process (`nft monitor`, `ip monitor`) whose stdout lines are
// handed on one by one, and which is started again, with backoff, when it dies: the
// kernel's change notifications reach an agent only while such a process runs. What
// the lines mean, and what a gap in them means, is the caller's (the caller hears of
// every unexpected exit and of everything printed on stderr, such as lost events).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { systemEnv } from './host.ts';

export interface LineMonitorOptions {
  /** What the process is, for messages (e.g. `nft monitor`). */
  name: string;
  /** The command, e.g. ['ip', '-N', 'monitor', 'route'] (with any prefix such as `ip netns exec NS`). */
  argv: readonly string[];
  onLine: (line: string) => void;
  /** Text the process printed on stderr. */
  onStderr: (text: string) => void;
  /** The process stopped without being asked to (or could not start); it is started again. */
  onExit: (why: string) => void;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
/** A process that ran this long before it died is started again at the shortest backoff. */
const STEADY_MS = 60_000;

export class LineMonitor {
  private readonly opts: LineMonitorOptions;
  private child: ChildProcess | undefined;
  private stopped = false;
  private backoffMs = MIN_BACKOFF_MS;
  private restartTimer: NodeJS.Timeout | undefined;
  private readyResolve: (() => void) | undefined;

  constructor(options: LineMonitorOptions) {
    this.opts = options;
  }

  /** Resolves once the process runs (or failed to start, which is reported and retried). */
  start(): Promise<void> {
    this.stopped = false;
    return new Promise((resolve) => {
      this.readyResolve = resolve;
      this.spawn();
    });
  }

  /** The running process's id (for tests that kill it), if any. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  stop(): void {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.child?.kill('SIGTERM');
    this.child = undefined;
  }

  private spawn(): void {
    const [file, ...args] = this.opts.argv as [string, ...string[]];
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: systemEnv() });
    this.child = child;
    const startedAt = Date.now();
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-2000);
      if (this.child === child) this.opts.onStderr(b.toString().trim());
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (this.child === child) this.opts.onLine(line);
    });
    child.once('spawn', () => {
      // The process subscribes before it reads any event; a short wait would not make it surer.
      this.readyResolve?.();
      this.readyResolve = undefined;
    });
    child.once('error', (e) => this.exited(child, startedAt, `cannot start ${file}: ${e.message}`));
    child.once('exit', (code, signal) =>
      this.exited(
        child,
        startedAt,
        `${this.opts.name} exited (${signal ?? code}): ${stderr.trim()}`,
      ),
    );
  }

  private exited(child: ChildProcess, startedAt: number, why: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.readyResolve?.();
    this.readyResolve = undefined;
    if (this.stopped) return;
    this.opts.onExit(why);
    if (Date.now() - startedAt > STEADY_MS) this.backoffMs = MIN_BACKOFF_MS;
    this.restartTimer = setTimeout(() => this.spawn(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
  }
}
