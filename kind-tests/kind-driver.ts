// A kind (or any kubeadm) cluster as a ClusterDriver, through kubectl alone: nodes
// are reached through a privileged host-network probe pod per node (a DaemonSet):
// node commands run in that pod, in the node's network namespace with the probe
// image's tools (its files are the image's; the node's are not needed). Pods are
// probe pods pinned to a node, and commands run with `kubectl exec`. A node's agent
// answers `wiremesh status -o json` in its own pod, and captures stream tcpdump's
// pcap back through `kubectl exec -i`. kind-tests/kind/run.sh creates the cluster
// and runs the suites with WIREMESH_E2E_CLUSTER=kind. The steps that need no node
// (apply, wait, list, namespaces) are the `Kubectl` class, tested against the lab's
// apiserver.
import type { Runner, RunOptions, RunResult } from '../sys/index.ts';
import { defaultRunner } from '../sys/index.ts';
import type { AgentStatus } from '../agent/index.ts';
import type { ClusterDriver, ClusterPod, ContainerPort } from './driver.ts';
import { filterAnd, startStreamCapture, type Capture } from './probes.ts';

export const E2E_NAMESPACE = 'wiremesh-e2e';
/**
 * Built and loaded by run.sh (kind-tests/kind/probe.Dockerfile): ping, curl, iperf3,
 * tcpdump, socat, wg, nft, ip, and wiremesh-prober at PROBER_PATH.
 */
export const PROBE_IMAGE = 'wiremesh-probe:e2e';
/** The agent's metrics port as the manifest sets it (metrics-address). */
const AGENT_METRICS_PORT = 9825;
export const PROBER_PATH = '/usr/local/bin/wiremesh-prober';
const NODE_PROBE = 'wiremesh-e2e-node';
/** The agent pods of deploy/daemonset.yaml. */
const AGENT_NAMESPACE = 'kube-system';
const AGENT_SELECTOR = 'app.kubernetes.io/name=wiremesh,app.kubernetes.io/component=agent';
/**
 * The cluster's own traffic between nodes, left out of underlay captures: the
 * apiserver (6443) and the kubelets (10250, which also carries the driver's own
 * kubectl exec streams, the capture's included).
 */
export const CONTROL_TRAFFIC = 'tcp port 6443 or tcp port 10250';

/** kubectl with one kubeconfig, every call through a Runner. */
export class Kubectl {
  readonly kubeconfig: string;
  readonly binary: string;
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

  /** argv that runs a command in a pod's container, stdin, stdout and stderr passed through. */
  execPrefix(namespace: string, pod: string, container?: string): string[] {
    return [
      this.binary,
      '--kubeconfig',
      this.kubeconfig,
      'exec',
      '-i',
      '-n',
      namespace,
      pod,
      ...(container ? ['-c', container] : []),
      '--',
    ];
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
    return (await this.nodes()).map((n) => n.name);
  }

  /** The nodes, sorted by name, with their InternalIP (the underlay address). */
  async nodes(): Promise<{ name: string; internalIP: string | undefined }[]> {
    const list = await this.json<{
      items: {
        metadata: { name: string };
        status?: { addresses?: { type: string; address: string }[] };
      }[];
    }>(['get', 'nodes']);
    return list.items
      .map((n) => ({
        name: n.metadata.name,
        internalIP: n.status?.addresses?.find(
          (a) => a.type === 'InternalIP' && !a.address.includes(':'),
        )?.address,
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
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

/**
 * The probe pod of a test: pinned to `node`, running `command` (by default it
 * sleeps until deleted), with `ports` as its container's ports (named ones can be
 * referred to by NetworkPolicies).
 */
export function probePod(
  node: string,
  namespace: string,
  name: string,
  labels: Record<string, string> = {},
  ports: readonly ContainerPort[] = [],
  command: readonly string[] = ['sleep', 'infinity'],
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
          command: [...command],
          ...(ports.length ? { ports: ports.map((p) => ({ ...p })) } : {}),
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
              // wireguard-go's control sockets, for `wg show` on a userspace device.
              volumeMounts: [{ name: 'wireguard', mountPath: '/run/wireguard' }],
            },
          ],
          volumes: [
            { name: 'wireguard', hostPath: { path: '/run/wireguard', type: 'DirectoryOrCreate' } },
          ],
        },
      },
    },
  };
}

export class KindDriver implements ClusterDriver {
  /** 'kind', or 'real' for the real-node lab (the same kubeadm cluster, here). */
  readonly kind: string;
  readonly kubectl: Kubectl;
  private nodes: string[] = [];
  private readonly addresses = new Map<string, string>();
  private nodeProbes = new Map<string, string>();
  private readonly created: ClusterPod[] = [];

  private constructor(kubectl: Kubectl, kind: string) {
    this.kubectl = kubectl;
    this.kind = kind;
  }

  /** Attach to a running cluster (run.sh made it and installed wiremesh); start the node probes. */
  static async open(
    kubeconfig: string,
    kubectlBinary = 'kubectl',
    runner: Runner = defaultRunner,
    kind = 'kind',
  ): Promise<KindDriver> {
    const d = new KindDriver(new Kubectl(kubeconfig, kubectlBinary, runner), kind);
    for (const n of await d.kubectl.nodes()) {
      d.nodes.push(n.name);
      if (n.internalIP) d.addresses.set(n.name, n.internalIP);
    }
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

  /** The node's probe pod (host network and PID namespaces, privileged). */
  private nodeProbe(node: string): string {
    const probe = this.nodeProbes.get(node);
    if (!probe) throw new Error(`no node probe on ${node} (nodes: ${this.nodes.join(', ')})`);
    return probe;
  }

  execInNode(node: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.kubectl.run(
      [
        'exec',
        ...(opts?.input !== undefined ? ['-i'] : []),
        '-n',
        E2E_NAMESPACE,
        this.nodeProbe(node),
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
    ports?: readonly ContainerPort[],
    command?: readonly string[],
  ): Promise<ClusterPod> {
    await this.kubectl.ensureNamespace(namespace);
    const spec = probePod(
      node,
      namespace,
      name,
      labels,
      ports,
      command?.length ? command : undefined,
    );
    await this.kubectl.apply('-', JSON.stringify(spec));
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

  underlayIP(node: string): string {
    const ip = this.addresses.get(node);
    if (!ip) throw new Error(`node ${node} has no IPv4 InternalIP`);
    return ip;
  }

  async agentStatus(node: string): Promise<AgentStatus> {
    const [pod] = (await this.kubectl.pods(AGENT_NAMESPACE, AGENT_SELECTOR)).filter(
      (p) => p.spec.nodeName === node,
    );
    if (!pod) throw new Error(`no wiremesh agent pod on ${node}`);
    const res = await this.kubectl.run([
      'exec',
      '-n',
      AGENT_NAMESPACE,
      pod.metadata.name,
      '-c',
      'agent',
      '--',
      'wiremesh',
      'status',
      '-o',
      'json',
    ]);
    return JSON.parse(res.stdout) as AgentStatus;
  }

  /** The cluster's own control traffic (kubelets, the apiserver) is left out. */
  async pauseAgent(node: string): Promise<() => Promise<void>> {
    // The agent is whoever listens on the metrics port in the node's network
    // namespace; the probe pod shares the node's network and PID namespaces.
    const res = await this.execInNode(node, ['ss', '-Hltnp', `sport = :${AGENT_METRICS_PORT}`]);
    const pid = /pid=(\d+)/.exec(res.stdout)?.[1];
    if (!pid)
      throw new Error(`nothing listens on ${node}'s port ${AGENT_METRICS_PORT}: ${res.stdout}`);
    await this.execInNode(node, ['kill', '-STOP', pid]);
    return async () => {
      await this.execInNode(node, ['kill', '-CONT', pid]);
    };
  }

  async captureUnderlay(node: string, filter = ''): Promise<Capture> {
    const link = await this.underlayLink(node);
    return this.captureInNode(node, link, filterAnd(`not (${CONTROL_TRAFFIC})`, filter));
  }

  /** The link that holds the node's InternalIP (eth0 on a kind node). */
  async underlayLink(node: string): Promise<string> {
    const ip = this.underlayIP(node);
    const addrs = JSON.parse((await this.execInNode(node, ['ip', '-j', '-4', 'addr'])).stdout) as {
      ifname: string;
      addr_info?: { local?: string }[];
    }[];
    const link = addrs.find((l) => l.addr_info?.some((a) => a.local === ip))?.ifname;
    if (!link) throw new Error(`no link on ${node} holds its InternalIP ${ip}`);
    return link;
  }

  captureInNode(node: string, iface: string, filter = ''): Promise<Capture> {
    return startStreamCapture(
      this.kubectl.execPrefix(E2E_NAMESPACE, this.nodeProbe(node)),
      iface,
      filter,
    );
  }

  proberPath(): string {
    return PROBER_PATH;
  }

  /** The cluster is run.sh's: remove only what the suites made. */
  async close(): Promise<void> {
    for (const p of [...this.created].reverse()) await this.deletePod(p.namespace, p.name);
    await this.kubectl.deleteNamespace(E2E_NAMESPACE);
  }
}
