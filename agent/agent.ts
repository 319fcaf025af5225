// The node agent: keeps a snapshot of the cluster's Nodes, IPAM blocks, Pods,
// Namespaces and NetworkPolicies from watches, publishes this node's WireGuard
// public key and endpoint, and runs two reconcile loops side by side: the dataplane
// (`routes`, `mesh`) and the nftables table (`policy`, `nftables`). A watch event
// marks only its phase dirty, so a pod's new label costs a policy compile, not a
// mesh pass, and never waits behind one (at thousands of nodes a resync's mesh pass
// takes seconds); the resync runs both and repairs drift. The policy loop's first
// pass waits for the mesh's first attempt, so a restarted agent never applies a
// table without the fail-closed drops the previous one had in it; after that the
// mesh phase applies the table itself whenever its fragment changes, under the same
// lock as the policy loop. Nothing touches the dataplane before the first full
// lists. A reconcile error is logged, counted and retried; the agent never exits on
// one. On shutdown it leaves the dataplane in place, so traffic keeps flowing across
// an agent restart.
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
//
// Route damage: a route watch (agent/routewatch.ts) follows the kernel's
// route and rule notifications; when a route the node needs goes (a flushed table, a
// pod's host route deleted by hand), it schedules the `routes` phase, which restores
// the pods' host routes and the underlay's connected route (agent/routerepair.ts) and
// runs the mesh phase, whose drivers put back their own routes and rules.
import { readFileSync } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { V1Node, KubernetesObject } from '@kubernetes/client-node';
import { kubeClient, Informer, type KubeClient } from '../kube/index.ts';
import { KeyStore, type WireGuardKeyPair } from '../crypto/index.ts';
import {
  ENCAP_ROUTE_PROTOCOL,
  ENCRYPT_ROUTE_TABLE,
  WgCli,
  probeEncapsulations,
  type Availability,
  type WgClient,
} from '../tunnels/index.ts';
import { POD_ROUTE_PROTOCOL } from '../cni/index.ts';
import { IpCli, WorkerRunner, defaultRunner, type IpClient } from '../sys/index.ts';
import { NftCli, NftTableMonitor, TableDriver } from '../nftables/index.ts';
import type { NftTable } from '../nftables/model.ts';
import { PolicyWatch } from './policy.ts';
import type { RuleOrigin } from '../policy/index.ts';
import { composeTable } from './nftable.ts';
import { DropAccounting, readRuleCounters, type DropTotals } from './drops.ts';
import { DropLog } from './droplog.ts';
import {
  meshNodeFromK8s,
  sameNodeForMesh,
  trimNodeForMesh,
  KeyObservations,
  NODE_FIELDS_FOR_MESH,
  type MeshNode,
} from './meshnode.ts';
import {
  admitBlocks,
  blockClaimFromK8s,
  sameBlockClaim,
  trimBlockClaim,
  BLOCK_FIELDS_FOR_MESH,
  type RefusedBlock,
} from './blocks.ts';
import { assignTunnelAddresses, planMesh, type MeshPlan, type MeshSettings } from './plan.ts';
import { planPaths, type PathBlock, type PathInput, type PathPlan } from './paths.ts';
import { PathDriver, pathReportChanged } from './pathdriver.ts';
import { PoolWatch } from './pools.ts';
import { DefaultPools } from './defaultpool.ts';
import { parseCidr, formatCidr } from './cidr.ts';
import { MeshDriver, reportChanged, type DeviceProvider } from './meshdriver.ts';
import { chooseDevice } from './device.ts';
import { ReconcileLanes, type DirtyPhases } from './reconciler.ts';
import { BgpPhase, EXTERNAL_BIRD } from './bgpphase.ts';
import { DEFAULT_BGP_SETTINGS } from './bgp.ts';
import { PodNetwork } from './podnetwork.ts';
import { pathMtu } from './mtu.ts';
import { runInformer } from './watch.ts';
import { RouteWatch, announceDeletions, type RouteEvent } from './routewatch.ts';
import { restoreHostRoutes, restoreRemovedRoutes, type PodAddress } from './routerepair.ts';
import type { RouteStatus } from './status.ts';
import { IPAM_GROUP, IPAM_VERSION, IPAMBLOCK_PLURAL, type IpPool } from '../ipam/index.ts';
import { KubeEventRecorder } from './events.ts';
import {
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_ENDPOINT,
  ANNOTATION_HOST_ENCRYPTION,
  HOST_ROUTE_TABLE,
  ROUTE_PROTOCOL,
  WIREGUARD_DEVICE,
} from './annotations.ts';
import { formatEndpoint } from './endpoint.ts';
import type { Logger } from './log.ts';
import type { AgentConfig } from './config.ts';
import { composeStatus, type AgentStatus } from './status.ts';
import type { HealthFacts } from './health.ts';
import { splitPathNft } from './pathnft.ts';
import {
  reportBlockProblems,
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

/** Routes removed by someone else and not yet repaired (see RouteStatus.lastRepair). */
interface RouteDamage {
  /** When the route watch reported it (unix ms). */
  at: number;
  count: number;
  removed: string[];
  /** When the removed routes were written back, ms after `at`. */
  restoredMs?: number;
}

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
  /** The IPAM collection in flight, if any (it runs beside the passes). */
  private collecting: Promise<void> | undefined;
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
  /** The rule origins of the policy table last applied, and the drop totals read with them. */
  private policyOrigins: Record<string, RuleOrigin> = {};
  private readonly drops = new DropAccounting();
  private policyTable: NftTable = { sets: [], maps: [], chains: [] };
  private readonly dropLog: DropLog;
  private tableReads = 0;
  private events: KubeEventRecorder;
  private lastPlan: MeshPlan | null = null;
  private lastRefusedBlocks: RefusedBlock[] | null = null;
  private readonly keySeen = new KeyObservations();
  /** Annotations this agent has published since it started (for the repair's log line). */
  private readonly published = new Map<string, string | null>();
  private multicluster: MultiClusterWatch | undefined;
  private bgp: BgpPhase | undefined;
  private lastRemote: RemotePlan | null = null;
  private readonly remoteStatus: RemoteClusterStatusWriter;
  private synced = false;
  private rotationTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly tableMonitor: NftTableMonitor;
  private readonly routeWatch: RouteWatch;
  /** The device of this node's InternalIP, as the last mesh pass found it. */
  private underlayDev: string | null = null;
  /** Route damage seen and not yet repaired: when, and what went. */
  private pendingDamage: RouteDamage | null = null;
  /** The removed routes, as the kernel described them, to put back first. */
  private toRestore: RouteEvent[] = [];
  private routeStatus: Omit<RouteStatus, 'watching' | 'removed'> = {
    repairs: 0,
    restored: 0,
    lastRepair: null,
  };
  readonly reconciler: ReconcileLanes;
  /** Settled once the dataplane loop's first pass has ended, failed or not. */
  private readonly firstMeshAttempt: Promise<void>;
  private meshAttempted!: () => void;
  /** ip, wg and nft: through the netlink worker once it runs, spawned until then. */
  private readonly runner = new WorkerRunner(defaultRunner);
  /** Serialises the table's compile and apply between the two loops. */
  private policyLock: Promise<void> = Promise.resolve();

  constructor(config: AgentConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.kube = kubeClient(config.kubeconfig);
    this.keys = new KeyStore(config.stateDir);
    this.wg = new WgCli(this.runner);
    // A route the node needs, removed by anyone else (`ip route flush table main`),
    // would cut its pods off until the next resync; the kernel tells us at once. The
    // agent's own deletions are announced to the watch, so they are no damage.
    this.routeWatch = new RouteWatch({
      watched: () => ({
        protocols: [ROUTE_PROTOCOL, POD_ROUTE_PROTOCOL, ENCAP_ROUTE_PROTOCOL],
        tables: [HOST_ROUTE_TABLE, ENCRYPT_ROUTE_TABLE],
        connectedDevs: this.underlayDev === null ? [] : [this.underlayDev],
      }),
      onDamage: (events) => {
        const removed = events.map((e) => e.text);
        this.log.warn('routes removed outside the agent; repairing', {
          count: removed.length,
          removed: removed.slice(0, 10),
        });
        const earlier = this.pendingDamage?.removed ?? [];
        this.pendingDamage = {
          at: this.pendingDamage?.at ?? Date.now(),
          count: (this.pendingDamage?.count ?? 0) + removed.length,
          removed: [...earlier, ...removed].slice(0, 10),
        };
        this.toRestore.push(...events);
        this.reconciler.schedule('route damage', 'routes');
      },
      onUnseen: (reason) => this.reconciler.schedule(reason, 'routes'),
      onError: (e) => this.log.warn('route monitor stopped; restarting', { error: e.message }),
    });
    this.ip = announceDeletions(new IpCli(this.runner), this.routeWatch);
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
    this.dropLog = new DropLog(log, () => ({
      table: this.policyTable,
      origins: this.policyOrigins,
    }));
    this.table = new TableDriver(
      new NftCli(this.runner, { onTransaction: (pid) => monitor.ownProcess(pid) }),
    );
    this.pathDriver = new PathDriver(this.ip);
    this.events = new KubeEventRecorder(this.kube, config.nodeName, log);
    this.remoteStatus = new RemoteClusterStatusWriter(this.kube);
    this.firstMeshAttempt = new Promise((resolve) => (this.meshAttempted = resolve));
    this.reconciler = new ReconcileLanes(
      [
        {
          name: 'dataplane',
          phases: ['routes', 'mesh'],
          pass: (d) => this.reconcileDataplane(d).finally(() => this.meshAttempted()),
        },
        { name: 'policy', phases: ['policy', 'nftables'], pass: (d) => this.reconcileTable(d) },
      ],
      { resyncMs: config.resyncMs, log },
    );
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
    // Listing every pod is most of a large cluster's start-up (45,000 pods: 22 s, half
    // of it waiting on the apiserver): it runs while the mesh's lists and the pod
    // network start, and is waited for before the first pass.
    this.policy = new PolicyWatch(this.kube, this.log);
    const policyListed = this.policy.start((reason) => this.reconciler.schedule(reason, 'policy'));
    // Awaited below; a failure meanwhile is not an unhandled rejection.
    policyListed.catch(() => {});
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
    this.informer = new Informer<V1Node>(
      this.kube,
      '/api/v1/nodes',
      {},
      { transform: trimNodeForMesh, unchanged: sameNodeForMesh, fields: NODE_FIELDS_FOR_MESH },
    );
    // Key sightings are recorded as the events arrive (see KeyObservations).
    await runInformer(this.informer, 'nodes', this.log, (reason) => {
      this.observeKeys();
      schedule(reason);
    });
    this.observeKeys();
    this.blockInformer = new Informer<KubernetesObject>(
      this.kube,
      `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPAMBLOCK_PLURAL}`,
      {},
      { transform: trimBlockClaim, unchanged: sameBlockClaim, fields: BLOCK_FIELDS_FOR_MESH },
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
    this.runner.use(this.podNetwork.wiring);
    await policyListed;
    await this.tableMonitor.start();
    await this.routeWatch.start();
    this.multicluster = new MultiClusterWatch({
      kube: this.kube,
      log: this.log,
      onChange: schedule,
    });
    await this.multicluster.start();
    this.bgp = new BgpPhase({
      kube: this.kube,
      log: this.log,
      events: this.events,
      self: this.config.nodeName,
      settings: {
        enabled: this.config.bgpAS !== null,
        asNumber: this.config.bgpAS ?? DEFAULT_BGP_SETTINGS.asNumber,
        nodeToNodeMesh: this.config.bgpNodeMesh,
        holdTime: this.config.bgpHoldTimeMs / 1000,
      },
      runDir: this.config.runDir,
      externalBird: this.config.bird === EXTERNAL_BIRD,
    });
    await this.bgp.start(schedule);
    this.synced = true;
    this.log.info('initial node list received', { nodes: this.informer.list().length });
    this.reconciler.start();
    // A vanished device (wireguard-go killed, `ip link del`) is repaired at once rather
    // than at the next resync: checking /sys every second costs next to nothing.
    // A device recreated within the second (wireguard-go restarted by the
    // wiremesh-wireguard pod's supervisor) comes back empty: its new ifindex says so.
    let lastIndex: string | undefined;
    this.watchdog = setInterval(() => {
      if (!this.device) return;
      const index = readIfindex(WIREGUARD_DEVICE);
      if (index === undefined) this.reconciler.schedule('device missing', 'mesh');
      else if (lastIndex !== undefined && index !== lastIndex)
        this.reconciler.schedule('device recreated', 'mesh');
      lastIndex = index;
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
    this.routeWatch.stop();
    await this.dropLog.stop();
    this.defaultPools?.stop();
    await this.informer?.stop();
    await this.blockInformer?.stop();
    await this.policy?.stop();
    await this.multicluster?.stop();
    await this.pools?.stop();
    await this.collecting;
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

  private observeKeys(): void {
    this.keySeen.observe(
      this.informer.list().map((n) => ({
        name: n.metadata?.name ?? '',
        key: n.metadata?.annotations?.[ANNOTATION_PUBLIC_KEY] ?? null,
      })),
      Date.now(),
    );
  }

  /**
   * Pod address blocks (CIDR, owner, pool) from the IPAMBlock objects, only those an
   * IPAM could have made (agent/blocks.ts); the refused ones for Events.
   */
  private blocks(nodes: readonly MeshNode[], pools: readonly IpPool[]) {
    const claims = this.blockInformer.list().flatMap((raw) => blockClaimFromK8s(raw) ?? []);
    return admitBlocks({
      self: this.config.nodeName,
      blocks: claims,
      pools,
      nodes: nodes.map((n) => n.name),
      localAddresses: (this.podNetwork?.ipam.blocks() ?? []).flatMap((b) =>
        [...b.allocations.values()].map((a) => a.address),
      ),
    });
  }

  private meshNodes(): MeshNode[] {
    return this.informer.list().map(meshNodeFromK8s);
  }

  private async reconcileDataplane(dirty: DirtyPhases): Promise<void> {
    // Each step runs even when the other failed; the first error fails the pass,
    // which retries every phase of the loop.
    const errors: unknown[] = [];
    // `routes`: something removed routes the node needs. The host routes go back first
    // (the tunnels' next hops may need the underlay's connected route), then the mesh
    // phase puts back its drivers' routes and rules.
    const routes = dirty.all || dirty.has('routes');
    // Damage seen after this pass began is repaired (and counted) by the next one.
    const damage = routes ? this.pendingDamage : null;
    if (routes) {
      await this.restoreRemoved(damage).catch((e) => errors.push(e));
      await this.repairHostRoutes().catch((e) => errors.push(e));
    }
    await this.reconcileMesh().catch((e) => errors.push(e));
    if (damage && damage === this.pendingDamage && errors.length === 0) this.damageRepaired(damage);
    if (errors.length) throw errors[0];
  }

  /** The policy loop's pass; `nftables`: the table may be gone, verify it first. */
  private async reconcileTable(dirty: DirtyPhases): Promise<void> {
    await this.firstMeshAttempt;
    await this.reconcilePolicy(dirty.all || dirty.has('nftables'));
  }

  /**
   * What the route watch saw removed goes back as it was, in one process, before
   * anything is listed: the pods are reachable again while the rest of the pass
   * verifies every route against the plans.
   */
  private async restoreRemoved(damage: RouteDamage | null): Promise<void> {
    const events = this.toRestore.splice(0);
    if (events.length === 0) return;
    const { written, failed } = await restoreRemovedRoutes(this.ip, events);
    if (damage) damage.restoredMs = Date.now() - damage.at;
    this.routeStatus.restored += written;
    if (failed.length)
      this.log.warn('some removed routes could not be put back as they were', { failed });
  }

  /** The local pods' host routes and the underlay's connected route (agent/routerepair.ts). */
  private async repairHostRoutes(): Promise<void> {
    const pods: PodAddress[] = [];
    for (const block of this.podNetwork?.ipam.blocks() ?? [])
      for (const a of block.allocations.values())
        pods.push({ handle: a.handle, namespace: a.namespace, pod: a.pod, address: a.address });
    const repair = await restoreHostRoutes(this.ip, { underlay: await this.findUnderlay(), pods });
    const restored = repair.podRoutes.length + repair.connectedRoutes.length;
    if (restored === 0) return;
    this.routeStatus.restored += restored;
    this.log.info('host routes restored', { ...repair });
  }

  /** The underlay device: the last mesh pass's, or looked up before the first one. */
  private async findUnderlay(): Promise<string | null> {
    if (this.underlayDev !== null) return this.underlayDev;
    const node = this.informer.get(this.config.nodeName);
    const internalIP = node ? meshNodeFromK8s(node).internalIPs[0] : undefined;
    if (internalIP === undefined) return null;
    return (await this.ip.linkOfAddress(internalIP))?.name ?? null;
  }

  /** A pass after route damage succeeded: count the repair and how long it took. */
  private damageRepaired(damage: RouteDamage): void {
    this.pendingDamage = null;
    const repairedMs = Date.now() - damage.at;
    this.routeStatus.repairs++;
    this.routeStatus.lastRepair = {
      at: new Date(damage.at).toISOString(),
      count: damage.count,
      removed: damage.removed,
      restoredMs: damage.restoredMs ?? null,
      repairedMs,
    };
    this.log.info('route damage repaired', { restoredMs: damage.restoredMs, repairedMs });
  }

  /** Compile this node's policy, compose the table and apply the difference, one at a time. */
  private reconcilePolicy(resync: boolean): Promise<void> {
    const run = this.policyLock.then(() => this.applyPolicy(resync));
    this.policyLock = run.catch(() => undefined);
    return run;
  }

  private async applyPolicy(resync: boolean): Promise<void> {
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
    this.policyOrigins = result.origins;
    this.policyTable = result.table;
    // The reader runs only while some namespace asks for the log (its rules exist then).
    await this.dropLog.want(
      result.table.chains.some((c) => c.rules.some((r) => r.includes(' log group '))),
    );
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
    this.underlayDev = underlay.name;
    const underlayFamily = internalIP.includes(':') ? 6 : 4;
    const settings: MeshSettings = {
      listenPort: this.config.listenPort,
      tunnelCIDR: this.config.tunnelCIDR,
      hostMtu: underlay.mtu,
      underlayFamily,
      hostEncryption: this.config.hostEncryption,
    };
    const pools = this.pools?.current() ?? { pools: [], problems: [] };
    const admitted = this.blocks(nodes, pools.pools);
    const blocks: PathBlock[] = admitted.blocks;
    const byNode = new Map<string, string[]>();
    for (const b of blocks) byNode.set(b.node, [...(byNode.get(b.node) ?? []), b.cidr]);
    const mesh = planMesh({
      self: self.name,
      selfPublicKey: this.keyPair.publicKey,
      nodes,
      settings,
      blocks: byNode,
      keySeen: this.keySeen.times(),
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
    reportBlockProblems(reporter, this.lastRefusedBlocks, admitted.refused);
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
    await this.reconcileBgp(nodes, pools.pools, blocks);
    // IPAM's pools follow the watch (it lists them only at start), so the collection
    // gives back the empty blocks of a pool since disabled, deleted or re-selected.
    this.podNetwork?.ipam.setPools(
      pools.pools,
      this.informer.get(self.name)?.metadata?.labels ?? {},
    );
    // The collection asks the apiserver for this node's pods, so it runs beside the
    // pass, one at a time: a pass that repairs routes (after `ip route flush`, when the
    // apiserver may be unreachable until the operator's routes are back) never waits
    // on it.
    if (this.podNetwork && !this.collecting) {
      this.collecting = this.podNetwork
        .collectGarbage()
        .catch((e: unknown) =>
          this.log.warn('IPAM garbage collection failed', { error: (e as Error).message }),
        )
        .finally(() => {
          this.collecting = undefined;
        });
    }
    this.lastPlan = plan;
    this.lastRefusedBlocks = admitted.refused;
    this.lastPaths = paths;
    this.lastRemote = remote;
    if (statusWriterNode(nodes.map((n) => n.name)) === self.name)
      await writeRemoteStatus(this.log, this.remoteStatus, this.multicluster, remote);
  }

  /**
   * BGP for the natively routed plaintext pools. A failure (BIRD missing, a
   * configuration it refuses) is an Event and status, not a failed pass: the mesh and
   * the encrypted pools do not depend on it, and the next pass tries again.
   */
  private async reconcileBgp(
    nodes: readonly MeshNode[],
    pools: readonly IpPool[],
    blocks: readonly PathBlock[],
  ): Promise<void> {
    if (!this.bgp?.enabled) return;
    const raw = new Map(this.informer.list().map((n) => [n.metadata?.name ?? '', n]));
    try {
      await this.bgp.reconcile({
        nodes: nodes.map((n) => ({
          name: n.name,
          address: n.internalIPs.find((a) => !a.includes(':')) ?? null,
          labels: raw.get(n.name)?.metadata?.labels ?? {},
          annotations: raw.get(n.name)?.metadata?.annotations ?? {},
        })),
        pools,
        blocks,
      });
    } catch (e) {
      const message = (e as Error).message;
      this.log.error('BGP not applied', { error: message });
      this.events.warn({ kind: 'Node', name: this.config.nodeName }, 'BGPFailed', message);
    }
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
    const changed = Object.keys(want).filter((k) => (annotations[k] ?? null) !== want[k]);
    if (changed.length === 0) return;
    // These annotations are this agent's alone: a value it did not write (someone with
    // write access to the Node) is put back, and said so.
    const overwritten = changed.filter(
      (k) => this.published.has(k) && this.published.get(k) !== (annotations[k] ?? null),
    );
    if (overwritten.length)
      this.log.warn('node annotations changed outside the agent; restoring them', {
        annotations: overwritten.join(','),
      });
    await this.kube.request(
      'PATCH',
      `/api/v1/nodes/${encodeURIComponent(self.name)}`,
      { metadata: { annotations: want } },
      { contentType: 'application/merge-patch+json' },
    );
    for (const [k, v] of Object.entries(want)) this.published.set(k, v);
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
      routes: {
        watching: this.routeWatch.watching,
        removed: this.routeWatch.stats.removed,
        ...this.routeStatus,
      },
      reconcile: { ...this.reconciler.stats },
      synced: this.synced,
      bgp: this.bgp?.status() ?? null,
    });
  }

  /** Packets dropped by policy and by the encryption guard, read from the table now. */
  async dropTotals(): Promise<DropTotals> {
    this.drops.observe(await readRuleCounters(this.runner), this.policyOrigins);
    return this.drops.totals();
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

/** A link's ifindex from sysfs (undefined when the link does not exist). */
function readIfindex(name: string): string | undefined {
  try {
    return readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8').trim();
  } catch {
    return undefined;
  }
}
