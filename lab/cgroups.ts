// A real lab node's cgroup parent (cgroup v1, the cgroupfs driver): the kubelet's
// --cgroup-root must exist in every hierarchy before it starts, and everything the
// node ran (containers in their pods' network namespaces included) is found again
// through it at teardown, so `down` stops exactly the node's processes and leaves
// no cgroup behind.
import { readdir, readFile, writeFile, mkdir, rmdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CGROUP_FS = '/sys/fs/cgroup';

/** The mounted v1 hierarchies (blkio, cpu, memory, ..., the named systemd one). */
async function hierarchies(): Promise<string[]> {
  const entries = await readdir(CGROUP_FS, { withFileTypes: true }).catch(() => []);
  // cpu and cpuacct may be links to one "cpu,cpuacct" mount: each directory once.
  return entries.filter((e) => e.isDirectory()).map((e) => join(CGROUP_FS, e.name));
}

/** Create `root` (e.g. /wiremesh-lab-lab-1) in every hierarchy. */
export async function createCgroupRoot(root: string): Promise<void> {
  for (const h of await hierarchies()) {
    const dir = join(h, root);
    await mkdir(dir, { recursive: true });
    // A new cpuset has no CPUs and no memory nodes: no process could join it.
    if (existsSync(join(h, 'cpuset.cpus'))) {
      for (const file of ['cpuset.cpus', 'cpuset.mems']) {
        const value = (await readFile(join(h, file), 'utf8')).trim();
        await writeFile(join(dir, file), value);
      }
    }
  }
}

/** Every process in `root`'s tree, over all hierarchies. */
export async function cgroupPids(root: string): Promise<number[]> {
  const pids = new Set<number>();
  const walk = async (dir: string): Promise<void> => {
    const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const p of procs.split('\n')) if (p.trim()) pids.add(Number(p));
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) await walk(join(dir, e.name));
  };
  for (const h of await hierarchies()) await walk(join(h, root));
  pids.delete(process.pid);
  return [...pids].filter((p) => Number.isInteger(p) && p > 0);
}

/** Remove `root`'s tree in every hierarchy (its processes must be gone); retries while busy. */
export async function removeCgroupRoot(root: string): Promise<string[]> {
  const left: string[] = [];
  const remove = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => null);
    if (!entries) return;
    for (const e of entries) if (e.isDirectory()) await remove(join(dir, e.name));
    for (let i = 0; ; i++) {
      try {
        await rmdir(dir);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') return;
        // A process that just exited is released by the kernel a moment later.
        if (code === 'EBUSY' && i < 50) {
          await sleep(100);
          continue;
        }
        left.push(dir);
        return;
      }
    }
  };
  for (const h of await hierarchies()) await remove(join(h, root));
  return left;
}
