// The lab's control plane: a real etcd 3.5 and a real kube-apiserver, both with
// TLS, built from Go modules by hack/build-tools.sh. etcd listens on loopback;
// the apiserver on the lab's underlay gateway address (the IPv6 one in an
// IPv6-only lab, so its nodes need no IPv4), so processes inside node namespaces
// reach it as they would a real control-plane endpoint. RBAC and service-account
// tokens are on, as in a real cluster.
import { createServer } from 'node:net';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LabPki } from './pki.ts';
import { startDaemon, isAlive, type ProcRecord } from './procs.ts';
import { toolPath } from '../sys/index.ts';

export const SERVICE_CIDR = '100.96.0.0/12';
/**
 * The services of an IPv6-only lab: the apiserver wants its service range in the
 * family of the address it advertises. Inside the documentation range, clear of the
 * labs' underlays (2001:db8:0..f::/64) and the IPv6 pool (2001:db8:64::/48).
 */
export const SERVICE_CIDR_V6 = '2001:db8:96::/108';

/** A free TCP port on loopback (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() =>
        typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port')),
      );
    });
  });
}

/** The apiserver's URL at an address of either family (an IPv6 one in brackets). */
export function apiserverURL(ip: string): string {
  return `https://${ip.includes(':') ? `[${ip}]` : ip}:6443`;
}

export async function startEtcd(
  pki: LabPki,
  dataDir: string,
  logDir: string,
  record: (proc: ProcRecord) => Promise<void>,
): Promise<{ proc: ProcRecord; url: string }> {
  const [client, peer] = [await freePort(), await freePort()];
  const url = `https://127.0.0.1:${client}`;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const proc = startDaemon(
    'etcd',
    [
      toolPath('etcd'),
      '--name=lab',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`,
      `--initial-cluster=lab=http://127.0.0.1:${peer}`,
      `--cert-file=${pki.etcdCert}`,
      `--key-file=${pki.etcdKey}`,
      `--trusted-ca-file=${pki.caCert}`,
      '--client-cert-auth=true',
      '--log-level=warn',
    ],
    `${logDir}/etcd.log`,
  );
  await record(proc); // before waiting, so a failed start is still stopped by teardown
  await waitHealthy('etcd', proc, `${url}/health`, pki, {
    cert: pki.apiserverEtcdClientCert,
    key: pki.apiserverEtcdClientKey,
  });
  return { proc, url };
}

export async function startApiserver(
  pki: LabPki,
  etcdURL: string,
  bindIP: string,
  logDir: string,
  record: (proc: ProcRecord) => Promise<void>,
): Promise<{ proc: ProcRecord; url: string }> {
  const url = apiserverURL(bindIP);
  const services = bindIP.includes(':') ? SERVICE_CIDR_V6 : SERVICE_CIDR;
  const proc = startDaemon(
    'kube-apiserver',
    [
      toolPath('kube-apiserver'),
      `--etcd-servers=${etcdURL}`,
      `--etcd-cafile=${pki.caCert}`,
      `--etcd-certfile=${pki.apiserverEtcdClientCert}`,
      `--etcd-keyfile=${pki.apiserverEtcdClientKey}`,
      `--bind-address=${bindIP}`,
      `--advertise-address=${bindIP}`,
      '--secure-port=6443',
      `--tls-cert-file=${pki.apiserverCert}`,
      `--tls-private-key-file=${pki.apiserverKey}`,
      `--client-ca-file=${pki.caCert}`,
      '--authorization-mode=Node,RBAC',
      '--anonymous-auth=true',
      `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
      `--service-account-key-file=${pki.serviceAccountPub}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      `--service-cluster-ip-range=${services}`,
      '--allow-privileged=true',
      '--profiling=false',
      '--v=1',
    ],
    `${logDir}/kube-apiserver.log`,
  );
  await record(proc);
  await waitHealthy(
    'kube-apiserver',
    proc,
    `${url}/readyz`,
    pki,
    { cert: pki.adminCert, key: pki.adminKey },
    90_000,
  );
  return { proc, url };
}

interface ClientCert {
  cert: string;
  key: string;
}

/** GET a URL with the lab's CA and a client certificate; resolves to status and body. */
export function getTls(
  url: string,
  pki: LabPki,
  client: ClientCert,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        ca: readFileSync(pki.caCert),
        cert: readFileSync(client.cert),
        key: readFileSync(client.key),
        timeout: 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout GET ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

async function waitHealthy(
  name: string,
  proc: ProcRecord,
  url: string,
  pki: LabPki,
  client: ClientCert,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!isAlive(proc)) {
      throw new Error(`${name} exited during start-up; see ${proc.log}:\n${tail(proc.log)}`);
    }
    try {
      const res = await getTls(url, pki, client);
      if (res.status === 200) return;
      last = `HTTP ${res.status}: ${res.body.slice(0, 300)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(200);
  }
  throw new Error(`${name} not healthy at ${url} after ${timeoutMs} ms (${last}); see ${proc.log}`);
}

export function tail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
