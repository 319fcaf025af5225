// A small Kubernetes API client for the agent: a kubeconfig (client certificate,
// bearer token or token file) or the in-cluster service account; JSON requests and
// streamed watches over node:https with keep-alive. It exists because the general
// client (@kubernetes/client-node) costs the agent ~87 MiB of resident memory for
// generated models it never uses; the lab, tests and tools keep using that one.
// Types come from @kubernetes/client-node as type-only imports (erased at run time).
import { Agent, request, type RequestOptions } from 'node:https';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ListSplitter, type ListFields, type ListMeta } from './liststream.ts';

export type { ListMeta };

export class KubeApiError extends Error {
  readonly status: number;
  /** The Status object's reason, e.g. AlreadyExists, Conflict, NotFound. */
  readonly reason: string;
  constructor(method: string, path: string, status: number, reason: string, message: string) {
    super(`${method} ${path}: ${status} ${reason}${message ? `: ${message}` : ''}`);
    this.name = 'KubeApiError';
    this.status = status;
    this.reason = reason;
  }
}

export interface RequestOpts {
  query?: Record<string, string | number | boolean | undefined>;
  contentType?: string;
  timeoutMs?: number;
}

export type WatchEvent = {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: unknown;
};

export interface KubeClient {
  readonly server: string;
  request<T>(method: string, path: string, body?: unknown, opts?: RequestOpts): Promise<T>;
  /**
   * GET a List, handing each item to `onItem` as it is read: the answer is never
   * held whole (a list of every pod in a large cluster is hundreds of megabytes).
   * With `fields`, the values outside them are never parsed (see ListFields).
   */
  list<T>(
    path: string,
    query: RequestOpts['query'],
    onItem: (item: T) => void,
    fields?: ListFields,
  ): Promise<ListMeta>;
  /** Stream a watch; resolves when the server ends it, rejects on a transport error. */
  watch(
    path: string,
    query: RequestOpts['query'],
    onEvent: (e: WatchEvent) => void,
    signal?: AbortSignal,
  ): Promise<void>;
}

interface Credentials {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  token?: () => string;
  insecure?: boolean;
}

type Named<T> = { name: string } & T;
interface KubeconfigFile {
  'current-context'?: string;
  contexts?: Named<{ context: { cluster: string; user: string } }>[];
  clusters?: Named<{
    cluster: {
      server: string;
      'certificate-authority-data'?: string;
      'certificate-authority'?: string;
      'insecure-skip-tls-verify'?: boolean;
    };
  }>[];
  users?: Named<{
    user: {
      token?: string;
      tokenFile?: string;
      'client-certificate-data'?: string;
      'client-key-data'?: string;
      'client-certificate'?: string;
      'client-key'?: string;
    };
  }>[];
}

/**
 * What makes a parsed document unusable as a kubeconfig, or null: the lists must be
 * lists of objects and every field read below of its type (a kubeconfig from a
 * Secret is untrusted; this turns a malformed one into a clear error, not a TypeError).
 */
function kubeconfigShapeFault(cfg: unknown): string | null {
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const absent = (v: unknown) => v === undefined || v === null;
  if (!isObj(cfg)) return 'not a mapping';
  if (!absent(cfg['current-context']) && typeof cfg['current-context'] !== 'string')
    return 'current-context is not a string';
  const lists = {
    contexts: ['context', ['cluster', 'user'], []],
    clusters: [
      'cluster',
      ['server', 'certificate-authority-data', 'certificate-authority'],
      ['insecure-skip-tls-verify'],
    ],
    users: [
      'user',
      [
        'token',
        'tokenFile',
        'client-certificate-data',
        'client-key-data',
        'client-certificate',
        'client-key',
      ],
      [],
    ],
  } as const;
  for (const [list, [inner, strings, booleans]] of Object.entries(lists)) {
    const items = cfg[list];
    if (absent(items)) continue;
    if (!Array.isArray(items)) return `${list} is not a list`;
    for (const [i, item] of (items as unknown[]).entries()) {
      if (!isObj(item)) return `${list}[${i}] is not a mapping`;
      if (!absent(item.name) && typeof item.name !== 'string')
        return `${list}[${i}].name is not a string`;
      const body = item[inner];
      if (absent(body)) continue;
      if (!isObj(body)) return `${list}[${i}].${inner} is not a mapping`;
      for (const k of strings) {
        if (!absent(body[k]) && typeof body[k] !== 'string')
          return `${list}[${i}].${inner}.${k} is not a string`;
      }
      for (const k of booleans as readonly string[]) {
        if (!absent(body[k]) && typeof body[k] !== 'boolean')
          return `${list}[${i}].${inner}.${k} is not true or false`;
      }
    }
  }
  return null;
}

function fromFile(path: string): Credentials {
  return fromKubeconfig(readFileSync(path, 'utf8'), path, true);
}

/**
 * Credentials from kubeconfig text. `allowFiles` false (a kubeconfig from a Secret)
 * refuses every file reference (certificate-authority, client-certificate,
 * client-key, tokenFile): whoever can write the Secret must not make the agent read,
 * and send to a server of their choice, a file of the node such as its private key.
 */
function fromKubeconfig(text: string, path: string, allowFiles: boolean): Credentials {
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (e) {
    const detail = e instanceof Error ? e.message.split('\n')[0] : String(e);
    throw new Error(`${path}: not a kubeconfig (${detail})`, { cause: e });
  }
  const shapeFault = kubeconfigShapeFault(parsed);
  if (shapeFault) throw new Error(`${path}: not a kubeconfig (${shapeFault})`);
  const cfg = parsed as KubeconfigFile;
  if (!allowFiles) {
    const refs = [
      ...(cfg.clusters ?? []).flatMap((c) =>
        c.cluster?.['certificate-authority'] ? ['certificate-authority'] : [],
      ),
      ...(cfg.users ?? []).flatMap((u) =>
        (['client-certificate', 'client-key', 'tokenFile'] as const).filter((k) => u.user?.[k]),
      ),
    ];
    if (refs.length) {
      throw new Error(
        `${path}: refers to files (${[...new Set(refs)].join(', ')}); embed the data instead (certificate-authority-data, client-certificate-data, client-key-data, token)`,
      );
    }
  }
  const ctxName = cfg['current-context'];
  const ctx = cfg.contexts?.find((c) => c.name === ctxName)?.context ?? cfg.contexts?.[0]?.context;
  if (!ctx) throw new Error(`${path}: no context`);
  const cluster = cfg.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
  const user = cfg.users?.find((u) => u.name === ctx.user)?.user ?? {};
  if (!cluster?.server) throw new Error(`${path}: context names no cluster with a server`);
  if (!URL.canParse(cluster.server) || !/^https?:$/.test(new URL(cluster.server).protocol)) {
    throw new Error(`${path}: the cluster's server is not an http(s) URL`);
  }
  const b64 = (s: string | undefined) => (s ? Buffer.from(s, 'base64') : undefined);
  const file = (p: string | undefined) => (p ? readFileSync(p) : undefined);
  const creds: Credentials = { server: cluster.server.replace(/\/$/, '') };
  const ca = b64(cluster['certificate-authority-data']) ?? file(cluster['certificate-authority']);
  if (ca) creds.ca = ca;
  const cert = b64(user['client-certificate-data']) ?? file(user['client-certificate']);
  const key = b64(user['client-key-data']) ?? file(user['client-key']);
  if (cert && key) {
    creds.cert = cert;
    creds.key = key;
  }
  if (user.token) {
    const token = user.token;
    creds.token = () => token;
  } else if (user.tokenFile) {
    const tokenFile = user.tokenFile;
    creds.token = () => readFileSync(tokenFile, 'utf8').trim();
  }
  if (cluster['insecure-skip-tls-verify']) creds.insecure = true;
  return creds;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

function inCluster(): Credentials {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host)
    throw new Error('not in a cluster (KUBERNETES_SERVICE_HOST unset) and no kubeconfig given');
  // The projected token is rotated by the kubelet: read it for every request.
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readFileSync(`${SA_DIR}/ca.crt`),
    token: () => readFileSync(`${SA_DIR}/token`, 'utf8').trim(),
  };
}

/** A client for a bare server URL without credentials (tests of an unreachable apiserver). */
export function kubeClientForServer(server: string, insecure = true): KubeClient {
  return new HttpsKubeClient({ server, insecure });
}

/**
 * A client from kubeconfig text, e.g. a remote cluster's from a Secret; `source`
 * names it in errors. Only embedded credentials are accepted (no file references).
 */
export function kubeClientFromKubeconfig(text: string, source = 'kubeconfig'): KubeClient {
  return new HttpsKubeClient(fromKubeconfig(text, source, false));
}

export function kubeClient(kubeconfig?: string): KubeClient {
  return new HttpsKubeClient(kubeconfig ? fromFile(kubeconfig) : inCluster());
}

function queryString(query: RequestOpts['query']): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/**
 * A promise's resolve and reject, reachable only until the first call. The first
 * request on a keep-alive socket stays reachable from the socket for the socket's
 * life (Node's TLS session listener holds the request that opened it), and with it
 * every listener on it; through this, the listeners reach the promise, and so the
 * answer (a list of thousands of pods), only until it settles.
 */
function settleOnce<T>(
  resolve: (v: T) => void,
  reject: (e: Error) => void,
): (e: Error | undefined, v?: T) => void {
  const pending: { resolve?: (v: T) => void; reject?: (e: Error) => void } = { resolve, reject };
  return (e, v) => {
    const { resolve: ok, reject: fail } = pending;
    pending.resolve = pending.reject = undefined;
    if (e) fail?.(e);
    else ok?.(v as T);
  };
}

/** The error of a refused request, from the Status object the apiserver answered with. */
function apiError(
  method: string,
  path: string,
  status: number,
  body: Buffer | string,
  parsed?: unknown,
): KubeApiError {
  const text = body.toString();
  if (parsed === undefined) {
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = undefined;
    }
  }
  const st = (parsed ?? {}) as { reason?: string; message?: string };
  return new KubeApiError(
    method,
    path,
    status,
    st.reason ?? 'Unknown',
    st.message ?? text.slice(0, 300),
  );
}

class HttpsKubeClient implements KubeClient {
  readonly server: string;
  private readonly creds: Credentials;
  private readonly agent: Agent;

  constructor(creds: Credentials) {
    this.creds = creds;
    this.server = creds.server;
    this.agent = new Agent({
      keepAlive: true,
      // Every informer's watch holds one socket for as long as it runs (the agent
      // has nine, and more with multi-cluster); requests queue behind them when the
      // limit is reached, which once wedged the reconcile loop. Leave ample room.
      maxSockets: 64,
      ca: creds.ca,
      cert: creds.cert,
      key: creds.key,
      rejectUnauthorized: !creds.insecure,
    });
  }

  private options(
    method: string,
    path: string,
    query: RequestOpts['query'],
    headers: Record<string, string>,
  ): RequestOptions & { url: string } {
    const url = `${this.server}${path}${queryString(query)}`;
    const h: Record<string, string> = { accept: 'application/json', ...headers };
    if (this.creds.token) h.authorization = `Bearer ${this.creds.token()}`;
    return { url, method, agent: this.agent, headers: h };
  }

  request<T>(method: string, path: string, body?: unknown, opts: RequestOpts = {}): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (payload !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const { url, ...o } = this.options(method, path, opts.query, headers);
    return new Promise<T>((resolve, reject) => {
      const settle = settleOnce(resolve, reject);
      const req = request(url, { ...o, timeout: opts.timeoutMs ?? 30_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          chunks.length = 0;
          const status = res.statusCode ?? 0;
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : {};
          } catch {
            parsed = undefined;
          }
          if (status >= 200 && status < 300) return settle(undefined, parsed as T);
          settle(apiError(method, path, status, text, parsed));
        });
        res.on('error', settle);
      });
      req.on('timeout', () =>
        req.destroy(
          new Error(`${method} ${path}: no answer within ${opts.timeoutMs ?? 30_000} ms`),
        ),
      );
      req.on('error', settle);
      req.end(payload);
    });
  }

  list<T>(
    path: string,
    query: RequestOpts['query'],
    onItem: (item: T) => void,
    fields?: ListFields,
  ): Promise<ListMeta> {
    const { url, ...o } = this.options('GET', path, query, {});
    return new Promise<ListMeta>((resolve, reject) => {
      const settle = settleOnce(resolve, reject);
      const req = request(url, { ...o, timeout: 30_000 }, (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => settle(apiError('GET', path, status, Buffer.concat(chunks))));
          res.on('error', settle);
          return;
        }
        let splitter: ListSplitter | undefined = new ListSplitter(
          onItem as (i: unknown) => void,
          fields,
        );
        res.on('data', (c: Buffer) => {
          try {
            splitter?.write(c);
          } catch (e) {
            // A malformed item, or the caller's own error: stop reading.
            splitter = undefined;
            req.destroy();
            settle(e as Error);
          }
        });
        res.on('end', () => {
          if (!splitter) return;
          try {
            settle(undefined, splitter.end());
          } catch (e) {
            settle(new Error(`GET ${path}: ${(e as Error).message}`));
          }
          splitter = undefined;
        });
        res.on('error', settle);
      });
      // The timeout is of a silent socket: a long list that keeps arriving is not cut.
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer within 30000 ms`)));
      req.on('error', settle);
      req.end();
    });
  }

  watch(
    path: string,
    query: RequestOpts['query'],
    onEvent: (e: WatchEvent) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const { url, ...o } = this.options('GET', path, { ...query, watch: true }, {});
    return new Promise<void>((resolve, reject) => {
      const req = request(url, { ...o, signal }, (res) => {
        if ((res.statusCode ?? 0) !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            reject(
              new KubeApiError(
                'WATCH',
                path,
                res.statusCode ?? 0,
                'WatchFailed',
                Buffer.concat(chunks).toString().slice(0, 300),
              ),
            ),
          );
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line) onEvent(JSON.parse(line) as WatchEvent);
          }
        });
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.on('error', (e) => (signal?.aborted ? resolve() : reject(e)));
      req.end();
    });
  }
}
