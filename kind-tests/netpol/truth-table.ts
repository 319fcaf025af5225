// Reachability as a truth table, rows = from, columns = to, the way upstream's
// netpol e2e tests print it: "." connected, "X" blocked. A case builds the table
// it expects with pattern helpers (`expectPeer('*', 'x', false)`: nothing reaches
// namespace x), the harness fills one from probes, and on a mismatch the failure
// shows both and a comparison table marking the cells that differ.

/**
 * A set of pods, written as "x/a" (one pod), "x" or "x/*" (namespace x), "*\/a"
 * (pod a of every namespace) or "*" (every pod).
 */
export type PodPattern = string;

export function matchesPattern(key: string, pattern: PodPattern): boolean {
  const [ns, pod] = key.split('/');
  const [pns, ppod = '*'] = pattern.split('/');
  return (pns === '*' || pns === ns) && (ppod === '*' || ppod === pod);
}

export interface CellDiff {
  from: string;
  to: string;
  expected: boolean;
  observed: boolean;
}

export class TruthTable {
  readonly keys: readonly string[];
  private readonly cells: Map<string, boolean>;

  constructor(keys: readonly string[], initial: boolean) {
    this.keys = keys;
    this.cells = new Map();
    for (const from of keys) for (const to of keys) this.cells.set(cell(from, to), initial);
  }

  clone(): TruthTable {
    const t = new TruthTable(this.keys, false);
    for (const [k, v] of this.cells) t.cells.set(k, v);
    return t;
  }

  get(from: string, to: string): boolean {
    const v = this.cells.get(cell(from, to));
    if (v === undefined) throw new Error(`no cell ${from} -> ${to} in the truth table`);
    return v;
  }

  set(from: string, to: string, connected: boolean): this {
    this.get(from, to);
    this.cells.set(cell(from, to), connected);
    return this;
  }

  /** Every pair whose source matches `from` and destination matches `to`. */
  expectPeer(from: PodPattern, to: PodPattern, connected: boolean): this {
    let hits = 0;
    for (const f of this.keys) {
      if (!matchesPattern(f, from)) continue;
      for (const t of this.keys) {
        if (!matchesPattern(t, to)) continue;
        this.cells.set(cell(f, t), connected);
        hits++;
      }
    }
    if (hits === 0) throw new Error(`the pattern ${from} -> ${to} matches no cell`);
    return this;
  }

  /** Everything into the pods of `to`. */
  expectAllIngress(to: PodPattern, connected: boolean): this {
    return this.expectPeer('*', to, connected);
  }

  /** Everything out of the pods of `from`. */
  expectAllEgress(from: PodPattern, connected: boolean): this {
    return this.expectPeer(from, '*', connected);
  }

  /**
   * A pod reaches itself whatever the policy: traffic to its own address loops back
   * inside its network namespace and never meets the node's rules (upstream's
   * AllowLoopback). Call it last.
   */
  allowLoopback(): this {
    for (const k of this.keys) this.cells.set(cell(k, k), true);
    return this;
  }

  diff(observed: TruthTable): CellDiff[] {
    const out: CellDiff[] = [];
    for (const from of this.keys)
      for (const to of this.keys) {
        const expected = this.get(from, to);
        const seen = observed.get(from, to);
        if (expected !== seen) out.push({ from, to, expected, observed: seen });
      }
    return out;
  }

  equals(other: TruthTable): boolean {
    return this.diff(other).length === 0;
  }

  /** Rows = from, columns = to; "." connected, "X" blocked. */
  render(): string {
    return renderGrid(this.keys, (f, t) => (this.get(f, t) ? '.' : 'X'));
  }
}

/** "." where both tables agree, "X" where they differ. */
export function renderComparison(expected: TruthTable, observed: TruthTable): string {
  return renderGrid(expected.keys, (f, t) =>
    expected.get(f, t) === observed.get(f, t) ? '.' : 'X',
  );
}

function cell(from: string, to: string): string {
  return `${from}>${to}`;
}

function renderGrid(keys: readonly string[], mark: (from: string, to: string) => string): string {
  const width = Math.max(4, ...keys.map((k) => k.length));
  const pad = (s: string) => s.padEnd(width);
  const lines = [[pad('-'), ...keys.map(pad)].join(' ').trimEnd()];
  for (const from of keys)
    lines.push([pad(from), ...keys.map((to) => pad(mark(from, to)))].join(' ').trimEnd());
  return lines.join('\n');
}
