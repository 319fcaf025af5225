// Applying the project's manifests (deploy/*.yaml) to a lab cluster, and minting
// the agent's ServiceAccount token, so lab agents run with exactly the RBAC a real
// installation grants.
import { readFile, writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  loadAllYaml,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { apiStatus } from './kube.ts';

export const DEPLOY_DIR = new URL('../deploy/', import.meta.url).pathname;

export async function applyManifestFile(
  kubeconfig: string,
  path: string,
): Promise<KubernetesObject[]> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const client = KubernetesObjectApi.makeApiClient(kc);
  // client-node's own YAML loader: parsing to plain objects and letting the typed
  // serializer map them drops CRD schema fields (default, enum, x-kubernetes-validations).
  const docs = loadAllYaml(await readFile(path, 'utf8')) as (KubernetesObject | null)[];
  const applied: KubernetesObject[] = [];
  for (const obj of docs) {
    if (!obj) continue;
    try {
      applied.push(await client.create(obj));
    } catch (e) {
      if (apiStatus(e) !== 409) {
        throw new Error(
          `applying ${obj.kind}/${obj.metadata?.name} from ${path}: ${(e as Error).message}`,
          { cause: e },
        );
      }
      applied.push(
        await client.replace({
          ...obj,
          metadata: {
            ...obj.metadata,
            resourceVersion: (await client.read(obj as never)).metadata?.resourceVersion,
          },
        }),
      );
    }
  }
  return applied;
}

/** A bound token for a ServiceAccount, as the kubelet would project it. */
export async function serviceAccountToken(
  core: CoreV1Api,
  namespace: string,
  name: string,
  seconds = 48 * 3600,
): Promise<string> {
  const res = await core.createNamespacedServiceAccountToken({
    namespace,
    name,
    body: { spec: { audiences: [], expirationSeconds: seconds } },
  });
  const token = res.status?.token;
  if (!token) throw new Error(`no token issued for ${namespace}/${name}`);
  return token;
}

/** Wait until a custom resource is served, e.g. after creating its CRD. */
export async function waitForResource(
  kubeconfig: string,
  resource: { group: string; version: string; plural: string },
  timeoutMs = 30_000,
): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const objects = kc.makeApiClient(CustomObjectsApi);
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      await objects.listClusterCustomObject({ ...resource, limit: 1 });
      return;
    } catch (e) {
      last = (e as Error).message.slice(0, 200);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `${resource.plural}.${resource.group} not served after ${timeoutMs} ms (${last})`,
  );
}

/**
 * Write a ConfigMap's data into `dir`, one file per key, as the kubelet mounts a
 * ConfigMap volume: lab agents read the manifest's settings the way the DaemonSet's do.
 */
export async function writeConfigMapDir(
  core: CoreV1Api,
  namespace: string,
  name: string,
  dir: string,
): Promise<string> {
  const cm = await core.readNamespacedConfigMap({ namespace, name });
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const [key, value] of Object.entries(cm.data ?? {})) {
    if (!/^[-._a-zA-Z0-9]+$/.test(key) || key.startsWith('.'))
      throw new Error(`ConfigMap ${namespace}/${name} has a key that is not a file name: '${key}'`);
    await writeFile(join(dir, key), value);
  }
  return dir;
}
