// Keeping an informer going: every change schedules a reconcile; watch failures are
// logged (the informer retries by itself, and its cache keeps serving the last state,
// so the dataplane stays as it is while the apiserver is away); the first list is
// retried until it succeeds, since nothing may be programmed before it.
import type { Informer } from '../kube/index.ts';
import type { Logger } from './log.ts';

interface Obj {
  metadata?: { name?: string };
}

export async function runInformer<T extends Obj>(
  informer: Informer<T>,
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
    log.warn(`${what} watch failed; retrying`, { error: (err as Error)?.message ?? String(err) });
  });
  const started = performance.now();
  for (let delay = 500; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      await informer.start();
      // Start-up at a large cluster's size is mostly these lists: say what each took.
      log.info(`listed ${what}`, {
        count: informer.list().length,
        ms: Math.round(performance.now() - started),
      });
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

/**
 * `fn` run once, with the last argument, after the events of the current turn that
 * called for it: an informer's list emits one event per object, and a handler that
 * goes over every object at each event would be quadratic in the cluster's size
 * (5,000 IPAM blocks or Nodes: seconds of a start-up).
 */
export function oncePerTurn<A>(fn: (arg: A) => void): (arg: A) => void {
  let queued = false;
  let last: A;
  return (arg) => {
    last = arg;
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      fn(last);
    });
  };
}
