// What a kubelet would write to the API, done by the lab: a Node object with its
// InternalIP and a Ready condition, and Pod objects bound to a node whose status
// carries the addresses the CNI plugin gave them.
import { CoreV1Api, KubeConfig, type V1Node, type V1Pod } from '@kubernetes/client-node';
import { ANNOTATION_PUBLIC_KEY, ANNOTATION_ENDPOINT } from '../agent/annotations.ts';

export function kubeClient(kubeconfigPath: string): CoreV1Api {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return kc.makeApiClient(CoreV1Api);
}

/** HTTP status of a client-node error, if it is one. */
export function apiStatus(e: unknown): number | undefined {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

export async function registerNode(
  core: CoreV1Api,
  name: string,
  /** One InternalIP, or several (a dual-stack node: the IPv4 one first). */
  internalIP: string | readonly string[],
): Promise<void> {
  const now = new Date();
  const body: V1Node = {
    metadata: {
      name,
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'wiremesh.io/lab': 'true',
      },
    },
    spec: {},
  };
  try {
    await core.createNode({ body });
  } catch (e) {
    if (apiStatus(e) !== 409) throw e;
  }
  const node = await core.readNode({ name });
  node.status = {
    addresses: [
      ...(typeof internalIP === 'string' ? [internalIP] : internalIP).map((address) => ({
        type: 'InternalIP',
        address,
      })),
      { type: 'Hostname', address: name },
    ],
    conditions: [
      {
        type: 'Ready',
        status: 'True',
        reason: 'KubeletReady',
        message: 'wiremesh lab node is ready',
        lastHeartbeatTime: now,
        lastTransitionTime: now,
      },
    ],
    nodeInfo: {
      architecture: 'amd64',
      bootID: '',
      containerRuntimeVersion: 'wiremesh-lab://0',
      kernelVersion: '',
      kubeProxyVersion: '',
      kubeletVersion: 'wiremesh-lab',
      machineID: '',
      operatingSystem: 'linux',
      osImage: 'wiremesh lab',
      systemUUID: '',
    },
  };
  await core.replaceNodeStatus({ name, body: node });
}

/**
 * A Node object as a wiremesh agent would have annotated it, with no agent behind it:
 * the simulated nodes of the benchmarks and the forged ones of the tests.
 */
export function annotatedNode(
  name: string,
  publicKey: string,
  endpoint: string,
  internalIP?: string,
): V1Node {
  return {
    metadata: {
      name,
      annotations: { [ANNOTATION_PUBLIC_KEY]: publicKey, [ANNOTATION_ENDPOINT]: endpoint },
    },
    ...(internalIP ? { status: { addresses: [{ type: 'InternalIP', address: internalIP }] } } : {}),
  };
}

export async function ensureServiceAccount(
  core: CoreV1Api,
  namespace: string,
  name: string,
): Promise<void> {
  try {
    await core.createNamespacedServiceAccount({
      namespace,
      body: { metadata: { name, namespace } },
    });
  } catch (e) {
    if (apiStatus(e) !== 409) throw e;
  }
}

export async function ensureNamespace(
  core: CoreV1Api,
  name: string,
  labels: Record<string, string> = {},
): Promise<void> {
  try {
    await core.createNamespace({ body: { metadata: { name, labels } } });
  } catch (e) {
    if (apiStatus(e) !== 409) throw e;
  }
  await ensureServiceAccount(core, name, 'default');
}

export interface PodSpecLite {
  namespace: string;
  name: string;
  nodeName: string;
  hostIP: string;
  ips: string[];
  labels?: Record<string, string>;
  /** Named container ports, as network policies may refer to them. */
  ports?: { name?: string; containerPort: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }[];
}

/** Create the Pod bound to its node, then write its status as the kubelet would. */
export async function registerPod(core: CoreV1Api, p: PodSpecLite): Promise<void> {
  const body: V1Pod = {
    metadata: { name: p.name, namespace: p.namespace, labels: p.labels ?? {} },
    spec: {
      nodeName: p.nodeName,
      automountServiceAccountToken: false,
      containers: [{ name: 'probe', image: 'wiremesh.io/lab-probe:none', ports: p.ports ?? [] }],
    },
  };
  try {
    await core.createNamespacedPod({ namespace: p.namespace, body });
  } catch (e) {
    if (apiStatus(e) !== 409) throw e;
  }
  const pod = await core.readNamespacedPod({ namespace: p.namespace, name: p.name });
  const now = new Date();
  pod.status = {
    phase: 'Running',
    hostIP: p.hostIP,
    hostIPs: [{ ip: p.hostIP }],
    podIP: p.ips[0],
    podIPs: p.ips.map((ip) => ({ ip })),
    startTime: now,
    conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: now }],
  };
  await core.replaceNamespacedPodStatus({ namespace: p.namespace, name: p.name, body: pod });
}

export async function deletePod(core: CoreV1Api, namespace: string, name: string): Promise<void> {
  try {
    await core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 });
  } catch (e) {
    if (apiStatus(e) !== 404) throw e;
  }
}
