// The benchmark harness. These machines are shared and noisy, so a figure is
// never an absolute time alone: every scenario measures a baseline in the same
// run (a hand-configured tunnel, the reference CNI plugins, a plain command) and
// reports the median over repeats and the ratio to the baseline's median. Output
// is one JSON line per figure, then a short table for people.

export interface Figure {
  bench: string;
  figure: string;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  repeats: number;
}

export function median(samples: readonly number[]): number {
  if (samples.length === 0) throw new Error('median of no samples');
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) throw new Error('percentile of no samples');
  if (p < 0 || p > 100) throw new Error(`percentile ${p} out of range`);
  const s = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length) - 1;
  return s[Math.min(s.length - 1, Math.max(0, rank))] as number;
}

export interface MeasureOptions {
  repeats: number;
  warmup?: number;
  /** Clock in milliseconds; injectable for tests. */
  now?: () => number;
}

/** Time `fn` `repeats` times after `warmup` untimed runs; returns milliseconds per run. */
export async function measure(
  fn: () => Promise<unknown>,
  options: MeasureOptions,
): Promise<number[]> {
  const now = options.now ?? (() => performance.now());
  for (let i = 0; i < (options.warmup ?? 1); i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < options.repeats; i++) {
    const start = now();
    await fn();
    samples.push(now() - start);
  }
  return samples;
}

/**
 * Interleave subject and baseline runs (A B A B ...) so drift in machine load hits
 * both alike, then report the subject's median and its ratio to the baseline's.
 */
export async function compare(
  bench: string,
  figure: string,
  unit: string,
  subject: () => Promise<unknown>,
  baseline: () => Promise<unknown>,
  options: MeasureOptions,
): Promise<Figure> {
  const a: number[] = [];
  const b: number[] = [];
  for (let i = 0; i < options.repeats; i++) {
    a.push(
      ...(await measure(subject, { ...options, repeats: 1, warmup: i === 0 ? options.warmup : 0 })),
    );
    b.push(
      ...(await measure(baseline, {
        ...options,
        repeats: 1,
        warmup: i === 0 ? options.warmup : 0,
      })),
    );
  }
  return figureOf(bench, figure, unit, a, b);
}

export function figureOf(
  bench: string,
  figure: string,
  unit: string,
  samples: readonly number[],
  baselineSamples?: readonly number[],
): Figure {
  const value = round(median(samples));
  const baseline = baselineSamples?.length ? round(median(baselineSamples)) : null;
  const ratio = baseline === null || baseline === 0 ? null : round(value / baseline);
  return { bench, figure, value, unit, baseline, ratio, repeats: samples.length };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

export function jsonLine(f: Figure): string {
  return JSON.stringify(f);
}

export function renderTable(figures: readonly Figure[]): string {
  const rows = figures.map((f) => [
    f.bench,
    f.figure,
    `${f.value} ${f.unit}`,
    f.baseline === null ? '-' : `${f.baseline} ${f.unit}`,
    f.ratio === null ? '-' : `${f.ratio}x`,
  ]);
  const head = ['BENCH', 'FIGURE', 'VALUE (median)', 'BASELINE (median)', 'RATIO'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [fmt(head), ...rows.map(fmt)].join('\n') + '\n';
}
