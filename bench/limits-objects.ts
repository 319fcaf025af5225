// k8s-limits' simulated objects: Nodes as their kubelets would have registered them,
// a kubelet's Pod status, and the addresses they take.
import type { V1Node } from '@kubernetes/client-node';
import { generateKeyPair } from '../crypto/keys.ts';
import { ANNOTATION_ENDPOINT, ANNOTATION_PUBLIC_KEY } from '../agent/annotations.ts';

/** The label of the simulated nodes (their pool's nodeSelector). */
export const SIM_LABEL = 'wiremesh-bench/simulated';
/** 100.96.0.0/12: one /26 per simulated node. */
export const SIM_BASE = (100 << 24) | (96 << 16);

export const ipv4 = (v: number) => [24, 16, 8, 0].map((s) => (v >>> s) & 255).join('.');

/** A simulated node as its kubelet would have registered it (status included). */
export function simulatedNode(i: number): V1Node {
  const ip = `198.19.${i >> 8}.${i & 255}`;
  return {
    metadata: {
      name: `limits-sim-${i}`,
      labels: {
        [SIM_LABEL]: 'true',
        'kubernetes.io/hostname': `limits-sim-${i}`,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        'topology.kubernetes.io/zone': `zone-${i % 3}`,
        'node.kubernetes.io/instance-type': 'm5.xlarge',
      },
      annotations: {
        [ANNOTATION_PUBLIC_KEY]: generateKeyPair().publicKey,
        [ANNOTATION_ENDPOINT]: `${ip}:51825`,
        'kubeadm.alpha.kubernetes.io/cri-socket': 'unix:///run/containerd/containerd.sock',
        'node.alpha.kubernetes.io/ttl': '0',
        'volumes.kubernetes.io/controller-managed-attach-detach': 'true',
      },
    },
    spec: { podCIDR: `10.${(i >> 8) & 255}.${i & 255}.0/24`, providerID: `sim://${i}` },
    status: {
      addresses: [
        { type: 'InternalIP', address: ip },
        { type: 'Hostname', address: `limits-sim-${i}` },
      ],
      capacity: { cpu: '4', memory: '16Gi', pods: '110', 'ephemeral-storage': '100Gi' },
      allocatable: { cpu: '3900m', memory: '15Gi', pods: '110', 'ephemeral-storage': '90Gi' },
      conditions: ['MemoryPressure', 'DiskPressure', 'PIDPressure', 'Ready'].map((type) => ({
        type,
        status: type === 'Ready' ? 'True' : 'False',
        lastHeartbeatTime: new Date(),
        lastTransitionTime: new Date(),
        reason: type === 'Ready' ? 'KubeletReady' : `KubeletHasNo${type}`,
        message: type === 'Ready' ? 'kubelet is posting ready status' : `kubelet has no ${type}`,
      })),
      nodeInfo: {
        architecture: 'amd64',
        bootID: `boot-${i}`,
        containerRuntimeVersion: 'containerd://1.6.20',
        kernelVersion: '6.1.0-28-amd64',
        kubeProxyVersion: 'v1.33.13',
        kubeletVersion: 'v1.33.13',
        machineID: `machine-${i}`,
        operatingSystem: 'linux',
        osImage: 'Debian GNU/Linux 12 (bookworm)',
        systemUUID: `uuid-${i}`,
      },
      images: Array.from({ length: 30 }, (_, k) => ({
        names: [
          `registry.example/team-${k % 7}/app-${k}@sha256:${k.toString(16).padStart(64, '0')}`,
          `registry.example/team-${k % 7}/app-${k}:v1.${k}`,
        ],
        sizeBytes: 50_000_000 + k * 1_000_003,
      })),
    },
  };
}

/** A kubelet's Pod status for a pod on `node` at `ip`. */
export function podStatus(ip: string, hostIP: string) {
  const now = new Date().toISOString();
  return {
    status: {
      phase: 'Running',
      hostIP,
      hostIPs: [{ ip: hostIP }],
      podIP: ip,
      podIPs: [{ ip }],
      startTime: now,
      qosClass: 'Burstable',
      conditions: [
        'PodReadyToStartContainers',
        'Initialized',
        'Ready',
        'ContainersReady',
        'PodScheduled',
      ].map((type) => ({ type, status: 'True', lastTransitionTime: now })),
      containerStatuses: [
        {
          name: 'app',
          ready: true,
          started: true,
          restartCount: 0,
          image: 'registry.example/app:v1',
          imageID: `registry.example/app@sha256:${'a'.repeat(64)}`,
          containerID: `containerd://${'b'.repeat(64)}`,
          state: { running: { startedAt: now } },
        },
      ],
    },
  };
}
