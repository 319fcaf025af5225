// The agent's local API on a unix socket (/run/wiremesh/agent.sock), for the
// `wiremesh status`, `wiremesh plan` and `wiremesh rotate-key` commands and for
// health checks. Root-only by file mode; it never returns the private key.
import { createServer, request, type Server } from 'node:http';
import { mkdir, rm, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Agent } from './agent.ts';
import { startedPodNetworks } from './podnetwork.ts';
import { healthResponse } from './health.ts';

export async function serveAgentApi(agent: Agent, socketPath: string): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await rm(socketPath, { force: true });
  const server = createServer((req, res) => {
    const reply = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const route = `${req.method ?? 'GET'} ${req.url ?? '/'}`;
    const handle = async () => {
      switch (route) {
        // The checks of the health endpoints (agent/health.ts), for `wiremesh health`.
        case 'GET /healthz':
        case 'GET /readyz': {
          const path = route === 'GET /readyz' ? '/readyz' : '/healthz';
          const { code, body } = healthResponse(path, agent.health(), Date.now());
          return reply(code, body);
        }
        case 'GET /status':
          // Plus this node's IPAM usage, which the Agent's status does not carry.
          return reply(200, {
            ...(await agent.status()),
            ipam: startedPodNetworks().map((n) => n.ipam.usage()),
          });
        case 'GET /plan':
          return reply(200, agent.currentPlan());
        case 'POST /resync':
          await agent.resyncNow();
          return reply(200, (await agent.status()).reconcile);
        case 'POST /rotate-key':
          return reply(200, await agent.rotateKey());
        default:
          return reply(404, { error: `no such endpoint: ${route}` });
      }
    };
    handle().catch((e: unknown) => reply(500, { error: (e as Error).message }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await chmod(socketPath, 0o600);
  return server;
}

/** Call the local agent's API; a clear error when the agent is not running. */
export function callAgent(
  socketPath: string,
  method: 'GET' | 'POST',
  path: string,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          return reject(new Error(`agent answered ${res.statusCode}: ${text.slice(0, 200)}`));
        }
        if ((res.statusCode ?? 500) >= 400) {
          return reject(
            new Error(
              `agent answered ${res.statusCode}: ${(body as { error?: string })?.error ?? text}`,
            ),
          );
        }
        resolve(body);
      });
    });
    req.on('timeout', () =>
      req.destroy(new Error(`the agent at ${socketPath} did not answer within 10 s`)),
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(
          new Error(
            `no wiremesh agent is running on this node (nothing listens on ${socketPath})`,
            { cause: e },
          ),
        );
      } else reject(e);
    });
    req.end();
  });
}
