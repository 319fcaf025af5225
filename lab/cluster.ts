// The real-node lab: a Kubernetes cluster made the way users make theirs. Each
// node is a network namespace on the lab's underlay bridge with a mount namespace
// of its own, running containerd (Debian's) and a kubelet; `kubeadm init` on the
// first node and `kubeadm join` on the others make the cluster (static-pod control
// plane, kube-proxy in nftables mode, CoreDNS); wiremesh is installed with
// `kubectl apply -f deploy/wiremesh.yaml` and runs as its DaemonSet; pods are
// containers started by the kubelet and wired by our plugin through containerd.
// Images come from hack/build-images.sh and are imported into every node's
// containerd (there is no registry). `down` stops every process the nodes ran
// (found through their network namespaces and cgroups), and removes every
// namespace, mount, cgroup, link and directory, also after a failed `up`.
import { mkdir, writeFile, readFile, rm, rename, copyFile, chmod } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { X509Certificate, createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  defaultRunner,
  requireRoot,
  requireProgram,
  toolPath,
  toolCacheDir,
  systemEnv,
  type Runner,
  type RunOptions,
  type RunResult,
} from '../sys/index.ts';
import { chooseLabIndex, planLab, validateLabName, type LabPlan, type NodePlan } from './plan.ts';
import {
  createBridge,
  createNodeNamespaces,
  ensurePrivateRunRoot,
  nodeExecPrefix,
  netnsPids,
  deleteNetns,
  releaseMountNamespace,
  listLinks,
  q,
} from './nodes.ts';
import { labOwnsLink } from './plan.ts';
import { startDaemon, stopDaemon, killPids, isAlive, type ProcRecord } from './procs.ts';
import { tail, SERVICE_CIDR } from './controlplane.ts';
import { withLabLock } from './lock.ts';
import { LabPhases, type ProgressFn } from './progress.ts';
import { createCgroupRoot, cgroupPids, removeCgroupRoot } from './cgroups.ts';
import {
  usedLabIndexes,
  labExists,
  recordCreatedDirs,
  releaseSharedIfLast,
  LAB_STATE_FILES,
} from './registry.ts';
import {
  CONTAINERD_SOCKET,
  KUBELET_HOST_SYSCTLS,
  NODE_RESOLV_CONF,
  REAL_NODE_PRIVATE_DIRS,
  bootstrapToken,
  containerdConfig,
  kubeadmInitConfig,
  kubeadmJoinConfig,
  kubeletSupervisor,
  nodeCgroupRoot,
  nodeResolvConf,
} from './kubeadm.ts';

export const MANIFEST = new URL('../deploy/wiremesh.yaml', import.meta.url).pathname;

export interface ClusterState {
  version: 1;
  engine: 'kubeadm';
  name: string;
  index: number;
  nodeCount: number;
  kubeconfig: string;
  apiserverURL: string;
  procs: ProcRecord[];
  createdAt: string;
}

export interface ClusterUpOptions {
  name?: string;
  nodes?: number;
  /** Install wiremesh with its manifest (default true); false leaves the nodes NotReady. */
  install?: boolean;
  runner?: Runner;
  progress?: ProgressFn;
  keepOnFailure?: boolean;
}

/** An image built by hack/build-images.sh: its reference and its docker-archive file. */
export interface LabImage {
  ref: string;
  file: string;
}

export async function labImages(): Promise<LabImage[]> {
  const index = join(toolCacheDir(), 'images', 'images.txt');
  const text = await readFile(index, 'utf8').catch(() => {
    throw new Error(`no lab images at ${index}; run 'make deps' to build them`);
  });
  const images = text
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f): f is [string, string] => f.length === 2 && Boolean(f[0]))
    .map(([ref, file]) => ({ ref, file }));
  for (const i of images)
    if (!existsSync(i.file))
      throw new Error(`lab image ${i.ref}: ${i.file} is missing; run 'make deps'`);
  return images;
}

/** The tools a real-node lab runs, each with what provides it. */
const REQUIRED_PROGRAMS = [
  ['ip', 'iproute2'],
  ['nsenter', 'util-linux'],
  ['unshare', 'util-linux'],
  ['mount', 'mount'],
  ['containerd', 'containerd'],
  ['ctr', 'containerd'],
  ['runc', 'runc'],
] as const;
const REQUIRED_TOOLS = ['kubelet', 'kubeadm', 'kubectl', 'wiremesh-runc-shim'];
/** The reference plugins a kubeadm node has from its kubernetes-cni package. */
const NODE_CNI_PLUGINS = ['loopback', 'host-local', 'bridge', 'portmap', 'bandwidth'];

export class Cluster {
  readonly plan: LabPlan;
  state: ClusterState;
  private readonly runner: Runner;
  private saves = 0;

  private constructor(plan: LabPlan, state: ClusterState, runner: Runner) {
    this.plan = plan;
    this.state = state;
    this.runner = runner;
  }

  static stateFile(name: string): string {
    return LAB_STATE_FILES.cluster(name);
  }

  static exists(name: string): boolean {
    return existsSync(Cluster.stateFile(name));
  }

  static async load(name = 'lab', runner: Runner = defaultRunner): Promise<Cluster> {
    validateLabName(name);
    const raw = await readFile(Cluster.stateFile(name), 'utf8').catch(() => {
      throw new Error(
        `no real-node lab named '${name}' is running (no ${Cluster.stateFile(name)}); start one with 'wiremesh lab up --name ${name}'`,
      );
    });
    const state = JSON.parse(raw) as ClusterState;
    return new Cluster(planLab(state.name, state.index, state.nodeCount), state, runner);
  }

  static async up(options: ClusterUpOptions = {}): Promise<Cluster> {
    const name = validateLabName(options.name ?? 'lab');
    const nodeCount = options.nodes ?? 3;
    const runner = options.runner ?? defaultRunner;
    const progress = options.progress ?? (() => {});
    requireRoot('the lab');
    for (const [prog, pkg] of REQUIRED_PROGRAMS)
      await requireProgram(prog, `install the Debian package ${pkg}, or run 'make deps'`);
    for (const tool of REQUIRED_TOOLS) toolPath(tool);
    const images = await labImages();

    const cluster = await withLabLock(async () => {
      if (labExists(name))
        throw new Error(
          `a lab named '${name}' already exists; tear it down with 'wiremesh lab down --name ${name}'`,
        );
      const plan = planLab(name, chooseLabIndex(await usedLabIndexes()), nodeCount);
      const [first] = plan.nodes;
      if (!first) throw new Error('a lab needs at least one node');
      const state: ClusterState = {
        version: 1,
        engine: 'kubeadm',
        name,
        index: plan.index,
        nodeCount,
        kubeconfig: join(plan.dataDir, 'kubeconfig'),
        apiserverURL: `https://${first.underlayIP}:6443`,
        procs: [],
        createdAt: new Date().toISOString(),
      };
      await ensurePrivateRunRoot(runner);
      await mkdir(join(plan.runDir, 'mnt'), { recursive: true });
      await mkdir(join(plan.dataDir, 'logs'), { recursive: true, mode: 0o700 });
      await recordCreatedDirs(REAL_NODE_PRIVATE_DIRS);
      const c = new Cluster(plan, state, runner);
      await c.save();
      return c;
    });
    try {
      await cluster.build(images, options.install ?? true, progress);
      return cluster;
    } catch (e) {
      if (!options.keepOnFailure) {
        progress(`lab ${name}: start-up failed, removing what was built`, 'done');
        await cluster.down().catch(() => {});
      }
      throw e;
    }
  }

  private async build(images: LabImage[], install: boolean, progress: ProgressFn) {
    const { plan } = this;
    const phases = new LabPhases(progress, `lab ${plan.name}`);
    await createBridge(this.runner, plan.bridge, `${plan.gatewayIP}/${plan.prefixLength}`);

    phases.start(
      `nodes: ${plan.nodes.length} network namespaces running containerd and a kubelet, ${images.length} images imported`,
    );
    for (const node of plan.nodes) await this.createNode(node);
    await Promise.all(plan.nodes.map((n) => this.startRuntime(n, images)));
    phases.done();

    const token = bootstrapToken(randomBytes(22));
    const [first, ...others] = plan.nodes as [NodePlan, ...NodePlan[]];
    phases.start(`kubeadm init on ${first.name} (${first.underlayIP})`);
    const initConfig = join(this.nodeDir(first), 'kubeadm-init.yaml');
    await writeFile(initConfig, kubeadmInitConfig(plan, token), { mode: 0o600 });
    await this.kubeadm(first, ['init', '--config', initConfig], 'init');
    await copyFile(
      join(this.privateDir(first, '/etc/kubernetes'), 'admin.conf'),
      this.state.kubeconfig,
    );
    await chmod(this.state.kubeconfig, 0o600);
    phases.done();

    if (others.length) {
      phases.start(`kubeadm join: ${others.map((n) => n.name).join(', ')}`);
      const hash = await this.caCertHash(first);
      await Promise.all(
        others.map(async (node) => {
          const file = join(this.nodeDir(node), 'kubeadm-join.yaml');
          await writeFile(file, kubeadmJoinConfig(plan, node, token, hash), { mode: 0o600 });
          await this.kubeadm(node, ['join', '--config', file], 'join');
        }),
      );
      phases.done();
    }

    if (install) {
      phases.start('wiremesh: kubectl apply -f deploy/wiremesh.yaml');
      for (const line of await this.kubectlLines(['apply', '-f', MANIFEST])) phases.note(line);
      try {
        await this.kubectl(
          ['-n', 'kube-system', 'rollout', 'status', 'daemonset/wiremesh-agent', '--timeout=300s'],
          { timeoutMs: 330_000 },
        );
      } catch (e) {
        // The lab is removed after a failed start: say why the agents are not Ready first.
        await this.explainAgents((line) => phases.note(line));
        throw e;
      }
      await this.kubectl(['wait', '--for=condition=Ready', 'nodes', '--all', '--timeout=180s'], {
        timeoutMs: 210_000,
      });
      await this.kubectl(
        ['-n', 'kube-system', 'rollout', 'status', 'deployment/coredns', '--timeout=180s'],
        { timeoutMs: 210_000 },
      );
      phases.done('ready');
    }
  }

  /** The node's namespaces, private directories, cgroup parent and containerd config. */
  private async createNode(node: NodePlan): Promise<void> {
    const { plan } = this;
    const dir = this.nodeDir(node);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const privateDirs: Record<string, string> = {};
    for (const d of REAL_NODE_PRIVATE_DIRS) {
      privateDirs[d] = this.privateDir(node, d);
      await mkdir(privateDirs[d], { recursive: true, mode: 0o755 });
    }
    // Host copies of the kubelet's host-wide sysctls, bound over /proc/sys in the node.
    const sysctlDir = join(dir, 'sysctl');
    await mkdir(sysctlDir, { recursive: true });
    const sysctlBinds: string[] = [];
    for (const key of KUBELET_HOST_SYSCTLS) {
      const proc = `/proc/sys/${key}`;
      if (!existsSync(proc)) continue;
      const copy = join(sysctlDir, key.replaceAll('/', '.'));
      await writeFile(copy, await readFile(proc, 'utf8'));
      sysctlBinds.push(`mount --bind ${q(copy)} ${q(proc)}`);
    }
    const stash = join(plan.runDir, 'mnt', `${node.name}.cgroup`);
    await mkdir(stash, { recursive: true });
    await writeFile(
      join(privateDirs['/etc/containerd'] ?? dir, 'config.toml'),
      containerdConfig(toolPath('wiremesh-runc-shim')),
    );
    const binDir = privateDirs['/opt/cni/bin'] ?? dir;
    for (const plugin of NODE_CNI_PLUGINS) {
      await copyFile(toolPath(`cni-plugins/${plugin}`), join(binDir, plugin));
      await chmod(join(binDir, plugin), 0o755);
    }
    const cgroupRoot = nodeCgroupRoot(plan, node);
    await createCgroupRoot(cgroupRoot);
    const mountSetup = [
      // A sysfs of the node's network namespace, with the host's cgroup hierarchies
      // moved under it (the kubelet and runc find them at /sys/fs/cgroup).
      `mount --rbind /sys/fs/cgroup ${q(stash)}`,
      'mount -t sysfs sysfs /sys',
      `mount --move ${q(stash)} /sys/fs/cgroup`,
      // /run and /tmp of its own: containerd's and the kubelet's sockets, the pods'
      // network namespaces (/run/netns), xtables.lock, wireguard-go's sockets.
      'mount -t tmpfs -o mode=755 tmpfs /run',
      'mount -t tmpfs -o mode=1777 tmpfs /tmp',
      'mkdir -p /run/netns /run/wiremesh /run/wireguard /run/containerd',
      `printf %s ${q(nodeResolvConf(plan))} > ${NODE_RESOLV_CONF}`,
      ...Object.entries(privateDirs).map(([t, s]) => `mount --bind ${q(s)} ${q(t)}`),
      ...sysctlBinds,
      // Mounts made in the node (pod network namespaces under /run/netns, volumes
      // under /var/lib/kubelet) reach its containers, as systemd's shared / does.
      'mount --make-rshared /',
    ];
    await createNodeNamespaces(this.runner, {
      netns: node.netns,
      hostVeth: node.hostVeth,
      bridge: plan.bridge,
      address: `${node.underlayIP}/${plan.prefixLength}`,
      mountFile: this.mountFile(node),
      privateDirs,
      mountSetup,
    });
    await rm(stash, { recursive: true, force: true });
    // A machine's default route is what lets its own processes reach a ClusterIP
    // (kube-proxy rewrites the address only after the route lookup). The lab's nodes
    // have none, so nothing leaves the machine: the service range gets one on the
    // underlay instead, which nothing but kube-proxy's rewritten packets ever takes.
    await this.execInNode(node.name, ['ip', 'route', 'add', SERVICE_CIDR, 'dev', 'eth0']);
  }

  /** containerd, the images, and the kubelet's supervisor (it waits for kubeadm). */
  private async startRuntime(node: NodePlan, images: LabImage[]): Promise<void> {
    await this.spawnInNode(node, `containerd-${node.name}`, [
      'containerd',
      '--config',
      '/etc/containerd/config.toml',
    ]);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const res = await this.execInNode(node.name, ['ctr', '-a', CONTAINERD_SOCKET, 'version'], {
        allowFailure: true,
      });
      if (res.code === 0) break;
      if (Date.now() > deadline)
        throw new Error(
          `containerd on ${node.name} did not answer in 30 s: ${res.stderr.trim()}\n${this.logTail(`containerd-${node.name}`)}`,
        );
      await sleep(200);
    }
    for (const image of images) {
      await this.execInNode(
        node.name,
        ['ctr', '-a', CONTAINERD_SOCKET, '-n', 'k8s.io', 'images', 'import', image.file],
        { timeoutMs: 300_000 },
      );
    }
    await this.spawnInNode(node, `kubelet-${node.name}`, [
      'sh',
      '-c',
      kubeletSupervisor(toolPath('kubelet')),
    ]);
  }

  private async kubeadm(node: NodePlan, args: string[], what: string): Promise<void> {
    const log = join(this.plan.dataDir, 'logs', `kubeadm-${what}-${node.name}.log`);
    const res = await this.execInNode(node.name, [toolPath('kubeadm'), ...args, '--v=1'], {
      allowFailure: true,
      timeoutMs: 600_000,
      env: systemEnv({ PATH: `${join(toolCacheDir(), 'bin')}:${systemEnv().PATH ?? ''}` }),
    });
    await writeFile(log, `${res.stdout}\n${res.stderr}`);
    if (res.code !== 0) {
      throw new Error(
        `kubeadm ${what} on ${node.name} failed (exit ${res.code}); see ${log}:\n${tail(log, 25)}\nkubelet:\n${this.logTail(`kubelet-${node.name}`, 15)}`,
      );
    }
  }

  /** sha256 of the cluster CA's public key, as `kubeadm join` pins it. */
  private async caCertHash(node: NodePlan): Promise<string> {
    const pem = await readFile(join(this.privateDir(node, '/etc/kubernetes'), 'pki', 'ca.crt'));
    const spki = new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
    return `sha256:${createHash('sha256').update(spki).digest('hex')}`;
  }

  kubectl(args: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.runner.run([toolPath('kubectl'), '--kubeconfig', this.state.kubeconfig, ...args], {
      timeoutMs: 120_000,
      ...opts,
    });
  }

  /** The agent pods' state, their recent logs and the namespace's warnings, for a failed start. */
  private async explainAgents(note: (line: string) => void): Promise<void> {
    const agents = 'app.kubernetes.io/component=agent';
    for (const args of [
      ['-n', 'kube-system', 'get', 'pods', '-o', 'wide'],
      ['-n', 'kube-system', 'logs', '-l', agents, '--all-containers', '--prefix', '--tail=20'],
      ['-n', 'kube-system', 'get', 'events', '--field-selector', 'type=Warning'],
    ]) {
      note(`kubectl ${args.join(' ')}:`);
      const res = await this.kubectl(args, { allowFailure: true, timeoutMs: 30_000 }).catch(
        (err: unknown) => ({ stdout: '', stderr: String(err) }),
      );
      for (const line of `${res.stdout}${res.stderr}`.split('\n').filter(Boolean))
        note(`  ${line}`);
    }
  }

  private async kubectlLines(args: readonly string[]): Promise<string[]> {
    return (await this.kubectl(args)).stdout.split('\n').filter(Boolean);
  }

  node(name: string): NodePlan {
    const node = this.plan.nodes.find(
      (n) => n.name === name || n.name === `${this.plan.name}-${name}`,
    );
    if (!node)
      throw new Error(
        `lab '${this.plan.name}' has no node '${name}' (nodes: ${this.plan.nodes.map((n) => n.name).join(', ')})`,
      );
    return node;
  }

  mountFile(node: NodePlan): string {
    return join(this.plan.runDir, 'mnt', node.name);
  }

  private nodeDir(node: NodePlan): string {
    return join(this.plan.dataDir, 'nodes', node.name);
  }

  /** A node's own copy of a host directory, e.g. /etc/kubernetes. */
  privateDir(node: NodePlan, dir: string): string {
    return join(this.nodeDir(node), 'fs', dir.replace(/^\//, '').replaceAll('/', '_'));
  }

  execPrefix(nodeName: string): string[] {
    const node = this.node(nodeName);
    return nodeExecPrefix(node.netns, this.mountFile(node));
  }

  execInNode(nodeName: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.runner.run([...this.execPrefix(nodeName), ...argv], opts);
  }

  private async spawnInNode(node: NodePlan, procName: string, argv: string[]): Promise<void> {
    const log = join(this.plan.dataDir, 'logs', `${procName}.log`);
    const rec = startDaemon(procName, [...this.execPrefix(node.name), ...argv], log);
    this.state.procs.push(rec);
    await this.save();
  }

  /**
   * What `systemctl restart containerd kubelet` does on a machine: the kubelet (with
   * its supervisor) and containerd stop and start again. Containers keep running: their
   * shims are processes of their own, as under systemd's KillMode=process.
   */
  async restartRuntime(nodeName: string): Promise<void> {
    const node = this.plan.nodes.find((n) => n.name === nodeName);
    if (!node) throw new Error(`no node ${nodeName} in lab ${this.plan.name}`);
    await this.stopRuntime(node, 5000);
    await this.startRuntime(node, []);
  }

  /** The node's kubelet and containerd stopped; their records go. */
  private async stopRuntime(node: NodePlan, graceMs: number): Promise<void> {
    // The kubelet first, as down() does: it must not find containerd gone.
    const stopping = [`kubelet-${node.name}`, `containerd-${node.name}`].flatMap((name) =>
      this.state.procs.filter((p) => p.name === name),
    );
    for (const rec of stopping) await stopDaemon(rec, graceMs);
    // Dead records go: their pids may be reused by processes the lab did not start.
    this.state.procs = this.state.procs.filter((p) => !stopping.includes(p));
  }

  /**
   * Containers, their shims and host-network pods of a node whose containerd is
   * gone: killed by cgroup and by namespace until none is left (a dying shim may
   * still start nothing new).
   */
  private async killNodeProcesses(node: NodePlan): Promise<void> {
    const root = nodeCgroupRoot(this.plan, node);
    for (let i = 0; i < 20; i++) {
      const pids = [...(await cgroupPids(root)), ...(await netnsPids(this.runner, node.netns))];
      if (!pids.length) break;
      await killPids(pids);
    }
  }

  /** The node's mount and network namespaces and cgroup parent removed; the cgroups still in use. */
  private async removeNodeNamespaces(node: NodePlan): Promise<string[]> {
    await releaseMountNamespace(this.runner, this.mountFile(node));
    await deleteNetns(this.runner, node.netns);
    return removeCgroupRoot(nodeCgroupRoot(this.plan, node));
  }

  /**
   * A node power-cycled: every process of it killed at once (kubelet, containerd,
   * shims, containers, wireguard-go), its network namespace with every link, its
   * mount namespace with /run and /tmp, and its cgroups gone; its disk (the private
   * directories: /var/lib/wiremesh, /var/lib/containerd, /var/lib/kubelet, ...)
   * kept. Then it boots: namespaces and cgroup parent made again, containerd and the
   * kubelet started as at first. Nothing is repaired by hand: whatever runs again is
   * what the kubelet starts from the node's disk and the API.
   */
  async rebootNode(nodeName: string): Promise<void> {
    const node = this.node(nodeName);
    await this.stopRuntime(node, 0);
    await this.save();
    await this.killNodeProcesses(node);
    const busy = await this.removeNodeNamespaces(node);
    await this.runner.run(['ip', 'link', 'del', node.hostVeth], { allowFailure: true });
    if (busy.length)
      throw new Error(`rebooting ${node.name}: cgroups still in use: ${busy.join(', ')}`);
    await this.createNode(node);
    await this.startRuntime(node, []);
  }

  logTail(procName: string, lines = 30): string {
    const rec = this.state.procs.find((p) => p.name === procName);
    return rec ? tail(rec.log, lines) : `(no process ${procName})`;
  }

  /** Remove everything of this lab; safe on a half-built lab and twice. */
  async down(): Promise<string[]> {
    const { plan, runner } = this;
    const problems: string[] = [];
    await withLabLock(async () => {
      // The kubelets first, so nothing starts containers again; then the rest.
      for (const rec of this.state.procs.filter((p) => p.name.startsWith('kubelet-')))
        await stopDaemon(rec, 2000);
      for (const rec of [...this.state.procs].reverse()) await stopDaemon(rec, 2000);
      for (const node of plan.nodes) await this.killNodeProcesses(node);
      for (const node of plan.nodes)
        problems.push(
          ...(await this.removeNodeNamespaces(node)).map((d) => `cgroup ${d} still in use`),
        );
      for (const link of await listLinks(runner))
        if (labOwnsLink(plan.name, link))
          await runner.run(['ip', 'link', 'del', link], { allowFailure: true });
      await rm(plan.runDir, { recursive: true, force: true });
      await rm(plan.dataDir, { recursive: true, force: true });
      await releaseSharedIfLast(runner);
    });
    return problems;
  }

  /** The processes the lab started and whether they still run. */
  processes(): { name: string; pid: number; running: boolean; log: string }[] {
    return this.state.procs.map((p) => ({
      name: p.name,
      pid: p.pid,
      running: isAlive(p),
      log: p.log,
    }));
  }

  async save(): Promise<void> {
    // Nodes start in parallel: each save writes its own temporary file.
    const file = Cluster.stateFile(this.plan.name);
    const tmp = `${file}.${++this.saves}.tmp`;
    await writeFile(tmp, JSON.stringify(this.state, null, 2));
    await rename(tmp, file);
  }
}
