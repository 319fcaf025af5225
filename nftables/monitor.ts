// Notices at once when the agent's table disappears (`nft delete table inet
// wiremesh` by hand, another tool flushing the ruleset), rather than at the next
// resync: until it is restored there is no policy and no fail-closed drop, so the
// gap must be as short as a reconcile. It runs one long-lived `nft monitor tables`
// (the kernel's own change notifications; no polling) and calls `onDeleted` for
// each deletion of the table, including the delete-and-recreate of the agent's own
// full replace: the caller's verify finds the table in sync and does nothing more.
// If nft exits, it is started again with backoff; `stop` ends it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { systemEnv } from '../sys/index.ts';
import { NFT_FAMILY, NFT_TABLE } from './model.ts';

export interface TableMonitorOptions {
  /** The nft binary (default `nft` on the system PATH) and an argv prefix (e.g. `ip netns exec NS`). */
  nft?: string;
  prefix?: readonly string[];
  onDeleted: () => void;
  onError?: (error: Error) => void;
}

/** True for the monitor line that reports the deletion of the agent's table. */
export function isTableDeletion(line: string): boolean {
  return line.trim() === `delete table ${NFT_FAMILY} ${NFT_TABLE}`;
}

export class NftTableMonitor {
  private readonly opts: TableMonitorOptions;
  private child: ChildProcess | undefined;
  private stopped = false;
  private backoffMs = 500;
  private restartTimer: NodeJS.Timeout | undefined;
  private readyResolve: (() => void) | undefined;

  constructor(options: TableMonitorOptions) {
    this.opts = options;
  }

  /** Resolves once nft runs (the kernel reports changes from then on). */
  start(): Promise<void> {
    this.stopped = false;
    return new Promise((resolve) => {
      this.readyResolve = resolve;
      this.spawn();
    });
  }

  /** The running nft's process id (for tests that kill it), if any. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  stop(): void {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.child?.kill('SIGTERM');
    this.child = undefined;
  }

  private spawn(): void {
    const argv = [...(this.opts.prefix ?? []), this.opts.nft ?? 'nft', 'monitor', 'tables'];
    const [file, ...args] = argv as [string, ...string[]];
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: systemEnv() });
    this.child = child;
    let stderr = '';
    child.stderr?.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-2000)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (isTableDeletion(line)) this.opts.onDeleted();
    });
    child.once('spawn', () => {
      // nft subscribes before reading any event; a short wait would not make it surer.
      this.readyResolve?.();
      this.readyResolve = undefined;
    });
    child.once('error', (e) => this.exited(child, `cannot start ${file}: ${e.message}`));
    child.once('exit', (code, signal) =>
      this.exited(child, `nft monitor exited (${signal ?? code}): ${stderr.trim()}`),
    );
  }

  private exited(child: ChildProcess, why: string): void {
    if (this.child !== child) return;
    this.child = undefined;
    this.readyResolve?.();
    this.readyResolve = undefined;
    if (this.stopped) return;
    this.opts.onError?.(new Error(why));
    // Changes while nft was away were not seen: report a possible deletion.
    this.opts.onDeleted();
    this.restartTimer = setTimeout(() => this.spawn(), this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
  }
}
