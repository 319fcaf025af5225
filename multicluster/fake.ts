// An in-memory KubeClient for multicluster's tests: list and watch of a few
// cluster-scoped paths, GET/PATCH of single objects, and an apiserver that can be
// taken down (every request and watch fails as a refused connection) and brought
// back. A change ends the open watches of its path, so Informers resume from an
// older resourceVersion, get 410 Gone and list again, as against a real apiserver
// whose watch cache moved on.
import { KubeApiError, type KubeClient, type RequestOpts, type WatchEvent } from '../kube/index.ts';

type Obj = {
  metadata: { name: string; resourceVersion?: string; generation?: number };
  [k: string]: unknown;
};

export class FakeRemoteApi implements KubeClient {
  readonly server = 'https://fake.invalid';
  private readonly objects = new Map<string, Map<string, Obj>>();
  private readonly changedAt = new Map<string, number>();
  private readonly watchers = new Set<{ path: string; end: () => void }>();
  private rv = 1;
  down = false;
  readonly calls: string[] = [];

  put(path: string, obj: Obj): void {
    const items = this.objects.get(path) ?? new Map<string, Obj>();
    this.objects.set(path, items);
    obj.metadata.resourceVersion = String(++this.rv);
    items.set(obj.metadata.name, obj);
    this.touch(path);
  }

  remove(path: string, name: string): void {
    this.objects.get(path)?.delete(name);
    this.rv++;
    this.touch(path);
  }

  get(path: string, name: string): Obj | undefined {
    return this.objects.get(path)?.get(name);
  }

  setDown(down: boolean): void {
    this.down = down;
    if (down) for (const w of [...this.watchers]) w.end();
  }

  private touch(path: string): void {
    this.changedAt.set(path, this.rv);
    for (const w of [...this.watchers]) if (w.path === path) w.end();
  }

  private refuse(method: string, path: string): Error {
    return new Error(`${method} ${path}: connect ECONNREFUSED 198.18.1.1:6443`);
  }

  async list<T>(
    path: string,
    _query: RequestOpts['query'],
    onItem: (item: T) => void,
  ): Promise<{ metadata?: { resourceVersion?: string } }> {
    const answer = await this.request<{ items: T[]; metadata: { resourceVersion: string } }>(
      'GET',
      path,
    );
    for (const item of answer.items) onItem(item);
    return { metadata: answer.metadata };
  }

  async request<T>(method: string, path: string, body?: unknown, _opts?: RequestOpts): Promise<T> {
    this.calls.push(`${method} ${path}`);
    await Promise.resolve();
    if (this.down) throw this.refuse(method, path);
    if (method === 'GET' && this.objects.has(path)) {
      return {
        metadata: { resourceVersion: String(this.rv) },
        items: [...(this.objects.get(path)?.values() ?? [])].map((o) => structuredClone(o)),
      } as T;
    }
    const slash = path.lastIndexOf('/');
    const isStatus = path.endsWith('/status');
    const base = isStatus ? path.slice(0, -'/status'.length) : path;
    const [collection, name] = [
      base.slice(0, base.lastIndexOf('/')),
      base.slice(base.lastIndexOf('/') + 1),
    ];
    const obj = this.objects.get(collection)?.get(decodeURIComponent(name));
    if (method === 'GET' && slash > 0) {
      if (!obj) throw new KubeApiError(method, path, 404, 'NotFound', `${name} not found`);
      return structuredClone(obj) as T;
    }
    if (method === 'PATCH' && isStatus) {
      if (!obj) throw new KubeApiError(method, path, 404, 'NotFound', `${name} not found`);
      const patch = body as { metadata?: { resourceVersion?: string }; status?: unknown };
      if (
        patch.metadata?.resourceVersion &&
        patch.metadata.resourceVersion !== obj.metadata.resourceVersion
      )
        throw new KubeApiError(method, path, 409, 'Conflict', 'the object has been modified');
      obj.status = structuredClone(patch.status);
      this.put(collection, obj);
      return structuredClone(obj) as T;
    }
    throw new KubeApiError(method, path, 404, 'NotFound', 'no such path in the fake');
  }

  async watch(
    path: string,
    query: RequestOpts['query'],
    onEvent: (e: WatchEvent) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    this.calls.push(`WATCH ${path}`);
    await Promise.resolve();
    if (this.down) throw this.refuse('WATCH', path);
    const from = Number(query?.resourceVersion ?? 0);
    if (from < (this.changedAt.get(path) ?? 0)) {
      onEvent({ type: 'ERROR', object: { code: 410, reason: 'Expired' } });
      return;
    }
    await new Promise<void>((resolve) => {
      const w = { path, end: () => (this.watchers.delete(w), resolve()) };
      this.watchers.add(w);
      signal?.addEventListener('abort', w.end, { once: true });
    });
  }
}
