// Long-running lab processes (etcd, kube-apiserver, agents, probes) are started
// detached, in their own process group, with output to a log file. Each is
// recorded by pid and kernel start time, so teardown stops exactly the processes
// the lab started and never a stranger that reused a pid.
import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { systemEnv } from '../sys/index.ts';

export interface ProcRecord {
  name: string;
  pid: number;
  /** Field 22 of /proc/PID/stat: start time in clock ticks since boot. */
  startTime: number;
  log: string;
}

export function procStartTime(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields resume after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const value = Number(rest[22 - 3]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/** True when the recorded process is still the one we started (and not a zombie). */
export function isAlive(rec: Pick<ProcRecord, 'pid' | 'startTime'>): boolean {
  if (procStartTime(rec.pid) !== rec.startTime) return false;
  try {
    const stat = readFileSync(`/proc/${rec.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function startDaemon(
  name: string,
  argv: readonly string[],
  log: string,
  env?: NodeJS.ProcessEnv,
): ProcRecord {
  const [file, ...args] = argv;
  if (!file) throw new Error(`startDaemon ${name}: empty command`);
  const fd = openSync(log, 'a', 0o600);
  try {
    const child = spawn(file, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      env: env ?? systemEnv(),
    });
    child.on('error', () => {}); // reported below through the missing pid / start time
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error(`cannot start ${name} (${file}); see ${log}`);
    const startTime = procStartTime(pid);
    if (startTime === undefined) throw new Error(`${name} (${file}) exited at once; see ${log}`);
    return { name, pid, startTime, log };
  } finally {
    closeSync(fd);
  }
}

/** SIGTERM the process group, wait, then SIGKILL; only if it is still the process we recorded. */
export async function stopDaemon(rec: ProcRecord, graceMs = 5000): Promise<void> {
  if (!isAlive(rec)) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(-rec.pid, sig); // its process group: it was started detached as leader
    } catch {
      try {
        process.kill(rec.pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(rec)) return;
    await sleep(50);
  }
  if (isAlive(rec)) signal('SIGKILL');
  for (let i = 0; i < 100 && isAlive(rec); i++) await sleep(20);
}

/** Kill (SIGKILL) pids that live in a lab namespace; all were started by the lab or its agents. */
export async function killPids(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (
    let i = 0;
    i < 100 && pids.some((p) => procStartTime(p) !== undefined && !isZombie(p));
    i++
  ) {
    await sleep(20);
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}
