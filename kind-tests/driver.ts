// The cluster-driver interface the end-to-end suites are written against, so the
// same suites run on a lab cluster here and on a kind cluster where Docker exists.
// A driver knows how to run a command on a node or in a pod and how to add and
// remove pods; everything else a suite checks goes through the Kubernetes API.
import type { RunOptions, RunResult } from '../sys/index.ts';

export interface ClusterPod {
  namespace: string;
  name: string;
  node: string;
  ips: string[];
}

/** A container port of a pod; a named one can be referred to by a NetworkPolicy. */
export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

export interface ClusterDriver {
  /** 'lab' or 'kind'. */
  readonly kind: string;
  readonly kubeconfig: string;
  nodeNames(): string[];
  pods(): ClusterPod[];
  execInNode(node: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  execInPod(
    namespace: string,
    pod: string,
    argv: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult>;
  createPod(
    node: string,
    namespace: string,
    name: string,
    labels?: Record<string, string>,
    ports?: readonly ContainerPort[],
  ): Promise<ClusterPod>;
  deletePod(namespace: string, name: string): Promise<void>;
  /** Remove the cluster if this driver created it. */
  close(): Promise<void>;
}
