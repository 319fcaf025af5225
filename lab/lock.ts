// A host-wide lock for lab up/down, so two labs started at once do not take the
// same index. The lock file holds the owner's pid; a lock whose owner is gone is stale.
import { open, readFile, unlink, mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { LAB_ROOT_RUN } from './plan.ts';

export async function withLabLock<T>(fn: () => Promise<T>, timeoutMs = 120_000): Promise<T> {
  await mkdir(LAB_ROOT_RUN, { recursive: true });
  const path = `${LAB_ROOT_RUN}/.lock`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fh = await open(path, 'wx');
      await fh.writeFile(String(process.pid));
      await fh.close();
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      let alive = false;
      if (owner > 0) {
        try {
          process.kill(owner, 0);
          alive = true;
        } catch {
          alive = false;
        }
      }
      if (!alive) {
        await unlink(path).catch(() => {});
        continue;
      }
      if (Date.now() > deadline)
        throw new Error(`lab lock ${path} held by pid ${owner} for too long`, { cause: e });
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(path).catch(() => {});
  }
}
