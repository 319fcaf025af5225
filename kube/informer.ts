// A list-and-watch cache of one resource, keyed by name (cluster-scoped) or
// namespace/name. It lists, then watches from the list's resourceVersion with
// bookmarks; when the watch ends it resumes from the last version seen, and when
// that version is too old (410 Gone) it lists again and emits the differences. A
// failed request is retried with backoff and reported through 'error'; the cache
// keeps serving the last state meanwhile. `start` resolves after the first list.
import { EventEmitter } from 'node:events';
import type { KubeClient, WatchEvent } from './client.ts';
import { KubeApiError } from './client.ts';
import type { ListFields } from './liststream.ts';

interface Obj {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

const keyOf = (o: Obj) =>
  o.metadata?.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : (o.metadata?.name ?? '');

export interface InformerOptions<T, Raw = T> {
  /**
   * Applied to every object before it is cached: keep only what the consumer reads,
   * so a large cluster's objects (managedFields, status conditions...) are not held.
   * What it returns may be the consumer's own form of the object, with the name,
   * namespace and resourceVersion the cache is kept by.
   */
  transform?: (obj: Raw) => T;
  /**
   * True when a changed object is the same for the consumer: the cached object (same
   * identity) is kept and no 'update' is emitted.
   */
  unchanged?: (cached: T, next: T) => boolean;
  /**
   * What `transform` reads of a listed object: the rest of its text is never parsed
   * (see ListFields). A large cluster's first list is mostly text nobody reads.
   * The metadata's single values (name, namespace, version) are always read.
   */
  fields?: ListFields;
}

/**
 * True when two (trimmed) objects differ at most in resourceVersion: the `unchanged`
 * test of an informer whose transform keeps only what its consumer reads.
 */
export function sameButVersion(a: object, b: object): boolean {
  const text = (x: object) => {
    const o = x as { metadata?: Record<string, unknown> };
    return JSON.stringify({ ...o, metadata: { ...o.metadata, resourceVersion: undefined } });
  };
  return text(a) === text(b);
}

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/**
 * Drops what no consumer reads and every object may carry in bulk: managedFields (the
 * field owners of server-side apply) and kubectl's last-applied copy of the object,
 * which together can outweigh the rest of a NetworkPolicy or Namespace several times.
 */
function slim(o: object): void {
  const meta = (
    o as { metadata?: { managedFields?: unknown; annotations?: Record<string, string> } }
  ).metadata;
  if (!meta) return;
  delete meta.managedFields;
  if (meta.annotations && LAST_APPLIED in meta.annotations) delete meta.annotations[LAST_APPLIED];
}

export class Informer<T extends Obj, Raw extends Obj = T> extends EventEmitter {
  private readonly client: KubeClient;
  private readonly path: string;
  private readonly query: Record<string, string>;
  private readonly options: InformerOptions<T, Raw>;
  private readonly fields: ListFields | undefined;
  private readonly cache = new Map<string, T>();
  private resourceVersion = '';
  private stopped = false;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;

  constructor(
    client: KubeClient,
    path: string,
    query: Record<string, string> = {},
    options: InformerOptions<T, Raw> = {},
  ) {
    super();
    this.client = client;
    this.path = path;
    this.query = query;
    this.options = options;
    // The cache is kept by name, namespace and version.
    this.fields = options.fields && { metadata: {}, ...options.fields };
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  get(name: string): T | undefined {
    return this.cache.get(name);
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.relist();
    this.loop = this.watchLoop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    await this.loop?.catch(() => {});
  }

  private async relist(): Promise<void> {
    const items: T[] = [];
    // The first list is served from the apiserver's watch cache (resourceVersion 0:
    // any version, as client-go's informers start), in one answer read item by item:
    // at 45,000 pods, pages of 500 from etcd kept the agent waiting half of its
    // list's 22 s. Once the cache has a version the watch expired from, the list is
    // of the latest state (no version: a consistent read).
    const meta = await this.client.list<Raw>(
      this.path,
      { ...this.query, resourceVersion: this.resourceVersion ? undefined : '0' },
      // Trimmed as they arrive: the raw objects of a large list never all live at once.
      (raw) => items.push(this.keep(raw)),
      this.fields,
    );
    const rv = meta.metadata?.resourceVersion ?? '';
    const seen = new Set<string>();
    for (const item of items) {
      const key = keyOf(item);
      seen.add(key);
      const old = this.cache.get(key);
      if (old && this.options.unchanged?.(old, item)) continue;
      this.cache.set(key, item);
      if (!old) this.emit('add', item);
      else if (old.metadata?.resourceVersion !== item.metadata?.resourceVersion)
        this.emit('update', item);
    }
    for (const [key, old] of this.cache) {
      if (!seen.has(key)) {
        this.cache.delete(key);
        this.emit('delete', old);
      }
    }
    this.resourceVersion = rv;
  }

  private async watchLoop(): Promise<void> {
    let delay = 500;
    while (!this.stopped) {
      this.abort = new AbortController();
      try {
        let gone = false;
        await this.client.watch(
          this.path,
          {
            ...this.query,
            resourceVersion: this.resourceVersion,
            allowWatchBookmarks: true,
            timeoutSeconds: 300,
          },
          (e) => {
            if (this.onEvent(e)) gone = true;
          },
          this.abort.signal,
        );
        if (gone) await this.relist();
        delay = 500;
      } catch (e) {
        if (this.stopped) return;
        this.emit('error', e);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 10_000);
        try {
          if (e instanceof KubeApiError && e.status === 410) await this.relist();
        } catch (err) {
          this.emit('error', err);
        }
      }
    }
  }

  /** What the cache holds of an object from the API (freshly parsed, so ours to change). */
  private keep(raw: Raw): T {
    slim(raw);
    return this.options.transform ? this.options.transform(raw) : (raw as unknown as T);
  }

  /** Apply one watch event; true when the watch expired (410) and a relist is due. */
  private onEvent(e: WatchEvent): boolean {
    const obj = e.object as Raw & { code?: number };
    if (e.type === 'ERROR') return obj.code === 410;
    const rv = obj.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
    if (e.type === 'BOOKMARK') return false;
    const item = this.keep(obj);
    const key = keyOf(item);
    if (e.type === 'DELETED') {
      this.cache.delete(key);
      this.emit('delete', item);
    } else {
      const old = this.cache.get(key);
      if (old && this.options.unchanged?.(old, item)) return false;
      this.cache.set(key, item);
      this.emit(old ? 'update' : 'add', item);
    }
    return false;
  }
}
