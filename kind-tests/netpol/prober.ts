// The TypeScript side of wiremesh-prober (kind-tests/prober): how to start its
// server and how to run a batch of probes through it and read the results. The
// harness and the prober's kernel test both go through here, so what the kernel
// test proves about the prober holds for the end-to-end suite.
import { toolPath, type RunOptions, type RunResult } from '../../sys/index.ts';

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

export interface ProbeTarget {
  proto: Protocol;
  ip: string;
  port: number;
}

/**
 * reachable: the server answered (answer is its id); timeout: nothing came back
 * (dropped); refused: a TCP reset, an ICMP unreachable or an SCTP ABORT; error: the
 * probe could not run.
 */
export type ProbeOutcome = 'reachable' | 'timeout' | 'refused' | 'error';

export interface ProbeResult extends ProbeTarget {
  result: ProbeOutcome;
  answer?: string;
  ms: number;
  detail?: string;
}

/** Runs argv somewhere (a pod, a node, a test namespace). */
export type Exec = (argv: readonly string[], opts?: RunOptions) => Promise<RunResult>;

export function proberPath(): string {
  return toolPath('wiremesh-prober');
}

/**
 * argv of a server answering on `ports` (TCP, UDP and SCTP) with `id`; `prober` is
 * where the binary is where the server runs (a cluster driver's proberPath()).
 */
export function serveArgv(
  ports: readonly number[],
  id: string,
  prober: string = proberPath(),
): string[] {
  return [prober, 'serve', '--ports', ports.join(','), '--id', id];
}

/**
 * Probe every target at once from where `exec` runs; results in the order of
 * `targets`. `prober` is the binary's path there (a cluster driver's proberPath()).
 */
export async function runProbes(
  exec: Exec,
  targets: readonly ProbeTarget[],
  timeoutMs = 1000,
  prober?: string,
): Promise<ProbeResult[]> {
  if (targets.length === 0) return [];
  const res = await exec([prober ?? proberPath(), 'probe', '--timeout', `${timeoutMs}ms`], {
    input: JSON.stringify(targets),
    timeoutMs: timeoutMs + 15_000,
  });
  return parseProbeResults(res.stdout, targets);
}

const OUTCOMES = new Set<string>(['reachable', 'timeout', 'refused', 'error']);

/** The prober's JSON output, checked against the targets it was given. */
export function parseProbeResults(stdout: string, targets: readonly ProbeTarget[]): ProbeResult[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch (e) {
    throw new Error(`wiremesh-prober printed no JSON: ${stdout.slice(0, 300)}`, { cause: e });
  }
  if (!Array.isArray(parsed) || parsed.length !== targets.length)
    throw new Error(
      `wiremesh-prober returned ${Array.isArray(parsed) ? parsed.length : 'no'} results for ${targets.length} targets`,
    );
  return parsed.map((r: Partial<ProbeResult>, i) => {
    const t = targets[i] as ProbeTarget;
    if (r.ip !== t.ip || r.port !== t.port || r.proto !== t.proto || !OUTCOMES.has(r.result ?? ''))
      throw new Error(
        `wiremesh-prober result ${i} ${JSON.stringify(r)} does not answer ${JSON.stringify(t)}`,
      );
    return r as ProbeResult;
  });
}
