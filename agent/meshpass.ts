// The dataplane loop's mesh pass: from the watches' snapshot (Nodes, IPAM blocks, IP
// pools, other clusters) it plans the WireGuard mesh and every remote block's path,
// has the table lane apply the path plan's nftables fragment, applies the mesh, the
// paths and BGP, publishes this node's key and endpoint, and reports what it refused.
//
// Paths: at its first pass it probes which encapsulations this kernel has
// (WireGuard's answer is whether a device could be had at all: an agent on a node
// without WireGuard runs on, publishes no key, and its peers treat it as a node
// without a usable key). Each pass plans every remote block's path from the IP pools
// (agent/paths.ts): WireGuard routes only for the blocks that take WireGuard, the rest
// through tunnels/ drivers (VXLAN, IP-in-IP, native) and the encrypted pools' policy
// routing; the plan's nftables fragment (fail-closed drops, NAT) is composed into the
// table, which is applied before any route moves, so a Required pool is never routed
// in plaintext even for a moment.
//
// Multi-cluster: MultiClusterWatch (multicluster/) keeps the RemoteCluster and Peer
// objects and one RemoteClusterWatch per remote cluster; each pass adds
// planRemotePeers' peers and routes to wiremesh.wg beside planMesh's, and tells the
// path planner those ranges are reached only through WireGuard (no masquerade, a
// Required pool's traffic to them dropped off the tunnel). One node per cluster
// (statusWriterNode) writes the RemoteClusters' conditions.
//
// The agent makes it at the end of its start, once every watch it reads exists (no
// pass runs before the reconciler starts, just after), so what start decided (the
// WireGuard device, or why there is none) comes in as values; the key pair, which
// rotates, as a getter.
import type { V1Node, KubernetesObject } from '@kubernetes/client-node';
import type { Informer, KubeClient } from '../kube/index.ts';
import type { WireGuardKeyPair } from '../crypto/index.ts';
import { probeEncapsulations, type Availability, type WgClient } from '../tunnels/index.ts';
import type { IpClient } from '../sys/index.ts';
import type { IpPool } from '../ipam/index.ts';
import {
  MultiClusterWatch,
  RemoteClusterStatusWriter,
  planRemotePeers,
  statusWriterNode,
  type RemotePlan,
} from '../multicluster/index.ts';
import { meshNodeFromK8s, type KeyObservations, type MeshNode } from './meshnode.ts';
import { admitBlocks, blockClaimFromK8s, type RefusedBlock } from './blocks.ts';
import { assignTunnelAddresses, planMesh, type MeshPlan, type MeshSettings } from './plan.ts';
import { planPaths, type PathBlock, type PathInput, type PathPlan } from './paths.ts';
import { PathDriver, pathReportChanged } from './pathdriver.ts';
import type { PoolWatch } from './pools.ts';
import { parseCidr, formatCidr } from './cidr.ts';
import { MeshDriver, reportChanged, type DeviceProvider } from './meshdriver.ts';
import type { BgpPhase } from './bgpphase.ts';
import type { PodNetwork } from './podnetwork.ts';
import type { KubeEventRecorder } from './events.ts';
import {
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_ENDPOINT,
  ANNOTATION_HOST_ENCRYPTION,
  WIREGUARD_DEVICE,
} from './annotations.ts';
import { formatEndpoint } from './endpoint.ts';
import type { Logger } from './log.ts';
import type { AgentConfig } from './config.ts';
import type { TableLane } from './tablelane.ts';
import {
  reportBlockProblems,
  reportNodeProblems,
  reportPathEvents,
  reportRemoteProblems,
  writeRemoteStatus,
} from './meshreport.ts';

export interface MeshPassOptions {
  config: AgentConfig;
  log: Logger;
  kube: KubeClient;
  events: KubeEventRecorder;
  ip: IpClient;
  wg: WgClient;
  /** The node's key pair as it is now (rotation replaces it). */
  keyPair: () => WireGuardKeyPair;
  /** null: this node has no WireGuard (no module, no wireguard-go); see wireguardProblem. */
  device: DeviceProvider | null;
  wireguardProblem: string;
  informer: Informer<V1Node>;
  blockInformer: Informer<KubernetesObject>;
  keySeen: KeyObservations;
  pools: PoolWatch;
  podNetwork: PodNetwork;
  multicluster: MultiClusterWatch;
  bgp: BgpPhase;
  table: TableLane;
}

/** What the last pass planned: for status, the pods' MTU and the next pass's Events. */
interface LastPass {
  plan: MeshPlan | null;
  paths: PathPlan | null;
  remote: RemotePlan | null;
  refusedBlocks: RefusedBlock[] | null;
}

export class MeshPass {
  private readonly config: AgentConfig;
  private readonly log: Logger;
  private readonly kube: KubeClient;
  private readonly events: KubeEventRecorder;
  private readonly ip: IpClient;
  private readonly keyPair: () => WireGuardKeyPair;
  private readonly device: DeviceProvider | null;
  private readonly wireguardProblem: string;
  private readonly driver: MeshDriver | undefined;
  private readonly informer: Informer<V1Node>;
  private readonly blockInformer: Informer<KubernetesObject>;
  private readonly keySeen: KeyObservations;
  private readonly pools: PoolWatch;
  private readonly podNetwork: PodNetwork;
  private readonly multicluster: MultiClusterWatch;
  private readonly bgp: BgpPhase;
  private readonly table: TableLane;
  private readonly pathDriver: PathDriver;
  private readonly remoteStatus: RemoteClusterStatusWriter;
  private last: LastPass = { plan: null, paths: null, remote: null, refusedBlocks: null };
  private availability: Availability[] | null = null;
  /** The device of this node's InternalIP, as the last pass found it. */
  private underlay: string | null = null;
  /** Annotations this agent has published since it started (for the repair's log line). */
  private readonly published = new Map<string, string | null>();
  /** The IPAM collection in flight, if any (it runs beside the passes). */
  private collection: Promise<void> | undefined;

  constructor(o: MeshPassOptions) {
    this.config = o.config;
    this.log = o.log;
    this.kube = o.kube;
    this.events = o.events;
    this.ip = o.ip;
    this.keyPair = o.keyPair;
    this.device = o.device;
    this.wireguardProblem = o.wireguardProblem;
    this.driver = o.device ? new MeshDriver({ wg: o.wg, ip: o.ip, device: o.device }) : undefined;
    this.informer = o.informer;
    this.blockInformer = o.blockInformer;
    this.keySeen = o.keySeen;
    this.pools = o.pools;
    this.podNetwork = o.podNetwork;
    this.multicluster = o.multicluster;
    this.bgp = o.bgp;
    this.table = o.table;
    this.pathDriver = new PathDriver(o.ip);
    this.remoteStatus = new RemoteClusterStatusWriter(o.kube);
  }

  get lastPlan(): MeshPlan | null {
    return this.last.plan;
  }

  get lastPaths(): PathPlan | null {
    return this.last.paths;
  }

  get lastRemote(): RemotePlan | null {
    return this.last.remote;
  }

  /** The encapsulations this node has; null before the first pass probed them. */
  get available(): Availability[] | null {
    return this.availability;
  }

  get underlayDev(): string | null {
    return this.underlay;
  }

  /** The IPAM collection in flight, if any. */
  get collecting(): Promise<void> | undefined {
    return this.collection;
  }

  /** The underlay device: the last pass's, or looked up before the first one. */
  async findUnderlay(): Promise<string | null> {
    if (this.underlay !== null) return this.underlay;
    const node = this.informer.get(this.config.nodeName);
    const internalIP = node ? meshNodeFromK8s(node).internalIPs[0] : undefined;
    if (internalIP === undefined) return null;
    return (await this.ip.linkOfAddress(internalIP))?.name ?? null;
  }

  async reconcile(): Promise<void> {
    const nodes = this.meshNodes();
    const self = nodes.find((n) => n.name === this.config.nodeName);
    if (!self) throw new Error(`this node (${this.config.nodeName}) has no Node object yet`);
    const internalIP = self.internalIPs[0];
    if (!internalIP) throw new Error(`Node ${self.name} has no InternalIP address`);

    const underlay = await this.ip.linkOfAddress(internalIP);
    if (!underlay) throw new Error(`no device carries this node's InternalIP ${internalIP}`);
    this.underlay = underlay.name;
    const underlayFamily = internalIP.includes(':') ? 6 : 4;
    const settings: MeshSettings = {
      listenPort: this.config.listenPort,
      tunnelCIDR: this.config.tunnelCIDR,
      hostMtu: underlay.mtu,
      underlayFamily,
      hostEncryption: this.config.hostEncryption,
    };
    const pools = this.pools.current();
    const admitted = this.blocks(nodes, pools.pools);
    const blocks: PathBlock[] = admitted.blocks;
    const byNode = new Map<string, string[]>();
    for (const b of blocks) byNode.set(b.node, [...(byNode.get(b.node) ?? []), b.cidr]);
    const mesh = planMesh({
      self: self.name,
      selfPublicKey: this.keyPair().publicKey,
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
    reportNodeProblems(reporter, self, nodes, plan.refused, this.last.plan, available);
    reportPathEvents(reporter, this.last.paths, paths);
    reportBlockProblems(reporter, this.last.refusedBlocks, admitted.refused);
    reportRemoteProblems(reporter, this.last.remote, remote.refused);

    // The fail-closed drops go in before any route moves.
    await this.table.usePathNft(paths.nft);

    if (this.driver) {
      const { privateKey, publicKey } = this.keyPair();
      const report = await this.driver.apply(plan, privateKey, publicKey);
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
    this.podNetwork.ipam.setPools(
      pools.pools,
      this.informer.get(self.name)?.metadata?.labels ?? {},
    );
    // The collection asks the apiserver for this node's pods, so it runs beside the
    // pass, one at a time: a pass that repairs routes (after `ip route flush`, when the
    // apiserver may be unreachable until the operator's routes are back) never waits
    // on it.
    if (!this.collection) {
      this.collection = this.podNetwork
        .collectGarbage()
        .catch((e: unknown) =>
          this.log.warn('IPAM garbage collection failed', { error: (e as Error).message }),
        )
        .finally(() => {
          this.collection = undefined;
        });
    }
    this.last = { plan, paths, remote, refusedBlocks: admitted.refused };
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
    if (!this.bgp.enabled) return;
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
    const objects = this.multicluster.objects();
    const localKeys = new Map<string, string>();
    for (const n of nodes) if (n.publicKey) localKeys.set(n.publicKey, n.name);
    localKeys.set(this.keyPair().publicKey, this.config.nodeName);
    const plan = planRemotePeers({
      localPools: pools,
      tunnelCIDR: this.config.tunnelCIDR,
      localKeys,
      remotes: this.multicluster.snapshots(),
      peers: objects.peers,
      listenPort: this.config.listenPort,
      tunnelAddress: mesh.tunnelAddress,
    });
    return { ...plan, refused: [...objects.problems, ...plan.refused] };
  }

  /** Probe once, at the first pass (the probes need this node's underlay address). */
  private async probe(localUnderlayIP: string): Promise<Availability[]> {
    if (this.availability) return this.availability;
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
    this.availability = available;
    return available;
  }

  private async publishAnnotations(self: MeshNode, internalIP: string): Promise<void> {
    const node = this.informer.get(self.name);
    const annotations = node?.metadata?.annotations ?? {};
    // Without WireGuard no key is published, so peers see a node without a usable key.
    const want: Record<string, string | null> = this.device
      ? {
          [ANNOTATION_PUBLIC_KEY]: this.keyPair().publicKey,
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
      localAddresses: this.podNetwork.ipam
        .blocks()
        .flatMap((b) => [...b.allocations.values()].map((a) => a.address)),
    });
  }

  private meshNodes(): MeshNode[] {
    return this.informer.list().map(meshNodeFromK8s);
  }
}
