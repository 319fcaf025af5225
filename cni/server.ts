// The agent's CNI endpoint: a unix socket (/run/wiremesh/cni.sock, root only) on
// which the relay binary POSTs {env, stdin} and gets {code, stdout} back. Requests
// are handled one at a time per container, in arrival order.
//
// Every answered request is published on the diagnostics channel
// CNI_REQUEST_CHANNEL ({command, code, ms}; code 999 when the handler threw), so the
// metrics endpoint (agent/metrics.ts) can count it without being wired through the
// agent; with no subscriber a publish costs nothing.
import { channel } from 'node:diagnostics_channel';
import { createServer, type Server } from 'node:http';
import { mkdir, rm, chmod } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { CniHandler } from './handler.ts';
import { cniVersionOf } from './protocol.ts';

const MAX_BODY = 2 * 1024 * 1024;

/** The diagnostics channel of answered CNI requests; messages are CniRequestEvent. */
export const CNI_REQUEST_CHANNEL = 'wiremesh:cni:request';

export interface CniRequestEvent {
  command: string;
  /** The reply's CNI error code; 0 for success. */
  code: number;
  ms: number;
}

const requests = channel(CNI_REQUEST_CHANNEL);

export async function serveCni(
  handler: CniHandler,
  socketPath: string,
  onRequest?: (ms: number, command: string, code: number) => void,
): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  await rm(socketPath, { force: true });
  const server = createServer((req, res) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const reply = (code: number, stdout: string) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code, stdout }));
      };
      let body: { env?: Record<string, string>; stdin?: string };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString()) as typeof body;
      } catch {
        res.writeHead(400);
        res.end('bad request');
        return;
      }
      const env = body.env ?? {};
      handler
        .handle(env, body.stdin ?? '')
        .then((r) => {
          const ms = performance.now() - started;
          onRequest?.(ms, env.CNI_COMMAND ?? '', r.code);
          if (requests.hasSubscribers)
            requests.publish({ command: env.CNI_COMMAND ?? '', code: r.code, ms });
          reply(r.code, r.stdout);
        })
        .catch((e: unknown) => {
          if (requests.hasSubscribers)
            requests.publish({
              command: env.CNI_COMMAND ?? '',
              code: 999,
              ms: performance.now() - started,
            });
          // Like every answer, in the version the request's config asks for.
          const cniVersion = cniVersionOf(body.stdin ?? '');
          reply(1, JSON.stringify({ cniVersion, code: 999, msg: (e as Error).message }));
        });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await chmod(socketPath, 0o600);
  return server;
}
