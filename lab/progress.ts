// Progress of `lab up` (and `make lab`): the lab reports each long phase (control
// plane, nodes, agents ready, pods, the encryption check) as a start, optional notes,
// and an end with its duration; `ProgressDisplay` shows them. On a terminal the
// running phase's line carries a spinner and an elapsed timer, rewritten in place,
// and becomes `... done in 9.8 s` when the phase ends; elsewhere (CI logs, a pipe)
// each start, note and end is one plain line, so a log reads the same however it
// was captured. Pure apart from the output stream and the timer, both injected.

/** `note` (the default): a line of detail; `start`: a phase begins; `done`: it ended. */
export type ProgressKind = 'start' | 'note' | 'done';
export type ProgressFn = (line: string, kind?: ProgressKind) => void;

/** Seconds with one decimal, e.g. 9.8 s. */
export function formatSeconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

/** The phases of one run, each timed from its start: `lab NAME: LABEL ... done in 9.8 s`. */
export class LabPhases {
  private readonly progress: ProgressFn;
  private readonly prefix: string;
  private readonly now: () => number;
  private current: { label: string; since: number } | null = null;

  constructor(progress: ProgressFn, prefix: string, now: () => number = Date.now) {
    this.progress = progress;
    this.prefix = prefix;
    this.now = now;
  }

  /** Begins a phase (ending the one running, if any). */
  start(label: string): void {
    if (this.current) this.done();
    this.current = { label, since: this.now() };
    this.progress(`${this.prefix}: ${label} ...`, 'start');
  }

  note(text: string): void {
    this.progress(`${this.prefix}: ${text}`, 'note');
  }

  /** Ends the running phase: `... done in 9.8 s` (or another result word). */
  done(result = 'done'): void {
    const c = this.current;
    if (!c) return;
    this.current = null;
    this.progress(
      `${this.prefix}: ${c.label} ... ${result} in ${formatSeconds(this.now() - c.since)}`,
      'done',
    );
  }
}

export interface ProgressOutput {
  write(text: string): unknown;
  /** A terminal: rewrite the running phase's line in place. */
  isTTY?: boolean;
}

export interface ProgressDisplayOptions {
  now?: () => number;
  /** Redraws the running line every this many ms on a terminal (default 250). */
  tickMs?: number;
  setInterval?: (fn: () => void, ms: number) => unknown;
  clearInterval?: (handle: unknown) => void;
}

const SPINNER = ['|', '/', '-', '\\'] as const;
const CLEAR_LINE = '\r\x1b[K';

/** Shows ProgressFn lines: plain lines, or on a terminal a live line for the running phase. */
export class ProgressDisplay {
  private readonly out: ProgressOutput;
  private readonly tty: boolean;
  private readonly now: () => number;
  private readonly tickMs: number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private running: { line: string; since: number; frame: number; timer: unknown } | null = null;

  constructor(out: ProgressOutput, options: ProgressDisplayOptions = {}) {
    this.out = out;
    this.tty = out.isTTY === true;
    this.now = options.now ?? Date.now;
    this.tickMs = options.tickMs ?? 250;
    this.setTimer = options.setInterval ?? ((fn, ms) => setInterval(fn, ms).unref());
    this.clearTimer =
      options.clearInterval ?? ((h) => clearInterval(h as ReturnType<typeof setInterval>));
  }

  /** A ProgressFn writing to this display. */
  readonly write: ProgressFn = (line, kind = 'note') => {
    if (!this.tty) {
      this.out.write(`${line}\n`);
      return;
    }
    if (kind === 'start') {
      this.stopRunning();
      this.running = { line, since: this.now(), frame: 0, timer: null };
      this.running.timer = this.setTimer(() => this.redraw(), this.tickMs);
      this.redraw();
    } else if (kind === 'done') {
      this.stopRunning();
      this.out.write(`${line}\n`);
    } else {
      // A note goes above the running line, which is drawn again below it.
      this.out.write(`${this.running ? CLEAR_LINE : ''}${line}\n`);
      if (this.running) this.redraw();
    }
  };

  /** Ends a live line without a result (e.g. on failure), keeping its text. */
  close(): void {
    const r = this.running;
    this.stopRunning();
    if (r) this.out.write(`${r.line}\n`);
  }

  private redraw(): void {
    const r = this.running;
    if (!r) return;
    const spin = SPINNER[r.frame++ % SPINNER.length] ?? '';
    const secs = Math.floor((this.now() - r.since) / 1000);
    this.out.write(`${CLEAR_LINE}${r.line} ${spin} ${secs} s`);
  }

  private stopRunning(): void {
    const r = this.running;
    if (!r) return;
    this.running = null;
    this.clearTimer(r.timer);
    this.out.write(CLEAR_LINE);
  }
}
