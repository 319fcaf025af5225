// Which labs exist on this machine, of either kind: a process lab (state.json) or
// a real-node lab (cluster.json), each under LAB_ROOT_RUN/NAME. Both kinds share
// the index space (underlay 198.18.INDEX.0/24) and the private run root, so each
// asks here before it takes an index or releases what all labs share.
import { readdir, readFile, writeFile, mkdir, rm, rmdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Runner } from '../sys/index.ts';
import { LAB_ROOT_RUN, LAB_ROOT_DATA } from './plan.ts';
import { releaseRunRoot } from './nodes.ts';

const CREATED_DIRS_FILE = `${LAB_ROOT_RUN}/created-dirs.json`;

export const LAB_STATE_FILES = {
  dir: (name: string) => `${LAB_ROOT_RUN}/${name}`,
  process: (name: string) => `${LAB_ROOT_RUN}/${name}/state.json`,
  cluster: (name: string) => `${LAB_ROOT_RUN}/${name}/cluster.json`,
};

/** Names of the labs of both kinds that have a state file. */
export async function allLabNames(): Promise<string[]> {
  const entries = await readdir(LAB_ROOT_RUN).catch(() => [] as string[]);
  return entries
    .filter((e) => existsSync(LAB_STATE_FILES.process(e)) || existsSync(LAB_STATE_FILES.cluster(e)))
    .sort();
}

/** The indexes in use; an unreadable state file's index stays free (down cleans by name). */
export async function usedLabIndexes(): Promise<number[]> {
  const used: number[] = [];
  for (const name of await allLabNames()) {
    for (const file of [LAB_STATE_FILES.process(name), LAB_STATE_FILES.cluster(name)]) {
      try {
        used.push((JSON.parse(await readFile(file, 'utf8')) as { index: number }).index);
      } catch {
        /* absent or unreadable */
      }
    }
  }
  return used;
}

export function labExists(name: string): boolean {
  return existsSync(LAB_STATE_FILES.process(name)) || existsSync(LAB_STATE_FILES.cluster(name));
}

/**
 * Create the host directories that node mounts are bound over and that the host
 * lacks, recording each (every ancestor mkdir creates, outermost first) so the
 * last lab's `down` removes them again.
 */
export async function recordCreatedDirs(dirs: readonly string[]): Promise<void> {
  const created = JSON.parse(
    await readFile(CREATED_DIRS_FILE, 'utf8').catch(() => '[]'),
  ) as string[];
  for (const dir of dirs) {
    const missing: string[] = [];
    for (let d: string = dir; d !== '/' && !existsSync(d); d = dirname(d)) missing.unshift(d);
    if (missing.length) {
      await mkdir(dir, { recursive: true });
      created.push(...missing);
    }
  }
  await writeFile(CREATED_DIRS_FILE, JSON.stringify(created));
}

/** After a lab's removal: if it was the last, remove what all labs share. */
export async function releaseSharedIfLast(runner: Runner): Promise<void> {
  if ((await allLabNames()).length) return;
  const created = JSON.parse(
    await readFile(CREATED_DIRS_FILE, 'utf8').catch(() => '[]'),
  ) as string[];
  for (const dir of created.reverse()) await rmdir(dir).catch(() => {});
  await rm(CREATED_DIRS_FILE, { force: true });
  await releaseRunRoot(runner);
  await rmdir(LAB_ROOT_RUN).catch(() => {});
  await rmdir(LAB_ROOT_DATA).catch(() => {});
}
