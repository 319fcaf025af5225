// The one way wiremesh runs another program. Every kernel or CLI touchpoint (ip,
// wg, nft, nsenter, openssl) goes through a `Runner`, so drivers take a real runner
// in production and a scripted fake in unit tests, and every failure carries the
// command, its exit code and its stderr.
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { systemEnv } from './host.ts';

export interface RunOptions {
  /** Written to the child's stdin, then stdin is closed. Secrets go here, never in argv. */
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the child and fail after this long. */
  timeoutMs?: number;
  /** Resolve with the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
  /** Told the child's process id as soon as it exists (before it can do anything). */
  onSpawn?: (pid: number) => void;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface Runner {
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/** A command that exited non-zero, could not start, or timed out. */
export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;

  constructor(
    argv: readonly string[],
    code: number | null,
    stdout: string,
    stderr: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    const detail = stderr.trim() || stdout.trim();
    super(`${argv.join(' ')}: ${reason}${detail ? `: ${detail.slice(0, 2000)}` : ''}`, options);
    this.name = 'CommandError';
    this.argv = argv;
    this.code = code;
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

/** How a program ended, whoever ran it. */
export interface CommandEnd {
  stdout: string;
  stderr: string;
  /** null when a signal ended it. */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
}

/** What `Runner.run` makes of a program's end: its result, or a CommandError thrown. */
export function settleCommand(
  argv: readonly string[],
  options: RunOptions,
  { stdout, stderr, code, signal, timedOut }: CommandEnd,
): RunResult {
  if (timedOut)
    throw new CommandError(argv, null, stdout, stderr, `timed out after ${options.timeoutMs} ms`);
  const exit = signal ? 128 : (code ?? 128);
  if (exit !== 0 && !options.allowFailure) {
    const why = signal ? `killed by ${signal}` : `exit code ${exit}`;
    throw new CommandError(argv, exit, stdout, stderr, why);
  }
  return { stdout, stderr, code: exit };
}

/** Runs programs directly (no shell), collecting stdout and stderr. */
export class ProcessRunner implements Runner {
  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const [file, ...args] = argv;
    if (file === undefined) return Promise.reject(new Error('run: empty command'));
    const ended = new Promise<CommandEnd>((resolve, reject) => {
      const child = spawn(file, args, {
        env: options.env ?? systemEnv(),
        cwd: options.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let timedOut = false;
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              timedOut = true;
              child.kill('SIGKILL');
            }, options.timeoutMs);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.stdin.on('error', () => {}); // a child that exits without reading stdin
      child.on('error', (e) => {
        if (timer) clearTimeout(timer);
        reject(new CommandError(argv, null, '', '', `cannot start (${e.message})`, { cause: e }));
      });
      child.on('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        resolve({
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString(),
          code,
          signal,
          timedOut,
        });
      });
      child.stdin.end(options.input ?? '');
    });
    return ended.then((end) => settleCommand(argv, options, end));
  }
}

/** Something that runs programs for the process, when it can (cni/netlinkd.ts). */
export interface CommandWorker {
  /** Whether run() can be called now. */
  running(): boolean;
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult>;
}

/**
 * Runs commands through a worker while one is running, else through `fallback`.
 * The agent's commands go to its netlink worker: a spawn from the agent forks a
 * large process and stalls its event loop until the child has exec'd.
 */
export class WorkerRunner implements Runner {
  private readonly fallback: Runner;
  private worker: CommandWorker | undefined;
  constructor(fallback: Runner) {
    this.fallback = fallback;
  }
  use(worker: CommandWorker | undefined): void {
    this.worker = worker;
  }
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    const worker = this.worker;
    return worker?.running() ? worker.run(argv, options) : this.fallback.run(argv, options);
  }
}

/** A runner that prefixes every command, e.g. to enter a lab node's namespaces. */
export class PrefixRunner implements Runner {
  private readonly inner: Runner;
  private readonly prefix: readonly string[];
  constructor(inner: Runner, prefix: readonly string[]) {
    this.inner = inner;
    this.prefix = prefix;
  }
  run(argv: readonly string[], options?: RunOptions): Promise<RunResult> {
    return this.inner.run([...this.prefix, ...argv], options);
  }
}

/** Finds a program on PATH or fails with a message that names it and how to get it. */
export async function requireProgram(name: string, hint: string): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      await access(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      /* not in this directory */
    }
  }
  throw new Error(`required program '${name}' not found on PATH (${hint})`);
}

export const defaultRunner: Runner = new ProcessRunner();
