// The cluster-driver interface the end-to-end suites are written against, so the
// same suites run on a lab cluster here and on a kind cluster where Docker exists.
// A driver knows how to run a command on a node or in a pod, how to add and remove
// pods, where a node's underlay is and how to capture it, and how to ask a node's
// agent for its status; everything else a suite checks goes through the Kubernetes
// API. What only the lab can do (stop an agent process, re-register a node) stays
// in the lab-only suites, which use LabDriver directly.
import type { AgentStatus } from '../agent/index.ts';
import type { RunOptions, RunResult } from '../sys/index.ts';
import type { Capture } from './probes.ts';

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
  /**
   * Run a command in a node's network namespace, with the test tools (ping, socat,
   * iperf3, tcpdump, wg, nft, ip, wiremesh-prober) on PATH or at `proberPath()`.
   */
  execInNode(node: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  execInPod(
    namespace: string,
    pod: string,
    argv: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult>;
  /**
   * Add a pod on `node`. `command` is the pod's own long-running process (kind: the
   * container's command; lab: a process in the pod's network namespace), which lives
   * as long as the pod; without it the pod only sleeps.
   */
  createPod(
    node: string,
    namespace: string,
    name: string,
    labels?: Record<string, string>,
    ports?: readonly ContainerPort[],
    command?: readonly string[],
  ): Promise<ClusterPod>;
  deletePod(namespace: string, name: string): Promise<void>;
  /** The node's address on the underlay (its InternalIP), where WireGuard's UDP goes. */
  underlayIP(node: string): string;
  /** The node agent's status (what `wiremesh status -o json` prints on the node). */
  agentStatus(node: string): Promise<AgentStatus>;
  /**
   * Freeze the node's agent (SIGSTOP): it answers nothing, its dataplane stays, as
   * with a hung agent. Returns what thaws it (SIGCONT). Kubernetes restarts a frozen
   * agent once its liveness probe has failed for a minute.
   */
  pauseAgent(node: string): Promise<() => Promise<void>>;
  /**
   * Capture the packets crossing the node's underlay link that match `filter`
   * (tcpdump syntax), leaving out the cluster's own control traffic (the lab's
   * apiserver host; kind's apiserver and kubelet ports, which carry the driver's
   * kubectl exec streams): what remains is what the mesh is responsible for.
   */
  captureUnderlay(node: string, filter?: string): Promise<Capture>;
  /** Capture an interface inside the node's network namespace (e.g. wiremesh.wg). */
  captureInNode(node: string, iface: string, filter?: string): Promise<Capture>;
  /** Where wiremesh-prober is for the commands this driver runs in pods and on nodes. */
  proberPath(): string;
  /** Remove the cluster if this driver created it. */
  close(): Promise<void>;
}
