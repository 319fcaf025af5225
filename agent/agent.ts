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
// This file is the lifecycle and the wiring: the watches, the two loops and what
// each pass runs, the device watchdog, key rotation, status and health. The work of
// the passes lives beside it: the mesh pass with its paths and other clusters
// (agent/meshpass.ts), the table and its lock (agent/tablelane.ts), and the repair
// of routes someone else removed (agent/routedamage.ts).
import { readFileSync } from 'node:fs';
import type { V1Node, KubernetesObject } from '@kubernetes/client-node';
import { kubeClient, Informer, type KubeClient } from '../kube/index.ts';
import { KeyStore, type WireGuardKeyPair } from '../crypto/index.ts';
import {
  ENCAP_ROUTE_PROTOCOL,
  ENCRYPT_ROUTE_TABLE,
  WgCli,
  type WgClient,
} from '../tunnels/index.ts';
import { POD_ROUTE_PROTOCOL } from '../cni/index.ts';
import { IpCli, WorkerRunner, defaultRunner, type IpClient } from '../sys/index.ts';
import { NftTableMonitor } from '../nftables/index.ts';
import { PolicyWatch } from './policy.ts';
import type { DropTotals } from './drops.ts';
import {
  sameNodeForMesh,
  trimNodeForMesh,
  KeyObservations,
  NODE_FIELDS_FOR_MESH,
} from './meshnode.ts';
import { sameBlockClaim, trimBlockClaim, BLOCK_FIELDS_FOR_MESH } from './blocks.ts';
import type { MeshPlan } from './plan.ts';
import { PoolWatch } from './pools.ts';
import { DefaultPools } from './defaultpool.ts';
import type { DeviceProvider } from './meshdriver.ts';
import { chooseDevice } from './device.ts';
import { ReconcileLanes, type DirtyPhases } from './reconciler.ts';
import { BgpPhase, EXTERNAL_BIRD } from './bgpphase.ts';
import { DEFAULT_BGP_SETTINGS } from './bgp.ts';
import { PodNetwork } from './podnetwork.ts';
import { pathMtu } from './mtu.ts';
import { oncePerTurn, runInformer } from './watch.ts';
import { RouteWatch, announceDeletions } from './routewatch.ts';
import { RouteDamageRepair } from './routedamage.ts';
import { TableLane } from './tablelane.ts';
import { MeshPass } from './meshpass.ts';
import { IPAM_GROUP, IPAM_VERSION, IPAMBLOCK_PLURAL } from '../ipam/index.ts';
import { KubeEventRecorder } from './events.ts';
import {
  ANNOTATION_PUBLIC_KEY,
  HOST_ROUTE_TABLE,
  ROUTE_PROTOCOL,
  WIREGUARD_DEVICE,
} from './annotations.ts';
import type { Logger } from './log.ts';
import type { AgentConfig } from './config.ts';
import { composeStatus, type AgentStatus } from './status.ts';
import type { HealthFacts } from './health.ts';
import { MultiClusterWatch } from '../multicluster/index.ts';

export class Agent {
  readonly config: AgentConfig;
  private readonly log: Logger;
  private readonly kube: KubeClient;
  private readonly keys: KeyStore;
  private readonly wg: WgClient;
  private readonly ip: IpClient;
  private keyPair!: WireGuardKeyPair;
  /** null: this node has no WireGuard (no module, no wireguard-go); start() logs why. */
  private device: (DeviceProvider & { stop?: () => Promise<void> }) | null = null;
  private informer!: Informer<V1Node>;
  private blockInformer!: Informer<KubernetesObject>;
  private podNetwork: PodNetwork | undefined;
  private policy: PolicyWatch | undefined;
  private pools: PoolWatch | undefined;
  private defaultPools: DefaultPools | undefined;
  private events: KubeEventRecorder;
  private readonly keySeen = new KeyObservations();
  private multicluster: MultiClusterWatch | undefined;
  private bgp: BgpPhase | undefined;
  private synced = false;
  private rotationTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly tableMonitor: NftTableMonitor;
  private readonly routeWatch: RouteWatch;
  private readonly routeDamage: RouteDamageRepair;
  private readonly tableLane: TableLane;
  /** The dataplane loop's mesh pass, made at the end of start() (no pass runs before). */
  private mesh!: MeshPass;
  readonly reconciler: ReconcileLanes;
  /** Settled once the dataplane loop's first pass has ended, failed or not. */
  private readonly firstMeshAttempt: Promise<void>;
  private meshAttempted!: () => void;
  /** ip, wg and nft: through the netlink worker once it runs, spawned until then. */
  private readonly runner = new WorkerRunner(defaultRunner);

  constructor(config: AgentConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.kube = kubeClient(config.kubeconfig);
    this.keys = new KeyStore(config.stateDir);
    this.wg = new WgCli(this.runner);
    // A route the node needs, removed by anyone else (`ip route flush table main`),
    // would cut its pods off until the next resync; the kernel tells us at once. The
    // agent's own deletions are announced to the watch, so they are no damage: the IP
    // client is made from the watch, and the repair from the client, so the watch
    // reaches the repair through a closure.
    const scheduleRoutes = (reason: string) => this.reconciler.schedule(reason, 'routes');
    this.routeWatch = new RouteWatch({
      watched: () => {
        const underlay = this.mesh?.underlayDev ?? null;
        return {
          protocols: [ROUTE_PROTOCOL, POD_ROUTE_PROTOCOL, ENCAP_ROUTE_PROTOCOL],
          tables: [HOST_ROUTE_TABLE, ENCRYPT_ROUTE_TABLE],
          connectedDevs: underlay === null ? [] : [underlay],
        };
      },
      onDamage: (events) => this.routeDamage.damaged(events),
      onUnseen: scheduleRoutes,
      onError: (e) => this.log.warn('route monitor stopped; restarting', { error: e.message }),
    });
    this.ip = announceDeletions(new IpCli(this.runner), this.routeWatch);
    this.routeDamage = new RouteDamageRepair({
      ip: this.ip,
      log,
      ipam: () => this.podNetwork?.ipam,
      findUnderlay: () => this.mesh.findUnderlay(),
      schedule: scheduleRoutes,
    });
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
    this.events = new KubeEventRecorder(this.kube, config.nodeName, log);
    this.tableLane = new TableLane({
      runner: this.runner,
      monitor: this.tableMonitor,
      log,
      events: this.events,
      node: config.nodeName,
      policy: () => this.policy,
    });
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

    let wireguardProblem = '';
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
    } catch (e) {
      // Never pretend: no key is published, peers see a node without a usable key,
      // pools fall back or fail closed as their mode says, and status and an Event say why.
      wireguardProblem = (e as Error).message;
      this.log.error('WireGuard is unavailable on this node; running without it', {
        error: wireguardProblem,
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
    // Key sightings are recorded as the events arrive (see KeyObservations), once
    // for all the events of a turn (the first list's thousands of Nodes among them).
    const observeKeys = oncePerTurn(() => this.observeKeys());
    await runInformer(this.informer, 'nodes', this.log, (reason) => {
      observeKeys(undefined);
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
    const blocksChanged = oncePerTurn((reason: string) => {
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
    await runInformer(this.blockInformer, 'IPAM blocks', this.log, blocksChanged);
    this.podNetwork = new PodNetwork({
      node: this.config.nodeName,
      kube: this.kube,
      stateDir: this.config.stateDir,
      log: this.log,
      mtu: (pool?: string) =>
        (pool !== undefined ? this.mesh?.lastPaths?.mtu.byPool[pool] : undefined) ??
        this.mesh?.lastPaths?.mtu.pod ??
        this.mesh?.lastPlan?.device.mtu ??
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
    this.mesh = new MeshPass({
      config: this.config,
      log: this.log,
      kube: this.kube,
      events: this.events,
      ip: this.ip,
      wg: this.wg,
      keyPair: () => this.keyPair,
      device: this.device,
      wireguardProblem,
      informer: this.informer,
      blockInformer: this.blockInformer,
      keySeen: this.keySeen,
      pools: this.pools,
      podNetwork: this.podNetwork,
      multicluster: this.multicluster,
      bgp: this.bgp,
      table: this.tableLane,
    });
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
    await this.tableLane.stop();
    this.defaultPools?.stop();
    await this.informer?.stop();
    await this.blockInformer?.stop();
    await this.policy?.stop();
    await this.multicluster?.stop();
    await this.pools?.stop();
    await this.mesh?.collecting;
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

  private async reconcileDataplane(dirty: DirtyPhases): Promise<void> {
    // Each step runs even when the other failed; the first error fails the pass,
    // which retries every phase of the loop.
    const errors: unknown[] = [];
    // `routes`: something removed routes the node needs. The host routes go back first
    // (the tunnels' next hops may need the underlay's connected route), then the mesh
    // phase puts back its drivers' routes and rules.
    const routes = dirty.all || dirty.has('routes');
    const damage = routes ? await this.routeDamage.restore(errors) : null;
    await this.mesh.reconcile().catch((e) => errors.push(e));
    if (errors.length) throw errors[0];
    this.routeDamage.passSucceeded(damage);
  }

  /** The policy loop's pass; `nftables`: the table may be gone, verify it first. */
  private async reconcileTable(dirty: DirtyPhases): Promise<void> {
    await this.firstMeshAttempt;
    await this.tableLane.reconcile(dirty.all || dirty.has('nftables'));
  }

  async status(): Promise<AgentStatus> {
    const dev = await this.wg.show(WIREGUARD_DEVICE).catch(() => null);
    return composeStatus({
      node: this.config.nodeName,
      listenPort: this.config.listenPort,
      mode: this.device?.mode ?? 'unavailable',
      publicKey: this.keyPair?.publicKey ?? '',
      plan: this.mesh?.lastPlan ?? null,
      devicePeers: dev?.peers ?? [],
      policy: this.tableLane.status(),
      available: this.mesh?.available ?? null,
      pools: this.pools?.current().pools ?? [],
      paths: this.mesh?.lastPaths ?? null,
      remotes: this.multicluster?.snapshots() ?? [],
      remotePlan: this.mesh?.lastRemote ?? null,
      routes: {
        watching: this.routeWatch.watching,
        removed: this.routeWatch.stats.removed,
        ...this.routeDamage.status(),
      },
      reconcile: { ...this.reconciler.stats },
      synced: this.synced,
      bgp: this.bgp?.status() ?? null,
    });
  }

  /** Packets dropped by policy and by the encryption guard, read from the table now. */
  dropTotals(): Promise<DropTotals> {
    return this.tableLane.dropTotals();
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
    return this.mesh?.lastPlan ?? null;
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
