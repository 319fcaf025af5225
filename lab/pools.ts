// An IPPool and a namespace whose pods take it (the `wiremesh.io/ippool` annotation),
// as the suites and benchmarks that exercise several pools set them up.
import type { KubeClient } from '../kube/index.ts';

export const IPPOOL_PATH = '/apis/wiremesh.io/v1alpha1/ippools';

export async function createPoolNamespace(
  kube: KubeClient,
  /** The pool's name and its spec's fields. */
  pool: { name: string },
): Promise<void> {
  const { name, ...spec } = pool;
  await kube.request('POST', IPPOOL_PATH, {
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'IPPool',
    metadata: { name },
    spec,
  });
  await kube.request('POST', '/api/v1/namespaces', {
    metadata: { name, annotations: { 'wiremesh.io/ippool': name } },
  });
}

/** Changes fields of an IPPool's spec at runtime (a merge patch). */
export async function patchPoolSpec(
  kube: KubeClient,
  pool: string,
  spec: Record<string, unknown>,
): Promise<void> {
  await kube.request(
    'PATCH',
    `${IPPOOL_PATH}/${pool}`,
    { spec },
    { contentType: 'application/merge-patch+json' },
  );
}
