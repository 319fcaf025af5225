// What the end-to-end suites use to look at traffic: packet captures with tcpdump
// (on the lab's underlay bridge or inside a node), and long-running probes that a
// suite starts, lets run during a fault, and then reads. startStreamCapture is the
// capture the cluster drivers use: tcpdump runs wherever an argv prefix puts it (the
// host, `nsenter` into a lab node, `kubectl exec -i` into a kind node's probe pod)
// and streams the pcap back on stdout, so nothing is left behind in the cluster.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultRunner, systemEnv } from '../sys/index.ts';

export interface Capture {
  file: string;
  /** Stop tcpdump and return the decoded packets, one line each (`tcpdump -nn -r`). */
  stop(): Promise<{ lines: string[]; raw: Buffer }>;
}

/** Start tcpdump (argv prefix enters a namespace, or [] for the host) writing to `file`. */
export async function startCapture(
  prefix: string[],
  iface: string,
  filter: string,
  file: string,
): Promise<Capture> {
  const argv = [
    ...prefix,
    'tcpdump',
    '--immediate-mode',
    '-i',
    iface,
    '-U',
    '-s',
    '0',
    '-w',
    file,
    ...(filter ? [filter] : []),
  ];
  const child = spawn(argv[0] ?? 'tcpdump', argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  // tcpdump says "listening on ..." once the capture is armed.
  for (let i = 0; i < 100 && !stderr.includes('listening on'); i++) {
    if (child.exitCode !== null) throw new Error(`tcpdump on ${iface} exited: ${stderr}`);
    await sleep(50);
  }
  if (!stderr.includes('listening on'))
    throw new Error(`tcpdump on ${iface} did not start: ${stderr}`);
  return {
    file,
    async stop() {
      await stopChild(child);
      const raw = await readFile(file);
      const res = await defaultRunner.run(['tcpdump', '-nn', '-r', file], { allowFailure: true });
      await rm(file, { force: true });
      return { lines: res.stdout.split('\n').filter(Boolean), raw };
    },
  };
}

/** Two tcpdump filters that must both hold (either may be empty). */
export function filterAnd(a: string, b: string): string {
  return a && b ? `(${a}) and (${b})` : a || b;
}

/**
 * Start tcpdump through `prefix` (an argv that runs a command somewhere and passes
 * stdin, stdout and stderr through) and stream the pcap back. Closing stdin stops
 * it: the remote shell then interrupts tcpdump, which flushes and exits, so a
 * capture behind `kubectl exec -i` ends cleanly too. The packets are decoded with
 * `tcpdump -nn -r -` through the same prefix (the runner host needs no tcpdump).
 */
export async function startStreamCapture(
  prefix: readonly string[],
  iface: string,
  filter = '',
): Promise<Capture> {
  const script =
    'tcpdump --immediate-mode -i "$1" -U -s 0 -w - ${2:+"$2"} & pid=$!; ' +
    'read -r _ || true; kill -INT "$pid" 2>/dev/null; wait "$pid"';
  const argv = [...prefix, 'sh', '-c', script, 'capture', iface, filter];
  const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: systemEnv(),
  });
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => chunks.push(b));
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  for (let i = 0; i < 300 && !stderr.includes('listening on'); i++) {
    if (child.exitCode !== null) throw new Error(`tcpdump on ${iface} exited: ${stderr}`);
    await sleep(50);
  }
  if (!stderr.includes('listening on')) {
    child.kill('SIGKILL');
    throw new Error(`tcpdump on ${iface} did not start: ${stderr}`);
  }
  return {
    file: '-',
    async stop() {
      child.stdin?.end();
      await Promise.race([exited, sleep(10_000)]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      const raw = Buffer.concat(chunks);
      if (raw.length === 0) throw new Error(`tcpdump on ${iface} wrote no pcap: ${stderr}`);
      const res = await defaultRunner.run([...prefix, 'tcpdump', '-nn', '-r', '-'], {
        input: raw,
        allowFailure: true,
      });
      if (res.code !== 0 && !res.stdout)
        throw new Error(`decoding the capture on ${iface}: ${res.stderr}`);
      return { lines: res.stdout.split('\n').filter(Boolean), raw };
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  // Gone already: exited (exitCode) or killed by a signal (signalCode; exitCode stays
  // null then, and waiting for an 'exit' that has happened would hang for ever).
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGINT');
  await Promise.race([done, sleep(3000)]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await done;
}

export interface Background {
  /** Wait for the command to finish; stdout, stderr and exit code. */
  wait(): Promise<{ stdout: string; stderr: string; code: number }>;
  kill(): Promise<void>;
}

/** Run a command in the background (e.g. a ping or iperf3 during a fault). */
export function background(argv: string[]): Background {
  const child = spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<{ stdout: string; stderr: string; code: number }>((resolve) => {
    child.once('exit', (code) => resolve({ stdout, stderr, code: code ?? 128 }));
  });
  return { wait: () => done, kill: () => stopChild(child) };
}

/** Lost packets of a ping run, from its summary line. */
export function pingLoss(output: string): { sent: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(output);
  if (!m) throw new Error(`no ping summary in: ${output.slice(-300)}`);
  return { sent: Number(m[1]), received: Number(m[2]) };
}

/**
 * Lost packets of a `ping -D -W <waitS>` run stopped by SIGINT at `stoppedAtMs` (epoch
 * ms). ping exits on SIGINT at once and counts the requests still in flight as not
 * received; on a loaded machine an echo can be out for tens of ms, so the summary alone
 * reports a loss that is only the stop. A request after the last answered sequence number
 * is in flight, not lost, when the last reply came within the wait before the stop; every
 * unanswered request before that reply is lost, and if replies had stopped for longer than
 * the wait, the trailing requests are lost too.
 */
export function pingLossAtStop(
  output: string,
  stoppedAtMs: number,
  waitS = 1,
): { sent: number; received: number; lost: number; inFlight: number } {
  const { sent, received } = pingLoss(output);
  let lastSeq = 0;
  let lastStampMs = 0;
  for (const m of output.matchAll(/^\[(\d+\.\d+)\].*icmp_seq=(\d+).*time=/gm)) {
    const seq = Number(m[2]);
    if (seq >= lastSeq) {
      lastSeq = seq;
      lastStampMs = Number(m[1]) * 1000;
    }
  }
  const trailing = Math.max(0, sent - lastSeq);
  const inFlight = lastSeq > 0 && stoppedAtMs - lastStampMs <= waitS * 1000 ? trailing : 0;
  return { sent, received, lost: sent - received - inFlight, inFlight };
}

/** Wait until `check` returns true, or fail with `what` after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = 10_000,
  stepMs = 100,
): Promise<number> {
  const start = Date.now();
  let lastError = '';
  while (Date.now() - start < timeoutMs) {
    try {
      if (await check()) return Date.now() - start;
    } catch (e) {
      lastError = (e as Error).message;
    }
    await sleep(stepMs);
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`,
  );
}

/** A decoded tcpdump line of a WireGuard packet (UDP to or from port 51825). */
export const WIREGUARD_PACKET = /\.51825[ :].*UDP|UDP.*\.51825/;
