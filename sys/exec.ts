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

/** Runs programs directly (no shell), collecting stdout and stderr. */
export class ProcessRunner implements Runner {
  run(argv: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    const [file, ...args] = argv;
    if (file === undefined) return Promise.reject(new Error('run: empty command'));
    return new Promise((resolve, reject) => {
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
        const stdout = Buffer.concat(out).toString();
        const stderr = Buffer.concat(err).toString();
        const exit = code ?? 128;
        if (timedOut) {
          reject(
            new CommandError(argv, null, stdout, stderr, `timed out after ${options.timeoutMs} ms`),
          );
        } else if (exit !== 0 && !options.allowFailure) {
          const why = signal ? `killed by ${signal}` : `exit code ${exit}`;
          reject(new CommandError(argv, exit, stdout, stderr, why));
        } else {
          resolve({ stdout, stderr, code: exit });
        }
      });
      child.stdin.end(options.input ?? '');
    });
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
