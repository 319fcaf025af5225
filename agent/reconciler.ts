// The agent's one serialised, coalescing reconcile loop. Watch events only call
// `schedule`; many calls while a pass runs collapse into one more pass. A resync
// timer re-runs it to repair drift; a failed pass is retried with backoff and
// logged, never fatal. Nothing runs until `start` (after the first full list).
//
// A schedule may name the phase that is dirty (say, only policy after a pod's
// label changed), so a pass can skip work nothing asked for; a schedule without a
// phase, the resync timer and every retry after a failure ask for all phases.
//
// Observers (`onPass`, `observe`) hear of every finished pass: which phases it ran
// (`['all']` for a full pass), how long it took, its error and the loop's name; the
// metrics endpoint (agent/metrics.ts) turns them into a histogram and an error
// counter. An observer that throws is ignored: watching the loop must never break it.
//
// ReconcileLanes runs several such loops side by side, each owning some phases: the
// agent's policy compile (under a second at large scale) must not wait behind the
// mesh's pass over thousands of nodes, which every resync (30 s) runs again. Each
// loop stays serialised and coalescing; a schedule without a phase asks every loop.
//
// `progress` is what the health endpoints read (agent/health.ts): whether the loop
// runs, since when the current pass runs, when the last one ended and when a pass
// of every phase last succeeded; plain fields, so a probe costs no work.
import type { Logger } from './log.ts';

export interface ReconcilerOptions {
  resyncMs: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  log: Logger;
  /** Injectable timers for tests. */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** Told of every finished pass (see PassObserver). */
  onPass?: PassObserver;
  /** Unix milliseconds; Date.now by default (injectable for tests). */
  now?: () => number;
  /** The loop's name, for observers and logs (`main` by default). */
  name?: string;
}

/**
 * A finished pass: the phases it ran (sorted; `['all']` when it ran every phase of
 * its loop: start, resync, retry), its duration, its error (null on success) and the
 * name of the loop that ran it.
 */
export type PassObserver = (
  phases: readonly string[],
  durationMs: number,
  error: Error | null,
  loop: string,
) => void;

export interface ReconcileStats {
  passes: number;
  failures: number;
  lastError: string | null;
  lastDurationMs: number;
  lastSuccessAt: number | null;
}

/** The loop's liveness facts, in unix milliseconds (see agent/health.ts). */
export interface ReconcileProgress {
  /** start() was called (the first full lists arrived) and stop() was not. */
  running: boolean;
  /** The running pass's start; null between passes. */
  passStartedAt: number | null;
  lastPassEndedAt: number | null;
  /** The last success of a pass that ran every phase (the first one: start). */
  lastFullSuccessAt: number | null;
  /** The longest wait between passes: the resync period or the longest backoff. */
  longestIdleMs: number;
}

/** The phases a pass must run; `all` means every phase (start, resync, retry). */
export type DirtyPhases = ReadonlySet<string> & { readonly all: boolean };

export class Reconciler {
  private readonly pass: (dirty: DirtyPhases) => Promise<void>;
  private readonly opts: Required<Omit<ReconcilerOptions, 'log' | 'onPass'>> & { log: Logger };
  readonly name: string;
  readonly progress: ReconcileProgress;
  private readonly observers: PassObserver[] = [];
  private running = false;
  private pending = false;
  private dirty = new Set<string>();
  private dirtyAll = true;
  private started = false;
  private stopped = false;
  private timer: unknown;
  private backoff = 0;
  private idleWaiters: (() => void)[] = [];
  readonly stats: ReconcileStats = {
    passes: 0,
    failures: 0,
    lastError: null,
    lastDurationMs: 0,
    lastSuccessAt: null,
  };

  constructor(pass: (dirty: DirtyPhases) => Promise<void>, options: ReconcilerOptions) {
    this.pass = pass;
    this.opts = {
      minBackoffMs: 500,
      maxBackoffMs: 30_000,
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
      now: Date.now,
      name: 'main',
      ...options,
    };
    this.name = this.opts.name;
    this.progress = {
      running: false,
      passStartedAt: null,
      lastPassEndedAt: null,
      lastFullSuccessAt: null,
      longestIdleMs: Math.max(this.opts.resyncMs, this.opts.maxBackoffMs),
    };
    if (options.onPass) this.observers.push(options.onPass);
  }

  /** Add a pass observer; returns a function that removes it. */
  observe(observer: PassObserver): () => void {
    this.observers.push(observer);
    return () => {
      const i = this.observers.indexOf(observer);
      if (i >= 0) this.observers.splice(i, 1);
    };
  }

  start(): void {
    this.started = true;
    this.progress.running = !this.stopped;
    this.schedule('start');
  }

  stop(): void {
    this.stopped = true;
    this.progress.running = false;
    if (this.timer !== undefined) this.opts.clearTimer(this.timer);
  }

  schedule(_reason: string, phase?: string): void {
    if (!this.started || this.stopped) return;
    if (phase === undefined) this.dirtyAll = true;
    else this.dirty.add(phase);
    if (this.running) {
      this.pending = true;
      return;
    }
    void this.loop();
  }

  /** A pass is running or pending. */
  get busy(): boolean {
    return this.running;
  }

  /** Resolves when no pass is running or pending (for tests and shutdown). */
  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private async loop(): Promise<void> {
    this.running = true;
    if (this.timer !== undefined) this.opts.clearTimer(this.timer);
    this.timer = undefined;
    let next: number;
    do {
      this.pending = false;
      const dirty = Object.assign(this.dirty, { all: this.dirtyAll });
      this.dirty = new Set();
      this.dirtyAll = false;
      const start = performance.now();
      const phases = dirty.all ? ['all'] : [...dirty].sort();
      let failure: Error | null = null;
      this.progress.passStartedAt = this.opts.now();
      try {
        await this.pass(dirty);
        this.stats.lastError = null;
        this.stats.lastSuccessAt = this.opts.now();
        if (dirty.all) this.progress.lastFullSuccessAt = this.stats.lastSuccessAt;
        this.backoff = 0;
        next = this.opts.resyncMs;
      } catch (e) {
        failure = e instanceof Error ? e : new Error(String(e));
        this.stats.failures++;
        this.stats.lastError = (e as Error).message;
        this.backoff = Math.min(
          this.opts.maxBackoffMs,
          this.backoff ? this.backoff * 2 : this.opts.minBackoffMs,
        );
        next = this.backoff;
        this.dirtyAll = true;
        this.opts.log.error('reconcile failed; will retry', {
          loop: this.name,
          error: (e as Error).message,
          retryInMs: next,
        });
        this.pending = false;
      } finally {
        this.progress.passStartedAt = null;
        this.progress.lastPassEndedAt = this.opts.now();
        this.stats.passes++;
        this.stats.lastDurationMs = performance.now() - start;
        this.notify(phases, this.stats.lastDurationMs, failure);
      }
    } while (this.pending && !this.stopped);
    this.running = false;
    if (!this.stopped) this.timer = this.opts.setTimer(() => this.schedule('timer'), next);
    for (const w of this.idleWaiters.splice(0)) w();
  }

  private notify(phases: readonly string[], durationMs: number, error: Error | null): void {
    for (const o of this.observers) {
      try {
        o(phases, durationMs, error, this.name);
      } catch {
        /* an observer's failure is its own */
      }
    }
  }
}

/** One loop of a ReconcileLanes: its name, the phases it owns and its pass. */
export interface Lane {
  name: string;
  phases: readonly string[];
  /** Runs the loop's dirty phases (`all`: every phase it owns). */
  pass: (dirty: DirtyPhases) => Promise<void>;
}

/**
 * Several reconcile loops side by side, seen from outside as one: a schedule goes to
 * the loop owning its phase (every loop without one), and the stats and progress
 * are the loops' together, the least advanced loop speaking for all where health is
 * concerned (a stalled or never-succeeded loop is the agent's).
 */
export class ReconcileLanes {
  private readonly loops: Reconciler[];
  private readonly byPhase = new Map<string, Reconciler>();

  constructor(lanes: readonly Lane[], options: Omit<ReconcilerOptions, 'name'>) {
    this.loops = lanes.map((lane) => {
      const loop = new Reconciler(lane.pass, { ...options, name: lane.name });
      for (const phase of lane.phases) {
        if (this.byPhase.has(phase)) throw new Error(`phase ${phase} belongs to two loops`);
        this.byPhase.set(phase, loop);
      }
      return loop;
    });
  }

  /** Every loop's passes together; lastError is some loop's whose last pass failed. */
  get stats(): ReconcileStats {
    const all = this.loops.map((l) => l.stats);
    const latest = this.loops.reduce((a, l) =>
      (l.progress.lastPassEndedAt ?? -1) > (a.progress.lastPassEndedAt ?? -1) ? l : a,
    );
    const successes = all.flatMap((s) => (s.lastSuccessAt === null ? [] : [s.lastSuccessAt]));
    return {
      passes: all.reduce((n, s) => n + s.passes, 0),
      failures: all.reduce((n, s) => n + s.failures, 0),
      lastError: all.find((s) => s.lastError !== null)?.lastError ?? null,
      lastDurationMs: latest.stats.lastDurationMs,
      lastSuccessAt: successes.length ? Math.max(...successes) : null,
    };
  }

  /** The loops' liveness facts together: the oldest running pass, the longest idle. */
  get progress(): ReconcileProgress {
    const all = this.loops.map((l) => l.progress);
    const oldest = (values: (number | null)[]) =>
      values.reduce<number | null>(
        (a, v) => (v === null ? a : a === null ? v : Math.min(a, v)),
        null,
      );
    return {
      running: all.every((p) => p.running),
      passStartedAt: oldest(all.map((p) => p.passStartedAt)),
      lastPassEndedAt: oldest(all.map((p) => p.lastPassEndedAt)),
      lastFullSuccessAt: all.some((p) => p.lastFullSuccessAt === null)
        ? null
        : oldest(all.map((p) => p.lastFullSuccessAt)),
      longestIdleMs: Math.max(...all.map((p) => p.longestIdleMs)),
    };
  }

  observe(observer: PassObserver): () => void {
    const removers = this.loops.map((l) => l.observe(observer));
    return () => removers.forEach((r) => r());
  }

  start(): void {
    for (const l of this.loops) l.start();
  }

  stop(): void {
    for (const l of this.loops) l.stop();
  }

  /** Dirty `phase` in the loop that owns it; no phase: every phase of every loop. */
  schedule(reason: string, phase?: string): void {
    if (phase === undefined) {
      for (const l of this.loops) l.schedule(reason);
      return;
    }
    const loop = this.byPhase.get(phase);
    if (!loop) throw new Error(`no reconcile loop owns the phase ${phase}`);
    loop.schedule(reason, phase);
  }

  /** Resolves when no loop has a pass running or pending (one loop may start another's). */
  async idle(): Promise<void> {
    while (this.loops.some((l) => l.busy)) await Promise.all(this.loops.map((l) => l.idle()));
  }
}
