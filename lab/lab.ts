// The lab engine: a real Kubernetes control plane and N node namespaces on one
// machine, with pods wired by a real CNI client. `Lab.up` builds it; `Lab.load`
// attaches to a running one through its state file; `down` removes every
// namespace, link, mount, file and process it made, also after a failed `up`.
import { mkdir, writeFile, readFile, rm, readdir, copyFile, chmod, rename } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  defaultRunner,
  requireRoot,
  toolPath,
  requireProgram,
  systemEnv,
  type Runner,
  type RunResult,
  type RunOptions,
} from '../sys/index.ts';
import {
  chooseLabIndex,
  planLab,
  validateLabName,
  validatePodsPerNode,
  podName,
  podNetnsName,
  nodePrivateDir,
  labOwnsNetns,
  labOwnsLink,
  NODE_PRIVATE_DIRS,
  LAB_ROOT_RUN,
  LAB_POOL_V6,
  LAB_NODE_AS,
  type IpFamily,
  type LabPlan,
  type NodePlan,
  type RouterPlan,
} from './plan.ts';
import { createLabPki, kubeconfigYaml, labPki } from './pki.ts';
import {
  applyManifestFile,
  serviceAccountToken,
  writeConfigMapDir,
  waitForResource,
  DEPLOY_DIR,
} from './manifests.ts';

const CLI_MAIN = new URL('../cli/main.ts', import.meta.url).pathname;
import { apiserverURL, startEtcd, startApiserver, tail } from './controlplane.ts';
import { startDaemon, stopDaemon, killPids, isAlive, type ProcRecord } from './procs.ts';
import {
  ensurePrivateRunRoot,
  createBridge,
  createNodeNamespaces,
  nodeExecPrefix,
  podExecPrefix,
  netnsPids,
  deleteNetns,
  releaseMountNamespace,
  listNetns,
  listLinks,
} from './nodes.ts';
import { withLabLock } from './lock.ts';
import {
  usedLabIndexes,
  recordCreatedDirs,
  releaseSharedIfLast,
  labExists,
  LAB_STATE_FILES,
} from './registry.ts';
import { LabPhases, type ProgressFn } from './progress.ts';
import { disconnectLab } from './connect.ts';
import { startRouter } from './router.ts';
import { kubeClient as apiClient } from '../kube/index.ts';
import type { AgentStatus } from '../agent/index.ts';
import {
  kubeClient,
  registerNode,
  registerPod,
  ensureNamespace,
  deletePod,
  type PodSpecLite,
} from './kube.ts';
import { bridgeConflist, type CniChoice, cniNetworkName, parseCniResultIPs } from './cni.ts';

export interface LabPod {
  namespace: string;
  name: string;
  node: string;
  netns: string;
  ips: string[];
}

export interface LabState {
  version: 1;
  name: string;
  index: number;
  nodeCount: number;
  cni: CniChoice;
  /** Whether the lab runs the wiremesh agent on every node. */
  agents: boolean;
  /** Underlay and pool families (absent in older state files: ipv4). */
  ipFamily?: IpFamily;
  /** 2: two IPv4 subnets joined by a BGP router (absent: 1). */
  subnets?: number;
  kubeconfig: string;
  apiserverURL: string;
  etcdURL: string;
  procs: ProcRecord[];
  pods: LabPod[];
  createdAt: string;
}

export interface UpOptions {
  name?: string;
  nodes?: number;
  podsPerNode?: number;
  cni?: CniChoice;
  /** Run the wiremesh agent on every node (default true). */
  agents?: boolean;
  /**
   * CIDR of the default pod pool (default deploy/default-pool.yaml's 100.64.0.0/16):
   * two labs joined as remote clusters need pools that do not overlap.
   */
  pool?: string;
  /**
   * ipv4 (the default), dual (an IPv6 underlay beside the IPv4 one, nodes with both
   * InternalIPs, an IPv6 pool LAB_POOL_V6 beside the IPv4 one) or ipv6 (IPv6 InternalIPs
   * and pool only; the apiserver listens on the IPv6 underlay address).
   */
  ipFamily?: IpFamily;
  /**
   * 2: the nodes on two IPv4 subnets joined by a router namespace with its own BGP
   * speaker (a top-of-rack router); the agents speak BGP (setting bgp-as
   * LAB_NODE_AS) and peer with it through one BGPPeer per subnet.
   */
  subnets?: number;
  runner?: Runner;
  /** Called with a line of progress for each long phase: its start, notes, its end (timed). */
  progress?: ProgressFn;
  /** Leave a half-built lab in place for debugging instead of removing it. */
  keepOnFailure?: boolean;
}

export class Lab {
  readonly plan: LabPlan;
  state: LabState;
  private readonly runner: Runner;

  private constructor(plan: LabPlan, state: LabState, runner: Runner) {
    this.plan = plan;
    this.state = state;
    this.runner = runner;
  }

  static stateFile(name: string): string {
    return LAB_STATE_FILES.process(name);
  }

  /** Names of the labs that have a state file on this machine. */
  static async list(): Promise<string[]> {
    const entries = await readdir(LAB_ROOT_RUN).catch(() => [] as string[]);
    return entries.filter((e) => existsSync(Lab.stateFile(e))).sort();
  }

  static async load(name = 'lab', runner: Runner = defaultRunner): Promise<Lab> {
    validateLabName(name);
    let raw: string;
    try {
      raw = await readFile(Lab.stateFile(name), 'utf8');
    } catch {
      throw new Error(
        `no lab named '${name}' is running (no ${Lab.stateFile(name)}); start one with 'wiremesh lab up --name ${name}'`,
      );
    }
    const state = JSON.parse(raw) as LabState;
    return new Lab(
      planLab(state.name, state.index, state.nodeCount, state.subnets ?? 1),
      state,
      runner,
    );
  }

  static async up(options: UpOptions = {}): Promise<Lab> {
    const name = validateLabName(options.name ?? 'lab');
    const nodeCount = options.nodes ?? 3;
    const podsPerNode = validatePodsPerNode(options.podsPerNode ?? 2);
    const cni = options.cni ?? (options.agents === false ? 'bridge' : 'wiremesh');
    const runner = options.runner ?? defaultRunner;
    const progress = options.progress ?? (() => {});
    requireRoot('the lab');
    for (const [prog, pkg] of [
      ['ip', 'iproute2'],
      ['nsenter', 'util-linux'],
      ['unshare', 'util-linux'],
      ['openssl', 'openssl'],
      ['mount', 'mount'],
    ] as const) {
      await requireProgram(prog, `install the Debian package ${pkg}, or run 'make deps'`);
    }
    for (const tool of ['etcd', 'kube-apiserver', 'cnitool']) toolPath(tool);

    const lab = await withLabLock(async () => {
      if (labExists(name)) {
        throw new Error(
          `a lab named '${name}' already exists; tear it down with 'wiremesh lab down --name ${name}'`,
        );
      }
      const subnets = options.subnets ?? 1;
      if (subnets === 2 && (options.ipFamily ?? 'ipv4') !== 'ipv4')
        throw new Error('a lab of two subnets is IPv4 only');
      const plan = planLab(name, chooseLabIndex(await usedLabIndexes()), nodeCount, subnets);
      const state: LabState = {
        version: 1,
        name,
        index: plan.index,
        nodeCount,
        ...(subnets === 2 ? { subnets } : {}),
        cni,
        agents: options.agents ?? true,
        ipFamily: options.ipFamily ?? 'ipv4',
        kubeconfig: join(plan.dataDir, 'kubeconfig'),
        // An IPv6-only lab's apiserver listens on the IPv6 underlay: its nodes need no IPv4.
        apiserverURL:
          options.ipFamily === 'ipv6' ? apiserverURL(plan.gatewayIP6) : plan.apiserverURL,
        etcdURL: '',
        procs: [],
        pods: [],
        createdAt: new Date().toISOString(),
      };
      await ensurePrivateRunRoot(runner);
      await mkdir(join(plan.runDir, 'mnt'), { recursive: true });
      await mkdir(join(plan.dataDir, 'logs'), { recursive: true, mode: 0o700 });
      const l = new Lab(plan, state, runner);
      await l.save();
      return l;
    });

    try {
      await lab.build(podsPerNode, progress, options.pool);
      return lab;
    } catch (e) {
      if (!options.keepOnFailure) {
        progress(`lab ${name}: start-up failed, removing what was built`, 'done');
        await lab.down().catch(() => {});
      }
      throw e;
    }
  }

  private async build(podsPerNode: number, progress: ProgressFn, pool?: string): Promise<void> {
    const { plan, state, runner } = this;
    const logs = join(plan.dataDir, 'logs');
    const family = state.ipFamily ?? 'ipv4';
    await createBridge(
      runner,
      plan.bridge,
      `${plan.gatewayIP}/${plan.prefixLength}`,
      family === 'ipv4' ? undefined : `${plan.gatewayIP6}/64`,
    );

    const phases = new LabPhases(progress, `lab ${plan.name}`);
    phases.start(`control plane: etcd and kube-apiserver on ${state.apiserverURL}`);
    const pki = await createLabPki(
      runner,
      join(plan.dataDir, 'pki'),
      family === 'ipv4' ? [plan.gatewayIP] : [plan.gatewayIP, plan.gatewayIP6],
    );
    const record = async (proc: ProcRecord) => {
      state.procs.push(proc);
      await this.save();
    };
    const etcd = await startEtcd(pki, join(plan.dataDir, 'etcd'), logs, record);
    state.etcdURL = etcd.url;
    await startApiserver(pki, etcd.url, this.apiserverIP(), logs, record);
    await writeFile(
      state.kubeconfig,
      await kubeconfigYaml(state.apiserverURL, pki.caCert, {
        name: 'lab-admin',
        certPath: pki.adminCert,
        keyPath: pki.adminKey,
      }),
      { mode: 0o600 },
    );
    const core = kubeClient(state.kubeconfig);
    await ensureNamespace(core, 'default');
    phases.done('ready');

    await recordCreatedDirs(NODE_PRIVATE_DIRS);
    phases.start(`nodes: ${plan.nodes.length} network namespaces, registered as Nodes`);
    for (const node of plan.nodes) {
      phases.note(`node ${node.name} at ${this.internalIPs(node).join(', ')}`);
      const privateDirs: Record<string, string> = {};
      for (const dir of NODE_PRIVATE_DIRS) privateDirs[dir] = nodePrivateDir(plan, node, dir);
      await createNodeNamespaces(runner, {
        netns: node.netns,
        hostVeth: node.hostVeth,
        bridge: plan.bridge,
        // An IPv6-only node has no IPv4 underlay address: nothing it needs is IPv4.
        ...(family === 'ipv6' ? {} : { address: `${node.underlayIP}/${node.prefixLength}` }),
        ...(family === 'ipv4' ? {} : { address6: `${node.underlayIP6}/64` }),
        mountFile: this.mountFile(node),
        privateDirs,
      });
      if (node.crossSubnet) {
        const { subnet, via } = node.crossSubnet;
        await runner.run([
          'ip',
          'netns',
          'exec',
          node.netns,
          'ip',
          'route',
          'add',
          subnet,
          'via',
          via,
        ]);
      }
      await this.installCni(node);
      await registerNode(core, node.name, this.internalIPs(node));
    }
    phases.done();
    if (plan.router) {
      phases.start(
        `router: ${plan.router.netns} between the two subnets, BGP AS ${plan.router.asNumber}`,
      );
      const router = await startRouter(runner, plan, LAB_NODE_AS, logs);
      state.procs.push(router.proc);
      await this.save();
      phases.done();
    }

    if (state.agents) {
      phases.start(`agents: the wiremesh agent on ${plan.nodes.length} nodes`);
      await applyManifestFile(state.kubeconfig, join(DEPLOY_DIR, 'rbac.yaml'));
      await applyManifestFile(state.kubeconfig, join(DEPLOY_DIR, 'config.yaml'));
      await applyManifestFile(state.kubeconfig, join(DEPLOY_DIR, 'crds.yaml'));
      await applyManifestFile(state.kubeconfig, join(DEPLOY_DIR, 'multicluster-crds.yaml'));
      await applyManifestFile(state.kubeconfig, join(DEPLOY_DIR, 'multicluster-rbac.yaml'));
      await waitForResource(state.kubeconfig, {
        group: 'wiremesh.io',
        version: 'v1alpha1',
        plural: 'ipamblocks',
      });
      if (plan.router) await this.peerWithRouter(plan.router);
      if (family !== 'ipv6')
        await applyManifestFile(state.kubeconfig, await this.defaultPoolFile(pool));
      if (family !== 'ipv4') await applyManifestFile(state.kubeconfig, await this.ipv6PoolFile());
      for (const node of plan.nodes) await this.startAgent(node.name);
      await Promise.all(plan.nodes.map((n) => this.waitAgentReady(n.name)));
      phases.done('ready');
    }

    if (podsPerNode) phases.start(`pods: ${podsPerNode * plan.nodes.length} wired through cnitool`);
    for (const node of plan.nodes) {
      for (let j = 0; j < podsPerNode; j++) {
        await this.addPod(node.name, 'default', podName(node, j), { app: 'lab-probe' });
      }
    }
    phases.done();
  }

  /**
   * The agents of a lab of two subnets speak BGP: the setting bgp-as, and one
   * BGPPeer per subnet naming the router's address there (after the CRDs exist).
   */
  private async peerWithRouter(router: RouterPlan): Promise<void> {
    const kube = apiClient(this.state.kubeconfig);
    await kube.request(
      'PATCH',
      '/api/v1/namespaces/kube-system/configmaps/wiremesh-config',
      { data: { 'bgp-as': String(LAB_NODE_AS) } },
      { contentType: 'application/merge-patch+json' },
    );
    await waitForResource(this.state.kubeconfig, {
      group: 'wiremesh.io',
      version: 'v1alpha1',
      plural: 'bgppeers',
    });
    for (const [i, a] of router.addresses.entries()) {
      const address = a.split('/')[0] ?? '';
      const nodes = this.plan.nodes.filter((n) => (n.crossSubnet?.via ?? '') === address);
      if (nodes.length === 0) continue;
      await kube.request('POST', '/apis/wiremesh.io/v1alpha1/bgppeers', {
        apiVersion: 'wiremesh.io/v1alpha1',
        kind: 'BGPPeer',
        metadata: { name: `lab-router-${i === 0 ? 'lower' : 'upper'}` },
        spec: {
          peerIP: address,
          asNumber: router.asNumber,
          nodeSelector: {
            matchExpressions: [
              { key: 'kubernetes.io/hostname', operator: 'In', values: nodes.map((n) => n.name) },
            ],
          },
        },
      });
    }
  }

  /** A node's InternalIPs for its lab's families (a dual-stack node: IPv4 first). */
  internalIPs(node: NodePlan): string[] {
    const family = this.state.ipFamily ?? 'ipv4';
    if (family === 'ipv4') return [node.underlayIP];
    return family === 'dual' ? [node.underlayIP, node.underlayIP6] : [node.underlayIP6];
  }

  /** The default pool's settings for the IPv6 pool: default-ipv6, LAB_POOL_V6, /122 blocks. */
  private async ipv6PoolFile(): Promise<string> {
    const text = (await readFile(join(DEPLOY_DIR, 'default-pool.yaml'), 'utf8'))
      .replace(/^(\s*name:).*$/m, '$1 default-ipv6')
      .replace(/^(\s*cidr:).*$/m, `$1 ${LAB_POOL_V6}`)
      .replace(/^(\s*blockSize:).*$/m, '$1 122');
    const out = join(this.plan.dataDir, 'ipv6-pool.yaml');
    await writeFile(out, text);
    return out;
  }

  /** deploy/default-pool.yaml, or a copy of it with another CIDR (`--pool`). */
  private async defaultPoolFile(cidr?: string): Promise<string> {
    const file = join(DEPLOY_DIR, 'default-pool.yaml');
    if (cidr === undefined) return file;
    if (!/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(cidr))
      throw new Error(`--pool ${cidr} is not an IPv4 CIDR (e.g. 100.65.0.0/16)`);
    const text = (await readFile(file, 'utf8')).replace(/^(\s*cidr:).*$/m, `$1 ${cidr}`);
    const out = join(this.plan.dataDir, 'default-pool.yaml');
    await writeFile(out, text);
    return out;
  }

  /** Copy the chosen CNI plugin and its conflist into the node's private /opt/cni/bin and /etc/cni/net.d. */
  private async installCni(node: NodePlan): Promise<void> {
    const binDir = nodePrivateDir(this.plan, node, '/opt/cni/bin');
    const confDir = nodePrivateDir(this.plan, node, '/etc/cni/net.d');
    // The reference plugins: the bridge network of `--cni bridge`, and the meta
    // plugins that chain after wiremesh.
    for (const plugin of ['bridge', 'host-local', 'loopback', 'portmap', 'bandwidth']) {
      await copyFile(toolPath(`cni-plugins/${plugin}`), join(binDir, plugin));
      await chmod(join(binDir, plugin), 0o755);
    }
    if (this.state.cni === 'bridge') {
      await writeFile(
        join(confDir, '10-lab-bridge.conflist'),
        JSON.stringify(bridgeConflist(node.bridgePodCIDR), null, 2),
      );
      return;
    }
    if (!this.state.agents) throw new Error('--cni wiremesh needs the agents (drop --no-agents)');
    // What the DaemonSet's init container does: `wiremesh install-cni` on the node.
    await this.execInNode(node.name, [
      process.execPath,
      '--disable-warning=ExperimentalWarning',
      CLI_MAIN,
      'install-cni',
      '--relay',
      toolPath('wiremesh-cni'),
    ]);
  }

  /** The agent's kubeconfig on a node: the wiremesh-agent ServiceAccount's token, never admin. */
  private async agentKubeconfig(node: NodePlan): Promise<string> {
    const path = join(this.plan.dataDir, 'nodes', node.name, 'agent.kubeconfig');
    const core = kubeClient(this.state.kubeconfig);
    const token = await serviceAccountToken(core, 'kube-system', 'wiremesh-agent');
    await writeFile(
      path,
      await kubeconfigYaml(this.state.apiserverURL, labPki(join(this.plan.dataDir, 'pki')).caCert, {
        name: 'wiremesh-agent',
        token,
      }),
      {
        mode: 0o600,
      },
    );
    return path;
  }

  agentProcName(nodeName: string): string {
    return `agent-${this.node(nodeName).name}`;
  }

  /** Start the real agent inside a node, with the ServiceAccount's token. */
  async startAgent(nodeName: string, extraArgs: string[] = []): Promise<ProcRecord> {
    const node = this.node(nodeName);
    const kubeconfig = await this.agentKubeconfig(node);
    // The manifest's settings, as the DaemonSet mounts the wiremesh-config ConfigMap.
    const configDir = await writeConfigMapDir(
      kubeClient(this.state.kubeconfig),
      'kube-system',
      'wiremesh-config',
      join(this.plan.dataDir, 'nodes', node.name, 'config'),
    );
    return this.spawnInNode(
      node.name,
      this.agentProcName(node.name),
      [
        process.execPath,
        '--disable-warning=ExperimentalWarning',
        // A small young generation: the agent's heap is mostly long-lived caches.
        '--max-semi-space-size=1',
        CLI_MAIN,
        'agent',
        '--node-name',
        node.name,
        '--kubeconfig',
        kubeconfig,
        '--config-dir',
        configDir,
        '--wireguard-go',
        toolPath('wireguard-go'),
        '--resync',
        '10s',
        ...extraArgs,
      ],
      // As the manifest's agent container: large buffers freed back to the system.
      systemEnv({ MALLOC_MMAP_THRESHOLD_: '131072' }),
    );
  }

  /** Stop the kube-apiserver (a control-plane outage); etcd and the agents keep running. */
  async stopApiserver(): Promise<void> {
    const rec = this.state.procs.find((p) => p.name === 'kube-apiserver');
    if (!rec) return;
    await stopDaemon(rec);
    this.state.procs = this.state.procs.filter((p) => p !== rec);
    await this.save();
  }

  /** Where the apiserver listens: the IPv6 underlay gateway in an IPv6-only lab, else the IPv4 one. */
  private apiserverIP(): string {
    return this.state.ipFamily === 'ipv6' ? this.plan.gatewayIP6 : this.plan.gatewayIP;
  }

  /** Start the kube-apiserver again on the same address and etcd, and wait until it is ready. */
  async startApiserver(): Promise<void> {
    if (this.state.procs.some((p) => p.name === 'kube-apiserver' && isAlive(p))) return;
    await startApiserver(
      labPki(join(this.plan.dataDir, 'pki')),
      this.state.etcdURL,
      this.apiserverIP(),
      join(this.plan.dataDir, 'logs'),
      async (proc) => {
        this.state.procs.push(proc);
        await this.save();
      },
    );
  }

  /** Stop only the agent process (SIGTERM, or SIGKILL to simulate a crash); its wireguard-go keeps running. */
  async stopAgent(nodeName: string, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const name = this.agentProcName(nodeName);
    const rec = this.state.procs.find((p) => p.name === name);
    if (!rec) return;
    if (isAlive(rec)) {
      try {
        process.kill(rec.pid, signal);
      } catch {
        /* gone */
      }
      for (let i = 0; i < 250 && isAlive(rec); i++) await new Promise((r) => setTimeout(r, 20));
      if (isAlive(rec)) process.kill(rec.pid, 'SIGKILL');
    }
    this.state.procs = this.state.procs.filter((p) => p !== rec);
    await this.save();
  }

  /** The node agent's `/status`, read over its socket inside the node. */
  async agentStatus(nodeName: string): Promise<AgentStatus> {
    const res = await this.execInNode(nodeName, [
      'curl',
      '-sSf',
      '--max-time',
      '5',
      '--unix-socket',
      '/run/wiremesh/agent.sock',
      'http://agent/status',
    ]);
    return JSON.parse(res.stdout) as AgentStatus;
  }

  /** Wait until the node's agent answers /readyz on its socket. */
  async waitAgentReady(nodeName: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const res = await this.execInNode(
        nodeName,
        [
          'curl',
          '-sSf',
          '--max-time',
          '2',
          '--unix-socket',
          '/run/wiremesh/agent.sock',
          'http://agent/readyz',
        ],
        { allowFailure: true },
      );
      if (
        res.code === 0 &&
        res.stdout.includes('"synced":true') &&
        !res.stdout.includes('"lastError":"')
      )
        return;
      last = (res.stdout + res.stderr).trim();
      const rec = this.state.procs.find((p) => p.name === this.agentProcName(nodeName));
      if (rec && !isAlive(rec))
        throw new Error(`the agent on ${nodeName} exited:\n${tail(rec.log)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(
      `the agent on ${nodeName} is not ready after ${timeoutMs} ms (${last}):\n${this.logTail(this.agentProcName(nodeName))}`,
    );
  }

  mountFile(node: NodePlan): string {
    return join(this.plan.runDir, 'mnt', node.name);
  }

  node(name: string): NodePlan {
    const node = this.plan.nodes.find(
      (n) => n.name === name || n.name === `${this.plan.name}-${name}`,
    );
    if (!node) {
      throw new Error(
        `lab '${this.plan.name}' has no node '${name}' (nodes: ${this.plan.nodes.map((n) => n.name).join(', ')})`,
      );
    }
    return node;
  }

  pod(name: string, namespace?: string): LabPod {
    const pod = this.state.pods.find(
      (p) => p.name === name && (namespace === undefined || p.namespace === namespace),
    );
    if (!pod)
      throw new Error(
        `lab '${this.plan.name}' has no pod '${namespace ? `${namespace}/` : ''}${name}'`,
      );
    return pod;
  }

  /** Runner whose commands execute inside a node's network and mount namespaces. */
  nodeRunner(nodeName: string): Runner {
    const node = this.node(nodeName);
    const prefix = nodeExecPrefix(node.netns, this.mountFile(node));
    return { run: (argv, opts) => this.runner.run([...prefix, ...argv], opts) };
  }

  podRunner(podName: string, namespace?: string): Runner {
    const prefix = podExecPrefix(this.pod(podName, namespace).netns);
    return { run: (argv, opts) => this.runner.run([...prefix, ...argv], opts) };
  }

  execInNode(nodeName: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.nodeRunner(nodeName).run(argv, opts);
  }

  execInPod(
    podName: string,
    argv: readonly string[],
    opts?: RunOptions & { namespace?: string },
  ): Promise<RunResult> {
    return this.podRunner(podName, opts?.namespace).run(argv, opts);
  }

  /** argv that runs a command inside a node or pod (for callers that need their own stdio). */
  execPrefix(target: { node: string } | { pod: string; namespace?: string }): string[] {
    if ('node' in target) {
      const node = this.node(target.node);
      return nodeExecPrefix(node.netns, this.mountFile(node));
    }
    return podExecPrefix(this.pod(target.pod, target.namespace).netns);
  }

  /** Start a long-running process inside a node; it is stopped by `down` or `stopProcess`. */
  async spawnInNode(
    nodeName: string,
    procName: string,
    argv: readonly string[],
    env?: NodeJS.ProcessEnv,
  ): Promise<ProcRecord> {
    const node = this.node(nodeName);
    const log = join(this.plan.dataDir, 'logs', `${procName}.log`);
    const rec = startDaemon(
      procName,
      [...nodeExecPrefix(node.netns, this.mountFile(node)), ...argv],
      log,
      env,
    );
    this.state.procs.push(rec);
    await this.save();
    return rec;
  }

  async stopProcess(procName: string): Promise<void> {
    const rec = this.state.procs.find((p) => p.name === procName);
    if (!rec) return;
    await stopDaemon(rec);
    this.state.procs = this.state.procs.filter((p) => p !== rec);
    await this.save();
  }

  /**
   * Create a pod network namespace on a node, wire it with the node's CNI through cnitool,
   * register the Pod (with its named container ports, which network policies may name).
   * `register: false` does only the CNI ADD (as a kubelet does while the apiserver is
   * unreachable); `registerPod` writes the Pod object afterwards.
   */
  async addPod(
    nodeName: string,
    namespace: string,
    name: string,
    labels: Record<string, string> = {},
    ports: PodSpecLite['ports'] = [],
    options: { register?: boolean } = {},
  ): Promise<LabPod> {
    const node = this.node(nodeName);
    const netns = podNetnsName(this.plan.name, namespace, name);
    await this.runner.run(['ip', 'netns', 'add', netns]);
    const pod: LabPod = { namespace, name, node: node.name, netns, ips: [] };
    this.state.pods.push(pod);
    await this.save();
    await this.runner.run(['ip', 'netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
    const res = await this.runCnitool(node, 'add', pod);
    pod.ips = parseCniResultIPs(res.stdout);
    if (pod.ips.length === 0)
      throw new Error(
        `cnitool add for pod ${namespace}/${name} returned no address: ${res.stdout}`,
      );
    await this.save();
    if (options.register !== false) await this.registerPod(pod, labels, ports);
    return pod;
  }

  /** Write a lab pod's Pod object (status with its addresses), as its kubelet would. */
  async registerPod(
    pod: LabPod,
    labels: Record<string, string> = {},
    ports: PodSpecLite['ports'] = [],
  ): Promise<void> {
    const core = kubeClient(this.state.kubeconfig);
    if (pod.namespace !== 'default') await ensureNamespace(core, pod.namespace);
    await registerPod(core, {
      namespace: pod.namespace,
      name: pod.name,
      nodeName: pod.node,
      hostIP: this.internalIPs(this.node(pod.node))[0] ?? this.node(pod.node).underlayIP,
      ips: pod.ips,
      labels,
      ports,
    });
  }

  async deletePod(name: string, namespace = 'default'): Promise<void> {
    const pod = this.pod(name, namespace);
    await this.runCnitool(this.node(pod.node), 'del', pod, true);
    await killPids(await netnsPids(this.runner, pod.netns));
    await deleteNetns(this.runner, pod.netns);
    await deletePod(kubeClient(this.state.kubeconfig), namespace, name);
    this.state.pods = this.state.pods.filter((p) => p !== pod);
    await this.save();
  }

  private runCnitool(
    node: NodePlan,
    verb: 'add' | 'del' | 'check',
    pod: LabPod,
    allowFailure = false,
  ): Promise<RunResult> {
    const env = systemEnv({
      CNI_PATH: '/opt/cni/bin',
      NETCONFPATH: '/etc/cni/net.d',
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${pod.namespace};K8S_POD_NAME=${pod.name}`,
    });
    return this.execInNode(
      node.name,
      [toolPath('cnitool'), verb, cniNetworkName(this.state.cni), `/run/netns/${pod.netns}`],
      {
        env,
        timeoutMs: 60_000,
        allowFailure,
      },
    );
  }

  /** Remove everything of this lab; safe to call on a half-built lab and twice. */
  async down(): Promise<void> {
    const { plan, runner } = this;
    await withLabLock(async () => {
      // A connection to another lab (lab/connect.ts): its routes, forwarding and table go first.
      await disconnectLab(runner, plan).catch(() => {});
      // Pods: CNI DEL through the node's plugin while the node still runs, then the namespace.
      for (const pod of [...this.state.pods].reverse()) {
        if (
          existsSync(`/run/netns/${pod.netns}`) &&
          existsSync(this.mountFile(this.node(pod.node)))
        ) {
          await this.runCnitool(this.node(pod.node), 'del', pod, true).catch(() => undefined);
        }
      }
      for (const procRec of [...this.state.procs].reverse()) await stopDaemon(procRec);
      const namespaces = (await listNetns(runner)).filter((n) => labOwnsNetns(plan.name, n));
      for (const ns of namespaces) await killPids(await netnsPids(runner, ns));
      for (const ns of namespaces.filter((n) => n.startsWith('wmp-')))
        await deleteNetns(runner, ns);
      for (const node of plan.nodes) await releaseMountNamespace(runner, this.mountFile(node));
      for (const entry of await readdir(join(plan.runDir, 'mnt')).catch(() => [] as string[])) {
        await releaseMountNamespace(runner, join(plan.runDir, 'mnt', entry));
      }
      for (const ns of namespaces.filter((n) => n.startsWith('wml-')))
        await deleteNetns(runner, ns);
      for (const link of await listLinks(runner)) {
        if (labOwnsLink(plan.name, link))
          await runner.run(['ip', 'link', 'del', link], { allowFailure: true });
      }
      await rm(plan.runDir, { recursive: true, force: true });
      await rm(plan.dataDir, { recursive: true, force: true });
      await releaseSharedIfLast(runner);
    });
  }

  async save(): Promise<void> {
    const file = Lab.stateFile(this.plan.name);
    await writeFile(`${file}.tmp`, JSON.stringify(this.state, null, 2));
    await rename(`${file}.tmp`, file);
  }

  /** What is running: for `lab status` and for tests. */
  status(): LabStatus {
    return {
      name: this.plan.name,
      apiserver: this.state.apiserverURL,
      kubeconfig: this.state.kubeconfig,
      cni: this.state.cni,
      underlay:
        this.state.ipFamily === 'ipv6'
          ? this.plan.gatewayIP6.replace(/::1$/, '::/64')
          : `${this.plan.gatewayIP.replace(/\.1$/, '.0')}/${this.plan.prefixLength}`,
      nodes: this.plan.nodes.map((n) => ({
        name: n.name,
        netns: n.netns,
        underlayIP: this.internalIPs(n)[0] ?? n.underlayIP,
      })),
      pods: this.state.pods.map((p) => ({
        namespace: p.namespace,
        name: p.name,
        node: p.node,
        ips: p.ips,
      })),
      processes: this.state.procs.map((p) => ({
        name: p.name,
        pid: p.pid,
        running: isAlive(p),
        log: p.log,
      })),
    };
  }

  logTail(procName: string, lines = 30): string {
    const rec = this.state.procs.find((p) => p.name === procName);
    return rec ? tail(rec.log, lines) : `(no process ${procName})`;
  }
}

export interface LabStatus {
  name: string;
  apiserver: string;
  kubeconfig: string;
  cni: CniChoice;
  underlay: string;
  nodes: { name: string; netns: string; underlayIP: string }[];
  pods: { namespace: string; name: string; node: string; ips: string[] }[];
  processes: { name: string; pid: number; running: boolean; log: string }[];
}
