// Applying the project's manifests (deploy/*.yaml) to a lab cluster, and minting
// the agent's ServiceAccount token, so lab agents run with exactly the RBAC a real
// installation grants.
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import {
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
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
  const docs = parseAllDocuments(await readFile(path, 'utf8'));
  const applied: KubernetesObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length) throw new Error(`${path}: ${doc.errors[0]?.message ?? 'YAML error'}`);
    const obj = doc.toJS() as KubernetesObject | null;
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
