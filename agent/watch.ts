// Keeping an informer alive: every change schedules a reconcile; a failed watch is
// restarted after a pause (the cache keeps serving the last state meanwhile, so the
// dataplane stays as it is while the apiserver is away); the first list is retried
// until it succeeds, since nothing may be programmed before it.
import type { Informer, KubernetesObject, ObjectCache } from '@kubernetes/client-node';
import type { Logger } from './log.ts';

export type Cache<T extends KubernetesObject> = Informer<T> & ObjectCache<T>;

export async function runInformer<T extends KubernetesObject>(
  informer: Cache<T>,
  what: string,
  log: Logger,
  onChange: (reason: string) => void,
): Promise<void> {
  for (const verb of ['add', 'update', 'delete'] as const) {
    informer.on(verb, (obj: T) => {
      log.debug(`${what} ${verb}`, { name: obj.metadata?.name });
      onChange(`${what} ${verb}`);
    });
  }
  informer.on('error', (err: unknown) => {
    log.warn(`${what} watch failed; restarting it`, {
      error: (err as Error)?.message ?? String(err),
    });
    setTimeout(() => {
      informer
        .start()
        .catch((e: unknown) =>
          log.warn(`${what} watch restart failed`, { error: (e as Error).message }),
        );
    }, 2000);
  });
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      await informer.start();
      return;
    } catch (e) {
      log.warn(`cannot list ${what} yet; retrying`, {
        error: (e as Error).message,
        retryInMs: delay,
      });
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
