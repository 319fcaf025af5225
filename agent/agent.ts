// The node agent: keeps a snapshot of the cluster's Nodes, IPAM blocks, Pods,
// Namespaces and NetworkPolicies from watches, publishes this node's WireGuard
// public key and endpoint, and runs the reconcile loop whose phases plan and apply
// the mesh (`mesh`) and the nftables table (`policy`). A watch event marks only its
// phase dirty, so a pod's new label costs a policy compile, not a mesh pass; the
// resync runs both and repairs drift. Nothing touches the dataplane before the first
// full lists. A reconcile error is logged, counted and retried; the agent never
// exits on one. On shutdown it leaves the dataplane in place, so traffic keeps
// flowing across an agent restart.
import { existsSync } from 'node:fs';
import type { V1Node, KubernetesObject } from '@kubernetes/client-node';
import { kubeClient, Informer, type KubeClient } from '../kube/index.ts';
import { KeyStore, type WireGuardKeyPair } from '../crypto/index.ts';
import { WgCli, type WgClient, type WgPeer } from '../tunnels/index.ts';
import { IpCli, defaultRunner, type IpClient } from '../sys/index.ts';
import { NftCli, TableDriver, type NftApplyReport } from '../nftables/index.ts';
import type { CompileStats } from '../policy/index.ts';
import { PolicyWatch } from './policy.ts';
import { composeTable } from './nftable.ts';
import { meshNodeFromK8s, type MeshNode } from './meshnode.ts';
import { planMesh, type MeshPlan, type MeshSettings } from './plan.ts';
import { MeshDriver, reportChanged, type DeviceProvider } from './meshdriver.ts';
import { chooseDevice, type WireGuardMode } from './device.ts';
import { Reconciler, type DirtyPhases } from './reconciler.ts';
import { PodNetwork } from './podnetwork.ts';
import { pathMtu } from './mtu.ts';
import { runInformer } from './watch.ts';
import { ipamBlockFromK8s, IPAM_GROUP, IPAM_VERSION, IPAMBLOCK_PLURAL } from '../ipam/index.ts';
import { KubeEventRecorder } from './events.ts';
import {
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_ENDPOINT,
  ANNOTATION_HOST_ENCRYPTION,
  WIREGUARD_DEVICE,
  WIREGUARD_PORT,
} from './annotations.ts';
import { formatEndpoint } from './endpoint.ts';
import type { Logger } from './log.ts';

export interface AgentConfig {
  nodeName: string;
  kubeconfig?: string;
  stateDir: string;
  runDir: string;
  listenPort: number;
  tunnelCIDR: string;
  resyncMs: number;
  wireguardMode: WireGuardMode;
  wireguardGo?: string;
  keyRotationPeriodMs: number;
  /** Route host-to-host traffic between nodes through the mesh (pairs where both agree). */
  hostEncryption: boolean;
}

export const DEFAULT_TUNNEL_CIDR = '100.127.0.0/16';

export function defaultAgentConfig(nodeName: string): AgentConfig {
  return {
    nodeName,
    stateDir: '/var/lib/wiremesh',
    runDir: '/run/wiremesh',
    listenPort: WIREGUARD_PORT,
    tunnelCIDR: DEFAULT_TUNNEL_CIDR,
    resyncMs: 30_000,
    wireguardMode: 'auto',
    keyRotationPeriodMs: 0,
    hostEncryption: false,
  };
}

/** A WireGuard peer as `wg show` reports it, with the node it belongs to. */
export type PeerStatus = Omit<WgPeer, 'persistentKeepalive'> & { node: string };

export interface AgentStatus {
  node: string;
  wireguard: {
    mode: string;
    device: string;
    listenPort: number;
    publicKey: string;
    tunnelAddress: string | null;
    mtu: number | null;
  };
  peers: PeerStatus[];
  refused: { node: string; reason: string; message: string }[];
  policy: {
    /** What the compiler produced for this node, null before the first policy pass. */
    stats: CompileStats | null;
    problems: number;
    lastApply: NftApplyReport | null;
  };
  reconcile: Reconciler['stats'];
  synced: boolean;
}

export class Agent {
  readonly config: AgentConfig;
  private readonly log: Logger;
  private readonly kube: KubeClient;
  private readonly keys: KeyStore;
  private readonly wg: WgClient;
  private readonly ip: IpClient;
  private keyPair!: WireGuardKeyPair;
  private device!: DeviceProvider & { stop?: () => Promise<void> };
  private driver!: MeshDriver;
  private informer!: Informer<V1Node>;
  private blockInformer!: Informer<KubernetesObject>;
  private podNetwork: PodNetwork | undefined;
  private policy: PolicyWatch | undefined;
  private readonly table: TableDriver;
  private policyStatus: AgentStatus['policy'] = { stats: null, problems: 0, lastApply: null };
  private events: KubeEventRecorder;
  private lastPlan: MeshPlan | null = null;
  private synced = false;
  private rotationTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  readonly reconciler: Reconciler;

  constructor(config: AgentConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.kube = kubeClient(config.kubeconfig);
    this.keys = new KeyStore(config.stateDir);
    this.wg = new WgCli(defaultRunner);
    this.ip = new IpCli(defaultRunner);
    this.table = new TableDriver(new NftCli(defaultRunner));
    this.events = new KubeEventRecorder(this.kube, config.nodeName, log);
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

    const schedule = (reason: string) => this.reconciler.schedule(reason, 'mesh');
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
      mtu: () => this.lastPlan?.device.mtu ?? pathMtu(1500, 'wireguard', 4),
    });
    await this.podNetwork.start(`${this.config.runDir}/cni.sock`);
    this.policy = new PolicyWatch(this.kube, this.log);
    await this.policy.start((reason) => this.reconciler.schedule(reason, 'policy'));
    this.synced = true;
    this.log.info('initial node list received', { nodes: this.informer.list().length });
    this.reconciler.start();
    // A vanished device (wireguard-go killed, `ip link del`) is repaired at once rather
    // than at the next resync: checking /sys every second costs next to nothing.
    this.watchdog = setInterval(() => {
      if (!existsSync(`/sys/class/net/${WIREGUARD_DEVICE}`))
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
    await this.informer?.stop();
    await this.blockInformer?.stop();
    await this.policy?.stop();
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

  /** Pod address blocks by owning node, from the IPAMBlock objects (validated). */
  private blocksByNode(): Map<string, string[]> {
    const byNode = new Map<string, string[]>();
    for (const raw of this.blockInformer.list()) {
      const { block } = ipamBlockFromK8s(raw);
      if (!block) continue;
      byNode.set(block.node, [...(byNode.get(block.node) ?? []), block.cidr]);
    }
    return byNode;
  }

  private meshNodes(): MeshNode[] {
    return this.informer.list().map(meshNodeFromK8s);
  }

  private async reconcileOnce(dirty: DirtyPhases): Promise<void> {
    // Each phase runs even when the other failed; the first error fails the pass,
    // which retries every phase.
    const errors: unknown[] = [];
    if (dirty.all || dirty.has('mesh')) await this.reconcileMesh().catch((e) => errors.push(e));
    if (dirty.all || dirty.has('policy'))
      await this.reconcilePolicy(dirty.all).catch((e) => errors.push(e));
    if (errors.length) throw errors[0];
  }

  /** Compile this node's policy, compose the table and apply the difference. */
  private async reconcilePolicy(resync: boolean): Promise<void> {
    if (!this.policy) return;
    const result = this.policy.compile(this.config.nodeName);
    this.policy.report(result.problems, this.events);
    const table = composeTable({ policy: result.table });
    if (resync) {
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
    };
  }

  private async reconcileMesh(): Promise<void> {
    const nodes = this.meshNodes();
    const self = nodes.find((n) => n.name === this.config.nodeName);
    if (!self) throw new Error(`this node (${this.config.nodeName}) has no Node object yet`);
    const internalIP = self.internalIPs[0];
    if (!internalIP) throw new Error(`Node ${self.name} has no InternalIP address`);

    const underlay = await this.ip.linkOfAddress(internalIP);
    const settings: MeshSettings = {
      listenPort: this.config.listenPort,
      tunnelCIDR: this.config.tunnelCIDR,
      hostMtu: underlay?.mtu ?? 1500,
      underlayFamily: internalIP.includes(':') ? 6 : 4,
      hostEncryption: this.config.hostEncryption,
    };
    const plan = planMesh({
      self: self.name,
      selfPublicKey: this.keyPair.publicKey,
      nodes,
      settings,
      blocks: this.blocksByNode(),
    });
    const keysOfEvents = new Set<string>();
    for (const r of plan.refused) {
      const target = {
        kind: 'Node' as const,
        name: r.node,
        uid: nodes.find((n) => n.name === r.node)?.uid,
      };
      const message = `wiremesh on ${self.name} does not program node ${r.node}: ${r.message}`;
      keysOfEvents.add(KubeEventRecorder.key(target, r.reason, message));
      if (
        !this.lastPlan?.refused.some(
          (x) => x.node === r.node && x.reason === r.reason && x.message === r.message,
        )
      ) {
        this.log.warn('node refused', { node: r.node, reason: r.reason, detail: r.message });
      }
      this.events.warn(target, r.reason, message);
    }
    this.events.retain(keysOfEvents, ['Node']);

    const report = await this.driver.apply(plan, this.keyPair.privateKey, this.keyPair.publicKey);
    // Publish after the device has the key: a peer that learns a new key (rotation)
    // handshakes at once, and that handshake must find the new key in place.
    await this.publishAnnotations(self, internalIP);
    await this.podNetwork
      ?.collectGarbage()
      .catch((e: unknown) =>
        this.log.warn('IPAM garbage collection failed', { error: (e as Error).message }),
      );
    if (reportChanged(report))
      this.log.info('mesh applied', { ...report, peers: plan.peers.length });
    this.lastPlan = plan;
  }

  private async publishAnnotations(self: MeshNode, internalIP: string): Promise<void> {
    const node = this.informer.get(self.name);
    const annotations = node?.metadata?.annotations ?? {};
    const want = {
      [ANNOTATION_PUBLIC_KEY]: this.keyPair.publicKey,
      [ANNOTATION_ENDPOINT]: formatEndpoint(internalIP, this.config.listenPort),
      [ANNOTATION_HOST_ENCRYPTION]: String(this.config.hostEncryption),
    };
    if (Object.entries(want).every(([k, v]) => annotations[k] === v)) return;
    await this.kube.request(
      'PATCH',
      `/api/v1/nodes/${encodeURIComponent(self.name)}`,
      { metadata: { annotations: want } },
      { contentType: 'application/merge-patch+json' },
    );
    this.log.info('published WireGuard key and endpoint', {
      publicKey: want[ANNOTATION_PUBLIC_KEY],
      endpoint: want[ANNOTATION_ENDPOINT],
    });
  }

  async status(): Promise<AgentStatus> {
    const dev = await this.wg.show(WIREGUARD_DEVICE).catch(() => null);
    const byKey = new Map((this.lastPlan?.peers ?? []).map((p) => [p.publicKey, p]));
    const peers: PeerStatus[] = (dev?.peers ?? []).map((p) => ({
      node: byKey.get(p.publicKey)?.node ?? '(unknown)',
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIPs: p.allowedIPs,
      latestHandshake: p.latestHandshake,
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
    }));
    peers.sort((a, b) => (a.node < b.node ? -1 : 1));
    return {
      node: this.config.nodeName,
      wireguard: {
        mode: this.device?.mode ?? 'unknown',
        device: WIREGUARD_DEVICE,
        listenPort: this.config.listenPort,
        publicKey: this.keyPair?.publicKey ?? '',
        tunnelAddress: this.lastPlan?.tunnelAddress ?? null,
        mtu: this.lastPlan?.device.mtu ?? null,
      },
      peers,
      refused: this.lastPlan?.refused ?? [],
      policy: this.policyStatus,
      reconcile: { ...this.reconciler.stats },
      synced: this.synced,
    };
  }

  /** The plan the agent would apply now (for `wiremesh plan`). */
  currentPlan(): MeshPlan | null {
    return this.lastPlan;
  }
}
