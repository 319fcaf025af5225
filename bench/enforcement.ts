// When did a policy change take effect, as a probe loop saw it (bench/probe-loop.ts
// sends a fresh flow every few ms and reports each one's send time and whether it
// was answered)? Pure functions over those results, so the rule is tested apart
// from the lab: "first" is the first probe after the change with the new outcome;
// "steady" the first one from which on every probe had it, once enough of them
// (settleMs) are known to say so. The two differ when stray probes still get the old
// verdict after the new one was first seen (a flow riding a live conntrack entry, a
// probe process starved past its timeout), so the benchmark reports both.

export interface ProbeResult {
  /** Send time, wall-clock milliseconds. */
  t: number;
  /** Answered within the probe's timeout. */
  ok: boolean;
  /** Milliseconds from send to answer, when answered. */
  rtt?: number;
}

/** The send time of the first probe sent at or after `since` whose outcome is `want`. */
export function firstWith(
  probes: readonly ProbeResult[],
  since: number,
  want: boolean,
): number | null {
  let first: number | null = null;
  for (const p of probes)
    if (p.t >= since && p.ok === want && (first === null || p.t < first)) first = p.t;
  return first;
}

/**
 * The send time of the first probe at or after `since` from which on every probe sent
 * up to `knownUntil` (before which every outcome is in) had outcome `want`, provided
 * they span at least `settleMs`; null while that cannot be said yet.
 */
export function steadyFrom(
  probes: readonly ProbeResult[],
  since: number,
  want: boolean,
  knownUntil: number,
  settleMs: number,
): number | null {
  const after = probes.filter((p) => p.t >= since && p.t <= knownUntil).sort((a, b) => a.t - b.t);
  let first = -1;
  for (let i = after.length - 1; i >= 0 && (after[i] as ProbeResult).ok === want; i--) first = i;
  if (first < 0) return null;
  const start = (after[first] as ProbeResult).t;
  const last = (after[after.length - 1] as ProbeResult).t;
  return last - start >= settleMs ? start : null;
}
