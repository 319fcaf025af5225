// The node agent: keeps a snapshot of the cluster's Nodes, IPAM blocks, Pods,
// Namespaces and NetworkPolicies from watches, publishes this node's WireGuard
// public key and endpoint, and runs the reconcile loop whose phases plan and apply
// the mesh (`mesh`) and the nftables table (`policy`). A watch event marks only its
// phase dirty, so a pod's new label costs a policy compile, not a mesh pass; the
// resync runs both and repairs drift. Nothing touches the dataplane before the first
// full lists. A reconcile error is logged, counted and retried; the agent never
// exits on one. On shutdown it leaves the dataplane in place, so traffic keeps
// flowing across an agent restart.
//
// Paths (issue #5): at start-up the agent probes which encapsulations this kernel
// has (WireGuard's answer is whether a device could be had at all: an agent on a
// node without WireGuard runs on, publishes no key, and its peers treat it as a node
// without a usable key). Each mesh pass plans every remote block's path from the IP
// pools (agent/paths.ts): WireGuard routes only for the blocks that take WireGuard,
// the rest through tunnels/ drivers (VXLAN, IP-in-IP, native) and the encrypted
// pools' policy routing; the plan's nftables fragment (fail-closed drops, NAT) is
// composed into the table, which is applied before any route moves, so a Required
// pool is never routed in plaintext even for a moment.
//
// Multi-cluster (issue #7): MultiClusterWatch (multicluster/) keeps the RemoteCluster
// and Peer objects and one RemoteClusterWatch per remote cluster; each mesh pass adds
// planRemotePeers' peers and routes to wiremesh.wg beside planMesh's, and tells the
// path planner those ranges are reached only through WireGuard (no masquerade, a
// Required pool's traffic to them dropped off the tunnel). One node per cluster
// (statusWriterNode) writes the RemoteClusters' conditions.
import { existsSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { V1Node, KubernetesObject } from '@kubernetes/client-node';
import { kubeClient, Informer, type KubeClient } from '../kube/index.ts';
import { KeyStore, type WireGuardKeyPair } from '../crypto/index.ts';
import { WgCli, probeEncapsulations, type Availability, type WgClient } from '../tunnels/index.ts';
import { IpCli, defaultRunner, type IpClient } from '../sys/index.ts';
import { NftCli, NftTableMonitor, TableDriver } from '../nftables/index.ts';
import type { NftTable } from '../nftables/model.ts';
import { PolicyWatch } from './policy.ts';
import { composeTable } from './nftable.ts';
import { meshNodeFromK8s, type MeshNode } from './meshnode.ts';
import { assignTunnelAddresses, planMesh, type MeshPlan, type MeshSettings } from './plan.ts';
import { planPaths, type PathBlock, type PathInput, type PathPlan } from './paths.ts';
import { PathDriver, pathReportChanged } from './pathdriver.ts';
import { PoolWatch } from './pools.ts';
import { DefaultPools } from './defaultpool.ts';
import { parseCidr, formatCidr } from './cidr.ts';
import { MeshDriver, reportChanged, type DeviceProvider } from './meshdriver.ts';
import { chooseDevice } from './device.ts';
import { Reconciler, type DirtyPhases } from './reconciler.ts';
import { PodNetwork } from './podnetwork.ts';
import { pathMtu } from './mtu.ts';
import { runInformer } from './watch.ts';
import {
  ipamBlockFromK8s,
  IPAM_GROUP,
  IPAM_VERSION,
  IPAMBLOCK_PLURAL,
  type IpPool,
} from '../ipam/index.ts';
import { KubeEventRecorder } from './events.ts';
import {
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_ENDPOINT,
  ANNOTATION_HOST_ENCRYPTION,
  WIREGUARD_DEVICE,
} from './annotations.ts';
import { formatEndpoint } from './endpoint.ts';
import type { Logger } from './log.ts';
import type { AgentConfig } from './config.ts';
import { composeStatus, type AgentStatus } from './status.ts';
import type { HealthFacts } from './health.ts';
import { splitPathNft } from './pathnft.ts';
import {
  reportNodeProblems,
  reportPathEvents,
  reportRemoteProblems,
  writeRemoteStatus,
} from './meshreport.ts';
import {
  MultiClusterWatch,
  RemoteClusterStatusWriter,
  planRemotePeers,
  statusWriterNode,
  type RemotePlan,
} from '../multicluster/index.ts';

export class Agent {
  readonly config: AgentConfig;
  private readonly log: Logger;
  private readonly kube: KubeClient;
  private readonly keys: KeyStore;
  private readonly wg: WgClient;
  private readonly ip: IpClient;
  private keyPair!: WireGuardKeyPair;
  /** null: this node has no WireGuard (no module, no wireguard-go); see wireguardProblem. */
  private device: (DeviceProvider & { stop?: () => Promise<void> }) | null = null;
  private wireguardProblem = '';
  private driver: MeshDriver | undefined;
  private informer!: Informer<V1Node>;
  private blockInformer!: Informer<KubernetesObject>;
  private podNetwork: PodNetwork | undefined;
  private policy: PolicyWatch | undefined;
  private pools: PoolWatch | undefined;
  private defaultPools: DefaultPools | undefined;
  private readonly pathDriver: PathDriver;
  private available: Availability[] | null = null;
  private lastPaths: PathPlan | null = null;
  /** The path plan's nftables fragment, composed into the table by the policy phase. */
  private pathNft: { encrypt: NftTable; nat: NftTable } | null = null;
  private pathNftKey = '';
  private readonly table: TableDriver;
  private policyStatus: AgentStatus['policy'] = { stats: null, problems: 0, lastApply: null };
  private tableReads = 0;
  private events: KubeEventRecorder;
  private lastPlan: MeshPlan | null = null;
  private multicluster: MultiClusterWatch | undefined;
  private lastRemote: RemotePlan | null = null;
  private readonly remoteStatus: RemoteClusterStatusWriter;
  private synced = false;
  private rotationTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly tableMonitor: NftTableMonitor;
  readonly reconciler: Reconciler;

  constructor(config: AgentConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.kube = kubeClient(config.kubeconfig);
    this.keys = new KeyStore(config.stateDir);
    this.wg = new WgCli(defaultRunner);
    this.ip = new IpCli(defaultRunner);
    // The table deleted or changed by hand would leave the node without policy or
    // without the fail-closed drops until the next resync; the kernel tells us at once.
    // It also spares a resync reading the table back while nobody else changed it.
    this.tableMonitor = new NftTableMonitor({
      onChange: (reason) => {
        this.log.warn('nftables: the table may have been changed outside the agent', { reason });
        this.reconciler.schedule(reason, 'nftables');
      },
      onError: (e) => this.log.warn('nftables monitor stopped; restarting', { error: e.message }),
    });
    const monitor = this.tableMonitor;
    this.table = new TableDriver(
      new NftCli(defaultRunner, { onTransaction: (pid) => monitor.ownProcess(pid) }),
    );
    this.pathDriver = new PathDriver(this.ip);
    this.events = new KubeEventRecorder(this.kube, config.nodeName, log);
    this.remoteStatus = new RemoteClusterStatusWriter(this.kube);
    this.reconciler = new Reconciler((dirty) => this.reconcileOnce(dirty), {
      resyncMs: config.resyncMs,
      log,
    });
  }

  async start(): Promise<void> {
    const loaded = await this.keys.loadOrCreate();
    this.keyPair = loaded.keyPair;
    this.log.info(loaded.created ? 'generated a new WireGuard key' : 'loaded the WireGuard key', {
      publicKey: this.keyPair.publicKey,
      path: this.keys.path,
    });
    if (loaded.tightenedMode)
      this.log.warn('private key file was readable by others; mode set to 0600', {
        path: this.keys.path,
      });

    try {
      this.device = await chooseDevice(
        this.config.wireguardMode,
        this.ip,
        this.config.wireguardGo,
        this.log,
        {
          logFile: `${this.config.runDir}/wireguard-go.log`,
          onRestart: () => this.reconciler.schedule('wireguard-go restarted'),
        },
      );
      this.driver = new MeshDriver({ wg: this.wg, ip: this.ip, device: this.device });
    } catch (e) {
      // Never pretend: no key is published, peers see a node without a usable key,
      // pools fall back or fail closed as their mode says, and status and an Event say why.
      this.wireguardProblem = (e as Error).message;
      this.log.error('WireGuard is unavailable on this node; running without it', {
        error: this.wireguardProblem,
      });
    }

    const schedule = (reason: string) => this.reconciler.schedule(reason, 'mesh');
    this.pools = new PoolWatch(this.kube, this.log);
    await this.pools.start(schedule);
    // A new cluster's pool, from the settings (the manifest holds no custom resources);
    // its watch event schedules the pass that routes it.
    const pools = this.pools;
    this.defaultPools = new DefaultPools({
      kube: this.kube,
      cidrs: this.config.defaultPoolCIDRs,
      poolCount: () => pools.objectCount(),
      log: this.log,
    });
    await this.defaultPools.start();
    this.informer = new Informer<V1Node>(this.kube, '/api/v1/nodes');
    await runInformer(this.informer, 'nodes', this.log, schedule);
    this.blockInformer = new Informer<KubernetesObject>(
      this.kube,
      `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPAMBLOCK_PLURAL}`,
    );
    // A block's allocations change with every pod; only its CIDR and owner matter to
    // the mesh, so re-plan only when that set changes.
    let blockSet = '';
    await runInformer(this.blockInformer, 'IPAM blocks', this.log, (reason) => {
      // Raw owner and CIDR only: validating every block's allocations on every pod's
      // ADD would cost the node as much as the ADD itself. The pass validates.
      const now = this.blockInformer
        .list()
        .map((b) => {
          const spec = (b as { spec?: { node?: unknown; cidr?: unknown } }).spec;
          return `${String(spec?.node)} ${String(spec?.cidr)}`;
        })
        .sort()
        .join(',');
      if (now === blockSet) return;
      blockSet = now;
      schedule(reason);
    });
    this.podNetwork = new PodNetwork({
      node: this.config.nodeName,
      kube: this.kube,
      stateDir: this.config.stateDir,
      log: this.log,
      mtu: (pool?: string) =>
        (pool !== undefined ? this.lastPaths?.mtu.byPool[pool] : undefined) ??
        this.lastPaths?.mtu.pod ??
        this.lastPlan?.device.mtu ??
        pathMtu(1500, 'wireguard', 4),
      poolFor: (namespace: string) =>
        this.pools?.poolForNamespace(namespace) ?? Promise.resolve(undefined),
    });
    await this.podNetwork.start(`${this.config.runDir}/cni.sock`);
    this.policy = new PolicyWatch(this.kube, this.log);
    await this.policy.start((reason) => this.reconciler.schedule(reason, 'policy'));
    await this.tableMonitor.start();
    this.multicluster = new MultiClusterWatch({
      kube: this.kube,
      log: this.log,
      onChange: schedule,
    });
    await this.multicluster.start();
    this.synced = true;
    this.log.info('initial node list received', { nodes: this.informer.list().length });
    this.reconciler.start();
    // A vanished device (wireguard-go killed, `ip link del`) is repaired at once rather
    // than at the next resync: checking /sys every second costs next to nothing.
    this.watchdog = setInterval(() => {
      if (this.device && !existsSync(`/sys/class/net/${WIREGUARD_DEVICE}`))
        this.reconciler.schedule('device missing', 'mesh');
    }, 1000);
    if (this.config.keyRotationPeriodMs > 0) {
      this.rotationTimer = setInterval(() => {
        this.rotateKey().catch((e: unknown) =>
          this.log.error('scheduled key rotation failed', { error: (e as Error).message }),
        );
      }, this.config.keyRotationPeriodMs);
    }
  }

  async stop(): Promise<void> {
    this.reconciler.stop();
    if (this.rotationTimer) clearInterval(this.rotationTimer);
    if (this.watchdog) clearInterval(this.watchdog);
    this.tableMonitor.stop();
    this.defaultPools?.stop();
    await this.informer?.stop();
    await this.blockInformer?.stop();
    await this.policy?.stop();
    await this.multicluster?.stop();
    await this.pools?.stop();
    await this.podNetwork?.stop();
    await this.reconciler.idle();
  }

  /** Run a reconcile pass now and wait for it (for benchmarks and operators). */
  async resyncNow(): Promise<void> {
    await this.reconciler.idle();
    this.reconciler.schedule('resync requested');
    await this.reconciler.idle();
  }

  /** Generate and persist a new key; the next pass sets it on the device and publishes it. */
  async rotateKey(): Promise<{ publicKey: string }> {
    const previous = this.keyPair.publicKey;
    this.keyPair = await this.keys.rotate();
    this.log.info('rotated the WireGuard key', { previous, publicKey: this.keyPair.publicKey });
    this.reconciler.schedule('key rotated');
    return { publicKey: this.keyPair.publicKey };
  }

  /** Pod address blocks (CIDR, owner, pool), from the IPAMBlock objects (validated). */
  private blocks(): PathBlock[] {
    const out: PathBlock[] = [];
    for (const raw of this.blockInformer.list()) {
      const { block } = ipamBlockFromK8s(raw);
      if (block) out.push({ cidr: block.cidr, node: block.node, pool: block.pool });
    }
    return out;
  }

  private meshNodes(): MeshNode[] {
    return this.informer.list().map(meshNodeFromK8s);
  }

  private async reconcileOnce(dirty: DirtyPhases): Promise<void> {
    // Each phase runs even when the other failed; the first error fails the pass,
    // which retries every phase.
    const errors: unknown[] = [];
    if (dirty.all || dirty.has('mesh')) await this.reconcileMesh().catch((e) => errors.push(e));
    // `nftables`: the table may be gone: verify it against the kernel before applying.
    if (dirty.all || dirty.has('policy') || dirty.has('nftables'))
      await this.reconcilePolicy(dirty.all || dirty.has('nftables')).catch((e) => errors.push(e));
    if (errors.length) throw errors[0];
  }

  /** Compile this node's policy, compose the table and apply the difference. */
  private async reconcilePolicy(resync: boolean): Promise<void> {
    if (!this.policy) return;
    // The compile is synchronous (tens of ms at 10,000 pods): a turn of the event
    // loop before and after it lets the status socket and watches get a word in.
    await nextTurn();
    const compileStart = performance.now();
    const result = this.policy.compile(this.config.nodeName);
    const compileMs = performance.now() - compileStart;
    await nextTurn();
    this.policy.report(result.problems, this.events);
    const table = composeTable({
      ...(this.pathNft ?? {}),
      policy: result.table,
    });
    const applyStart = performance.now();
    // A resync reads the table back only when the monitor cannot vouch that nobody
    // else changed it (see NftTableMonitor.fullVerifyDue).
    if (resync && this.tableMonitor.fullVerifyDue()) {
      this.tableReads++;
      const check = await this.table.verify();
      if (!check.inSync)
        this.log.warn('nftables table changed outside the agent; restoring it', {
          differences: check.differences.slice(0, 5),
        });
    }
    const report = await this.table.apply(table);
    if (report.mode !== 'unchanged') this.log.info('nftables table applied', { ...report });
    this.policyStatus = {
      stats: result.stats,
      problems: result.problems.length,
      lastApply: report.mode === 'unchanged' ? this.policyStatus.lastApply : report,
      lastPass: { compileMs, applyMs: performance.now() - applyStart },
      tableReads: this.tableReads,
    };
  }

  private async reconcileMesh(): Promise<void> {
    const nodes = this.meshNodes();
    const self = nodes.find((n) => n.name === this.config.nodeName);
    if (!self) throw new Error(`this node (${this.config.nodeName}) has no Node object yet`);
    const internalIP = self.internalIPs[0];
    if (!internalIP) throw new Error(`Node ${self.name} has no InternalIP address`);

    const underlay = await this.ip.linkOfAddress(internalIP);
    if (!underlay) throw new Error(`no device carries this node's InternalIP ${internalIP}`);
    const underlayFamily = internalIP.includes(':') ? 6 : 4;
    const settings: MeshSettings = {
      listenPort: this.config.listenPort,
      tunnelCIDR: this.config.tunnelCIDR,
      hostMtu: underlay.mtu,
      underlayFamily,
      hostEncryption: this.config.hostEncryption,
    };
    const blocks = this.blocks();
    const byNode = new Map<string, string[]>();
    for (const b of blocks) byNode.set(b.node, [...(byNode.get(b.node) ?? []), b.cidr]);
    const pools = this.pools?.current() ?? { pools: [], problems: [] };
    const mesh = planMesh({
      self: self.name,
      selfPublicKey: this.keyPair.publicKey,
      nodes,
      settings,
      blocks: byNode,
      // A node address inside a pool (where no block exists yet) is never a peer's.
      podRanges: pools.pools.map((p) => p.cidr),
    });
    const available = await this.probe(internalIP);

    const remote = this.planRemote(mesh, nodes, pools.pools);
    const peers = new Set(this.device ? mesh.peers.map((p) => p.node) : []);
    const selfSubnets = (await this.ip.addrList(underlay.name)).map((a) =>
      formatCidr(parseCidr(a)),
    );
    const input: PathInput = {
      self: self.name,
      selfSubnets,
      nodes: nodes.map((n) => ({
        name: n.name,
        underlayIPs: n.internalIPs,
        wireguardPeer: peers.has(n.name),
      })),
      pools: pools.pools,
      blocks,
      available: Object.fromEntries(available.map((a) => [a.kind, a])),
      tunnelAddresses: assignTunnelAddresses(nodes, this.config.tunnelCIDR),
      hostMtu: underlay.mtu,
      underlayFamily,
      meshRanges: remote.routes.map((r) => r.dst),
    };
    const paths = planPaths(input);
    // `route replace` matches on the destination, so only the blocks that take
    // WireGuard get a mesh route; every block stays in its peer's AllowedIPs, which
    // the encrypted pools' policy routing and the far side's choices rely on.
    const wireguardBlocks = new Set(paths.wireguardBlocks);
    const blockCidrs = new Set(blocks.map((b) => b.cidr));
    const plan: MeshPlan = {
      ...mesh,
      peers: [...mesh.peers, ...remote.peers.map(({ cluster: _, ...p }) => p)],
      routes: [
        ...mesh.routes.filter((r) => !blockCidrs.has(r.dst) || wireguardBlocks.has(r.dst)),
        ...remote.routes,
      ],
    };

    const reporter = { events: this.events, log: this.log, node: this.config.nodeName };
    reportNodeProblems(reporter, self, nodes, plan.refused, this.lastPlan, available);
    reportPathEvents(reporter, this.lastPaths, paths);
    reportRemoteProblems(reporter, this.lastRemote, remote.refused);

    // The fail-closed drops go in before any route moves.
    const fragment = splitPathNft(paths.nft);
    const fragmentKey = JSON.stringify(fragment);
    if (fragmentKey !== this.pathNftKey) {
      this.pathNft = fragment;
      await this.reconcilePolicy(false);
      this.pathNftKey = fragmentKey;
    }

    if (this.driver) {
      const report = await this.driver.apply(plan, this.keyPair.privateKey, this.keyPair.publicKey);
      if (reportChanged(report))
        this.log.info('mesh applied', { ...report, peers: plan.peers.length });
    } else if (await this.ip.linkShow(WIREGUARD_DEVICE)) {
      // Left by an earlier agent that had WireGuard: its peers no longer have us.
      await this.ip.linkDelete(WIREGUARD_DEVICE);
      this.log.warn('removed the WireGuard device: WireGuard is unavailable on this node');
    }
    const pathReport = await this.pathDriver.apply(paths, underlay.name);
    if (pathReportChanged(pathReport)) this.log.info('paths applied', { ...pathReport });
    // Publish after the device has the key: a peer that learns a new key (rotation)
    // handshakes at once, and that handshake must find the new key in place.
    await this.publishAnnotations(self, internalIP);
    await this.podNetwork
      ?.collectGarbage()
      .catch((e: unknown) =>
        this.log.warn('IPAM garbage collection failed', { error: (e as Error).message }),
      );
    this.lastPlan = plan;
    this.lastPaths = paths;
    this.lastRemote = remote;
    if (statusWriterNode(nodes.map((n) => n.name)) === self.name)
      await writeRemoteStatus(this.log, this.remoteStatus, this.multicluster, remote);
  }

  /** The peers and routes for other clusters' nodes and Peer objects (multicluster/). */
  private planRemote(
    mesh: MeshPlan,
    nodes: readonly MeshNode[],
    pools: readonly IpPool[],
  ): RemotePlan {
    const objects = this.multicluster?.objects() ?? { clusters: [], peers: [], problems: [] };
    const localKeys = new Map<string, string>();
    for (const n of nodes) if (n.publicKey) localKeys.set(n.publicKey, n.name);
    localKeys.set(this.keyPair.publicKey, this.config.nodeName);
    const plan = planRemotePeers({
      localPools: pools,
      tunnelCIDR: this.config.tunnelCIDR,
      localKeys,
      remotes: this.multicluster?.snapshots() ?? [],
      peers: objects.peers,
      listenPort: this.config.listenPort,
      tunnelAddress: mesh.tunnelAddress,
    });
    return { ...plan, refused: [...objects.problems, ...plan.refused] };
  }

  /** Probe once, at the first pass (the probes need this node's underlay address). */
  private async probe(localUnderlayIP: string): Promise<Availability[]> {
    if (this.available) return this.available;
    const probed = await probeEncapsulations(this.ip, {
      localUnderlayIP,
      wireguardGo: !!this.config.wireguardGo,
    });
    // WireGuard's answer is whether the agent got a device, not whether one could be made.
    const available = probed.map((a): Availability => {
      if (a.kind !== 'wireguard') return a;
      return this.device
        ? { kind: 'wireguard', available: true, detail: this.device.mode }
        : { kind: 'wireguard', available: false, detail: this.wireguardProblem };
    });
    for (const a of available) {
      if (a.available) this.log.info('encapsulation available', { kind: a.kind, detail: a.detail });
      else this.log.warn('encapsulation unavailable', { kind: a.kind, detail: a.detail });
    }
    this.available = available;
    return available;
  }

  private async publishAnnotations(self: MeshNode, internalIP: string): Promise<void> {
    const node = this.informer.get(self.name);
    const annotations = node?.metadata?.annotations ?? {};
    // Without WireGuard no key is published, so peers see a node without a usable key.
    const want: Record<string, string | null> = this.device
      ? {
          [ANNOTATION_PUBLIC_KEY]: this.keyPair.publicKey,
          [ANNOTATION_ENDPOINT]: formatEndpoint(internalIP, this.config.listenPort),
          [ANNOTATION_HOST_ENCRYPTION]: String(this.config.hostEncryption),
        }
      : {
          [ANNOTATION_PUBLIC_KEY]: null,
          [ANNOTATION_ENDPOINT]: null,
          [ANNOTATION_HOST_ENCRYPTION]: String(this.config.hostEncryption),
        };
    if (Object.entries(want).every(([k, v]) => (annotations[k] ?? null) === v)) return;
    await this.kube.request(
      'PATCH',
      `/api/v1/nodes/${encodeURIComponent(self.name)}`,
      { metadata: { annotations: want } },
      { contentType: 'application/merge-patch+json' },
    );
    if (this.device)
      this.log.info('published WireGuard key and endpoint', {
        publicKey: want[ANNOTATION_PUBLIC_KEY],
        endpoint: want[ANNOTATION_ENDPOINT],
      });
    else this.log.warn('withdrew the WireGuard key annotation: WireGuard is unavailable');
  }

  async status(): Promise<AgentStatus> {
    const dev = await this.wg.show(WIREGUARD_DEVICE).catch(() => null);
    return composeStatus({
      node: this.config.nodeName,
      listenPort: this.config.listenPort,
      mode: this.device?.mode ?? 'unavailable',
      publicKey: this.keyPair?.publicKey ?? '',
      plan: this.lastPlan,
      devicePeers: dev?.peers ?? [],
      policy: { ...this.policyStatus, watching: this.tableMonitor.attributing },
      available: this.available,
      pools: this.pools?.current().pools ?? [],
      paths: this.lastPaths,
      remotes: this.multicluster?.snapshots() ?? [],
      remotePlan: this.lastRemote,
      reconcile: { ...this.reconciler.stats },
      synced: this.synced,
    });
  }

  /** What the health endpoints check (agent/health.ts): in-memory fields only, no I/O. */
  health(): HealthFacts {
    return {
      synced: this.synced,
      reconcile: { ...this.reconciler.progress },
      lastError: this.reconciler.stats.lastError,
    };
  }

  /** The plan the agent would apply now (for `wiremesh plan`). */
  currentPlan(): MeshPlan | null {
    return this.lastPlan;
  }
}
