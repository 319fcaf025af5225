// The lab's certificates, made with the openssl CLI: one CA; serving certificates
// for etcd and kube-apiserver; client certificates for the apiserver (to etcd)
// and for the lab's admin (system:masters); and the service-account signing key.
// EC P-256 throughout: quick to generate and accepted by every component.
import { mkdir, writeFile, readFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { Runner } from '../sys/index.ts';

export interface LabPki {
  dir: string;
  caCert: string;
  caKey: string;
  apiserverCert: string;
  apiserverKey: string;
  etcdCert: string;
  etcdKey: string;
  apiserverEtcdClientCert: string;
  apiserverEtcdClientKey: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPub: string;
}

interface LeafSpec {
  name: string;
  subject: string;
  server: boolean;
  client: boolean;
  ips?: string[];
  dns?: string[];
}

const CURVE = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];

async function issue(runner: Runner, dir: string, spec: LeafSpec): Promise<void> {
  const key = join(dir, `${spec.name}.key`);
  const csr = join(dir, `${spec.name}.csr`);
  const ext = join(dir, `${spec.name}.ext`);
  const usages = [spec.server ? 'serverAuth' : '', spec.client ? 'clientAuth' : '']
    .filter(Boolean)
    .join(',');
  const sans = [
    ...(spec.ips ?? []).map((ip) => `IP:${ip}`),
    ...(spec.dns ?? []).map((d) => `DNS:${d}`),
  ];
  const lines = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usages}`,
  ];
  if (sans.length) lines.push(`subjectAltName=${sans.join(',')}`);
  await writeFile(ext, lines.join('\n') + '\n');
  await runner.run([
    'openssl',
    'req',
    '-new',
    ...CURVE,
    '-nodes',
    '-keyout',
    key,
    '-out',
    csr,
    '-subj',
    spec.subject,
  ]);
  await runner.run([
    'openssl',
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    join(dir, 'ca.crt'),
    '-CAkey',
    join(dir, 'ca.key'),
    '-CAcreateserial',
    '-days',
    '365',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    join(dir, `${spec.name}.crt`),
  ]);
  await chmod(key, 0o600);
}

export async function createLabPki(
  runner: Runner,
  dir: string,
  /** Where the apiserver listens (the underlay gateway of each family the lab has). */
  apiserverIPs: readonly string[],
): Promise<LabPki> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await runner.run([
    'openssl',
    'req',
    '-x509',
    '-new',
    ...CURVE,
    '-nodes',
    '-keyout',
    join(dir, 'ca.key'),
    '-out',
    join(dir, 'ca.crt'),
    '-days',
    '3650',
    '-sha256',
    '-subj',
    '/CN=wiremesh-lab-ca',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await issue(runner, dir, {
    name: 'apiserver',
    subject: '/CN=kube-apiserver',
    server: true,
    client: false,
    // The `kubernetes` Service's address is the first of the service range.
    ips: [...apiserverIPs, '127.0.0.1', '::1', '100.96.0.1', '2001:db8:96::1'],
    dns: [
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      'kubernetes.default.svc.cluster.local',
      'localhost',
    ],
  });
  await issue(runner, dir, {
    name: 'etcd',
    subject: '/CN=etcd',
    server: true,
    client: true,
    ips: ['127.0.0.1'],
    dns: ['localhost'],
  });
  await issue(runner, dir, {
    name: 'apiserver-etcd-client',
    subject: '/CN=kube-apiserver-etcd-client',
    server: false,
    client: true,
  });
  await issue(runner, dir, {
    name: 'admin',
    subject: '/O=system:masters/CN=wiremesh-lab-admin',
    server: false,
    client: true,
  });
  await runner.run([
    'openssl',
    'ecparam',
    '-name',
    'prime256v1',
    '-genkey',
    '-noout',
    '-out',
    join(dir, 'sa.key'),
  ]);
  await runner.run([
    'openssl',
    'ec',
    '-in',
    join(dir, 'sa.key'),
    '-pubout',
    '-out',
    join(dir, 'sa.pub'),
  ]);
  await chmod(join(dir, 'sa.key'), 0o600);
  return labPki(dir);
}

export function labPki(dir: string): LabPki {
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    apiserverCert: p('apiserver.crt'),
    apiserverKey: p('apiserver.key'),
    etcdCert: p('etcd.crt'),
    etcdKey: p('etcd.key'),
    apiserverEtcdClientCert: p('apiserver-etcd-client.crt'),
    apiserverEtcdClientKey: p('apiserver-etcd-client.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    serviceAccountKey: p('sa.key'),
    serviceAccountPub: p('sa.pub'),
  };
}

/** A kubeconfig with embedded credentials: a client certificate or a bearer token. */
export async function kubeconfigYaml(
  server: string,
  caCertPath: string,
  user: { name: string; certPath: string; keyPath: string } | { name: string; token: string },
): Promise<string> {
  const b64 = async (f: string) => (await readFile(f)).toString('base64');
  const userLines =
    'token' in user
      ? [`    token: ${user.token}`]
      : [
          `    client-certificate-data: ${await b64(user.certPath)}`,
          `    client-key-data: ${await b64(user.keyPath)}`,
        ];
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: wiremesh-lab',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${await b64(caCertPath)}`,
    'users:',
    `- name: ${user.name}`,
    '  user:',
    ...userLines,
    'contexts:',
    '- name: wiremesh-lab',
    '  context:',
    '    cluster: wiremesh-lab',
    `    user: ${user.name}`,
    'current-context: wiremesh-lab',
    '',
  ].join('\n');
}
