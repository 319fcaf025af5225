// A kind (or any kubeadm) cluster as a ClusterDriver, through kubectl alone: nodes
// are reached through a privileged host-network probe pod per node (a DaemonSet,
// `nsenter -t 1` into the host's namespaces), pods are probe pods pinned to a node,
// and commands run with `kubectl exec`. kind-tests/kind/run.sh creates the cluster and
// runs the suites with WIREMESH_E2E_CLUSTER=kind. The steps that need no node (apply,
// wait, list, namespaces) are the `Kubectl` class, tested against the lab's apiserver.
import type { Runner, RunOptions, RunResult } from '../sys/index.ts';
import { defaultRunner } from '../sys/index.ts';
import type { ClusterDriver, ClusterPod } from './driver.ts';

export const E2E_NAMESPACE = 'wiremesh-e2e';
/** Built and loaded by run.sh (kind-tests/kind/probe.Dockerfile): ping, curl, iperf3, tcpdump, nsenter. */
export const PROBE_IMAGE = 'wiremesh-probe:e2e';
const NODE_PROBE = 'wiremesh-e2e-node';

/** kubectl with one kubeconfig, every call through a Runner. */
export class Kubectl {
  readonly kubeconfig: string;
  private readonly binary: string;
  private readonly runner: Runner;

  constructor(kubeconfig: string, binary = 'kubectl', runner: Runner = defaultRunner) {
    this.kubeconfig = kubeconfig;
    this.binary = binary;
    this.runner = runner;
  }

  run(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.runner.run([this.binary, '--kubeconfig', this.kubeconfig, ...args], {
      timeoutMs: 120_000,
      ...opts,
    });
  }

  async json<T>(args: readonly string[]): Promise<T> {
    return JSON.parse((await this.run([...args, '-o', 'json'])).stdout) as T;
  }

  /** `kubectl apply -f FILE` (or '-' with `input`); returns kubectl's lines. */
  async apply(file: string, input?: string): Promise<string[]> {
    const res = await this.run(['apply', '-f', file], input === undefined ? {} : { input });
    return res.stdout.split('\n').filter(Boolean);
  }

  /** `kubectl wait --for=...`: e.g. 'condition=established' on 'crd/ippools.wiremesh.io'. */
  async wait(
    what: string[],
    condition: string,
    opts: { namespace?: string; timeoutSeconds?: number } = {},
  ): Promise<void> {
    await this.run(
      [
        'wait',
        ...(opts.namespace ? ['-n', opts.namespace] : []),
        `--for=${condition}`,
        `--timeout=${opts.timeoutSeconds ?? 60}s`,
        ...what,
      ],
      { timeoutMs: ((opts.timeoutSeconds ?? 60) + 30) * 1000 },
    );
  }

  async rolloutStatus(kind: string, name: string, namespace: string, seconds = 300) {
    await this.run(
      ['-n', namespace, 'rollout', 'status', `${kind}/${name}`, `--timeout=${seconds}s`],
      {
        timeoutMs: (seconds + 30) * 1000,
      },
    );
  }

  async nodeNames(): Promise<string[]> {
    const list = await this.json<{ items: { metadata: { name: string } }[] }>(['get', 'nodes']);
    return list.items.map((n) => n.metadata.name).sort();
  }

  async pods(namespace: string, selector?: string): Promise<KubePod[]> {
    const args = ['get', 'pods', '-n', namespace, ...(selector ? ['-l', selector] : [])];
    return (await this.json<{ items: KubePod[] }>(args)).items;
  }

  async ensureNamespace(name: string): Promise<void> {
    const res = await this.run(['create', 'namespace', name], { allowFailure: true });
    if (res.code !== 0 && !/AlreadyExists/.test(res.stderr))
      throw new Error(`kubectl create namespace ${name}: ${res.stderr.trim()}`);
  }

  async deleteNamespace(name: string, wait = true): Promise<void> {
    await this.run(['delete', 'namespace', name, '--ignore-not-found', `--wait=${wait}`], {
      timeoutMs: 300_000,
    });
  }
}

export interface KubePod {
  metadata: { name: string; namespace: string; labels?: Record<string, string> };
  spec: { nodeName?: string };
  status: { phase?: string; podIPs?: { ip: string }[] };
}

/** The probe pod of a test: pinned to `node`, a shell that sleeps until deleted. */
export function probePod(
  node: string,
  namespace: string,
  name: string,
  labels: Record<string, string> = {},
): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      labels: { 'app.kubernetes.io/part-of': 'wiremesh-e2e', ...labels },
    },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 0,
      tolerations: [{ operator: 'Exists' }],
      containers: [
        {
          name: 'probe',
          image: PROBE_IMAGE,
          imagePullPolicy: 'IfNotPresent',
          command: ['sleep', 'infinity'],
          securityContext: { capabilities: { add: ['NET_RAW', 'NET_ADMIN'] } },
        },
      ],
    },
  };
}

/** A privileged host-network pod on every node, to run commands in the node's namespaces. */
export function nodeProbeDaemonSet(namespace: string): object {
  const labels = { app: NODE_PROBE };
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: NODE_PROBE, namespace },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          hostNetwork: true,
          hostPID: true,
          terminationGracePeriodSeconds: 0,
          tolerations: [{ operator: 'Exists' }],
          containers: [
            {
              name: 'node',
              image: PROBE_IMAGE,
              imagePullPolicy: 'IfNotPresent',
              command: ['sleep', 'infinity'],
              securityContext: { privileged: true },
            },
          ],
        },
      },
    },
  };
}

export class KindDriver implements ClusterDriver {
  readonly kind = 'kind';
  readonly kubectl: Kubectl;
  private nodes: string[] = [];
  private nodeProbes = new Map<string, string>();
  private readonly created: ClusterPod[] = [];

  private constructor(kubectl: Kubectl) {
    this.kubectl = kubectl;
  }

  /** Attach to a running cluster (run.sh made it and installed wiremesh); start the node probes. */
  static async open(kubeconfig: string, kubectlBinary = 'kubectl'): Promise<KindDriver> {
    const d = new KindDriver(new Kubectl(kubeconfig, kubectlBinary));
    d.nodes = await d.kubectl.nodeNames();
    await d.kubectl.ensureNamespace(E2E_NAMESPACE);
    await d.kubectl.apply('-', JSON.stringify(nodeProbeDaemonSet(E2E_NAMESPACE)));
    await d.kubectl.rolloutStatus('daemonset', NODE_PROBE, E2E_NAMESPACE, 180);
    for (const p of await d.kubectl.pods(E2E_NAMESPACE, `app=${NODE_PROBE}`))
      if (p.spec.nodeName) d.nodeProbes.set(p.spec.nodeName, p.metadata.name);
    return d;
  }

  get kubeconfig(): string {
    return this.kubectl.kubeconfig;
  }

  nodeNames(): string[] {
    return [...this.nodes];
  }

  pods(): ClusterPod[] {
    return this.created.map((p) => ({ ...p, ips: [...p.ips] }));
  }

  execInNode(node: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    const probe = this.nodeProbes.get(node);
    if (!probe) throw new Error(`no node probe on ${node} (nodes: ${this.nodes.join(', ')})`);
    // PID 1 of the host (hostPID): its mount, UTS, IPC and network namespaces are the node's.
    return this.kubectl.run(
      [
        'exec',
        ...(opts?.input !== undefined ? ['-i'] : []),
        '-n',
        E2E_NAMESPACE,
        probe,
        '--',
        'nsenter',
        '-t',
        '1',
        '-m',
        '-u',
        '-i',
        '-n',
        '--',
        ...argv,
      ],
      opts,
    );
  }

  execInPod(
    namespace: string,
    pod: string,
    argv: readonly string[],
    opts?: RunOptions,
  ): Promise<RunResult> {
    return this.kubectl.run(
      ['exec', ...(opts?.input !== undefined ? ['-i'] : []), '-n', namespace, pod, '--', ...argv],
      opts,
    );
  }

  async createPod(
    node: string,
    namespace: string,
    name: string,
    labels?: Record<string, string>,
  ): Promise<ClusterPod> {
    await this.kubectl.ensureNamespace(namespace);
    await this.kubectl.apply('-', JSON.stringify(probePod(node, namespace, name, labels)));
    await this.kubectl.wait([`pod/${name}`], 'condition=Ready', { namespace, timeoutSeconds: 120 });
    const [pod] = (await this.kubectl.pods(namespace)).filter((p) => p.metadata.name === name);
    const ips = (pod?.status.podIPs ?? []).map((i) => i.ip);
    if (!ips.length) throw new Error(`pod ${namespace}/${name} is Ready without an address`);
    const p: ClusterPod = { namespace, name, node, ips };
    this.created.push(p);
    return p;
  }

  async deletePod(namespace: string, name: string): Promise<void> {
    await this.kubectl.run([
      'delete',
      'pod',
      '-n',
      namespace,
      name,
      '--ignore-not-found',
      '--wait=true',
    ]);
    const i = this.created.findIndex((p) => p.namespace === namespace && p.name === name);
    if (i >= 0) this.created.splice(i, 1);
  }

  /** The cluster is run.sh's: remove only what the suites made. */
  async close(): Promise<void> {
    for (const p of [...this.created].reverse()) await this.deletePod(p.namespace, p.name);
    await this.kubectl.deleteNamespace(E2E_NAMESPACE);
  }
}
