// The agent's health endpoints, for the kubelet's probes: plain HTTP on the node's
// network (setting `health-address`, default 127.0.0.1:9826, which a hostNetwork
// pod's httpGet probe reaches with `host: 127.0.0.1`), apart from the metrics
// listener so that probes work with metrics off and a scrape never delays a probe.
// A probe reads a few fields the reconcile loop keeps (Reconciler.progress) and
// answers at once: no API call, no `wg show`, no process started, so a busy node
// answers within the probe's timeout where starting `wiremesh health` (a Node.js
// process) took seconds.
//
//   GET /healthz  liveness: the process answers and its reconcile loop is not stuck
//                 (no pass running longer than `stallMs`, and a pass comes at least
//                 every resync or backoff period). While the agent waits for its
//                 first lists it is alive: a restart would not bring the API back.
//   GET /readyz   readiness: alive, the first full lists arrived and a pass of every
//                 phase has applied the dataplane. It stays ready through later
//                 failed passes (logged, counted, retried, in `wiremesh status`): the
//                 node's dataplane is in place, and a flapping DaemonSet pod would
//                 only stall a rolling update.
// Both answer 200 or 503 with a JSON body saying why; the agent's unix socket
// serves the same two paths from the same functions (`wiremesh health`).
import { createServer, request, type Server } from 'node:http';
import type { ReconcileProgress } from './reconciler.ts';

/** What the checks read; Agent.health() gives it. */
export interface HealthFacts {
  /** The first full lists arrived (nothing touches the dataplane before). */
  synced: boolean;
  reconcile: ReconcileProgress;
  lastError: string | null;
}

export interface HealthSource {
  health(): HealthFacts;
}

export interface HealthOptions {
  /** A pass running longer than this means the loop is stuck (default 5 min). */
  stallMs?: number;
  /** Slack over the longest wait between passes before the loop counts as dead (60 s). */
  graceMs?: number;
}

export interface HealthVerdict {
  ok: boolean;
  reason: string;
}

const DEFAULT_STALL_MS = 5 * 60_000;
const DEFAULT_GRACE_MS = 60_000;

export function checkLiveness(
  facts: HealthFacts,
  now: number,
  options: HealthOptions = {},
): HealthVerdict {
  const r = facts.reconcile;
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
  if (!r.running) {
    return {
      ok: true,
      reason: facts.synced ? 'stopping' : 'starting: waiting for the first full lists',
    };
  }
  if (r.passStartedAt !== null) {
    const running = now - r.passStartedAt;
    if (running > stallMs)
      return {
        ok: false,
        reason: `a reconcile pass has been running for ${seconds(running)} (limit ${seconds(stallMs)})`,
      };
    return { ok: true, reason: 'reconciling' };
  }
  const idle = r.lastPassEndedAt === null ? 0 : now - r.lastPassEndedAt;
  const limit = r.longestIdleMs + (options.graceMs ?? DEFAULT_GRACE_MS);
  if (idle > limit)
    return {
      ok: false,
      reason: `no reconcile pass for ${seconds(idle)}, though one is due at least every ${seconds(r.longestIdleMs)}`,
    };
  return { ok: true, reason: 'alive' };
}

export function checkReadiness(
  facts: HealthFacts,
  now: number,
  options: HealthOptions = {},
): HealthVerdict {
  const live = checkLiveness(facts, now, options);
  if (!live.ok) return live;
  if (!facts.synced) return { ok: false, reason: 'waiting for the first full lists from the API' };
  if (facts.reconcile.lastFullSuccessAt === null)
    return {
      ok: false,
      reason:
        facts.lastError === null
          ? 'the first full reconcile pass has not finished yet'
          : `the first full reconcile pass has not succeeded yet: ${facts.lastError}`,
    };
  return { ok: true, reason: 'ready: the dataplane is applied' };
}

export type HealthPath = '/healthz' | '/readyz';

/** The answer of one health path: status code and JSON body. */
export function healthResponse(
  path: HealthPath,
  facts: HealthFacts,
  now: number,
  options: HealthOptions = {},
): { code: number; body: Record<string, unknown> } {
  const verdict =
    path === '/readyz' ? checkReadiness(facts, now, options) : checkLiveness(facts, now, options);
  const r = facts.reconcile;
  const at = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    code: verdict.ok ? 200 : 503,
    body: {
      ok: verdict.ok,
      reason: verdict.reason,
      synced: facts.synced,
      passRunningForMs: r.passStartedAt === null ? null : now - r.passStartedAt,
      lastPassEndedAt: at(r.lastPassEndedAt),
      lastFullSuccessAt: at(r.lastFullSuccessAt),
      lastError: facts.lastError,
    },
  };
}

export function isHealthPath(path: string): path is HealthPath {
  return path === '/healthz' || path === '/readyz';
}

/** Serve /healthz and /readyz on address; rejects when it cannot be bound. */
export async function serveHealth(
  source: HealthSource,
  address: { host: string; port: number },
  options: HealthOptions & { now?: () => number } = {},
): Promise<Server> {
  const now = options.now ?? Date.now;
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!isHealthPath(path)) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('wiremesh agent: GET /healthz (liveness) or /readyz (readiness)\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' });
      res.end('GET or HEAD\n');
      return;
    }
    const { code, body } = healthResponse(path, source.health(), now(), options);
    res.writeHead(code, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body) + '\n');
  });
  // A probe is one small request: a client that dawdles is not worth a socket.
  server.headersTimeout = 5000;
  server.requestTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `cannot serve health on ${address.host}:${address.port}: ${e.message} (setting health-address)`,
          { cause: e },
        ),
      ),
    );
    server.listen(address.port, address.host, () => resolve());
  });
  return server;
}

/**
 * GET a health path from the agent, over TCP (the health address) or its unix
 * socket; resolves with the status code and body, whatever the code.
 */
export function getHealth(
  target: { host: string; port: number } | { socketPath: string },
  path: HealthPath,
  timeoutMs = 5000,
): Promise<{ code: number; body: { ok?: boolean; reason?: string } }> {
  const where = 'socketPath' in target ? target.socketPath : `${target.host}:${target.port}`;
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path, method: 'GET', timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        try {
          resolve({ code: res.statusCode ?? 0, body: JSON.parse(text) as { reason?: string } });
        } catch {
          reject(
            new Error(`the agent at ${where} answered ${res.statusCode}: ${text.slice(0, 200)}`),
          );
        }
      });
    });
    req.on('timeout', () =>
      req.destroy(new Error(`the agent at ${where} did not answer within ${timeoutMs} ms`)),
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED')
        reject(new Error(`no wiremesh agent answers at ${where}`, { cause: e }));
      else reject(e);
    });
    req.end();
  });
}

function seconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}
