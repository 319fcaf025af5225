// What `wiremesh status` reports of one agent (the agent's status socket, the
// metrics and the CLI read this shape).
import type { Availability, WgPeer } from '../tunnels/index.ts';
import type { NftApplyReport } from '../nftables/index.ts';
import type { CompileStats } from '../policy/index.ts';
import type { IpPool } from '../ipam/index.ts';
import type { Condition, RemoteClusterSnapshot, RemotePlan } from '../multicluster/index.ts';
import { WIREGUARD_DEVICE } from './annotations.ts';
import type { Path, PathPlan } from './paths.ts';
import type { MeshPlan } from './plan.ts';
import type { Reconciler } from './reconciler.ts';
import type { BgpStatus } from './bgpphase.ts';

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
    /**
     * The last policy pass, in ms: the compile (next to 0 when reused), and the
     * table's verify (on a resync) and apply.
     */
    lastPass?: { compileMs: number; applyMs: number };
    /**
     * Resync passes that read the whole table back to look for drift; the others relied
     * on the kernel's change notifications (`watching`: the agent's own transactions
     * are told from others', so a resync reads the table only after someone else's).
     */
    tableReads?: number;
    watching?: boolean;
  };
  paths: {
    /** What this node can use, probed at start-up (null before the first mesh pass). */
    available: Availability[] | null;
    pools: Pick<
      IpPool,
      'name' | 'cidr' | 'encryption' | 'encryptionMode' | 'encapsulation' | 'natOutgoing'
    >[];
    blocks: { cidr: string; node: string; pool: string; path: Path; reason: string }[];
    mtu: PathPlan['mtu'] | null;
    /** Conditions reported as Events (fallbacks, blocked pools, missing encapsulations). */
    events: PathPlan['events'];
  };
  /** Remote clusters (RemoteCluster objects); their nodes' peers are in `peers` too. */
  remotes?: RemoteStatus[];
  /** The route watch and what it repaired (agent/routewatch.ts, agent/routerepair.ts). */
  routes?: RouteStatus;
  /** BGP sessions and announced blocks (agent/bgpphase.ts); absent or null with BGP off. */
  bgp?: BgpStatus | null;
  reconcile: Reconciler['stats'];
  synced: boolean;
}

export interface RouteStatus {
  /** The kernel's route notifications are followed (`ip monitor` runs). */
  watching: boolean;
  /** Routes and rules the node needs that someone else removed, as the watch saw them. */
  removed: number;
  /** Passes that repaired such a removal. */
  repairs: number;
  /** Routes written back: removed ones as they were, missing pod host and connected routes. */
  restored: number;
  /**
   * The last repair: when the removal was seen, how many routes and rules went (the
   * first ten named, as `ip monitor` printed them), how long until the removed routes
   * were written back (`restoredMs`, null when the pass had none to write) and until
   * the pass that verified every route ended (`repairedMs`).
   */
  lastRepair: {
    at: string;
    count: number;
    removed: string[];
    restoredMs: number | null;
    repairedMs: number;
  } | null;
}

export interface RemoteStatus {
  name: string;
  synced: boolean;
  reachable: boolean;
  lastError: string | null;
  conditions: Pick<Condition, 'type' | 'status' | 'reason' | 'message'>[];
  /** The remote nodes programmed as WireGuard peers (node `<cluster>/<name>`). */
  peers: PeerStatus[];
}

/** What the agent knows at the moment of the question, for composeStatus. */
export interface StatusParts {
  node: string;
  listenPort: number;
  /** How the WireGuard device is provided, or `unavailable`. */
  mode: string;
  publicKey: string;
  /** The last mesh plan applied, null before the first mesh pass. */
  plan: MeshPlan | null;
  /** The device's peers as `wg show` reports them now. */
  devicePeers: readonly WgPeer[];
  policy: AgentStatus['policy'];
  available: Availability[] | null;
  pools: readonly IpPool[];
  paths: PathPlan | null;
  remotes: readonly RemoteClusterSnapshot[];
  remotePlan: RemotePlan | null;
  routes?: RouteStatus;
  reconcile: Reconciler['stats'];
  synced: boolean;
  bgp?: BgpStatus | null;
}

export function composeStatus(p: StatusParts): AgentStatus {
  const byKey = new Map((p.plan?.peers ?? []).map((x) => [x.publicKey, x]));
  const peers: PeerStatus[] = p.devicePeers.map((x) => ({
    node: byKey.get(x.publicKey)?.node ?? '(unknown)',
    publicKey: x.publicKey,
    endpoint: x.endpoint,
    allowedIPs: x.allowedIPs,
    latestHandshake: x.latestHandshake,
    rxBytes: x.rxBytes,
    txBytes: x.txBytes,
  }));
  peers.sort((a, b) => (a.node < b.node ? -1 : 1));
  return {
    node: p.node,
    wireguard: {
      mode: p.mode,
      device: WIREGUARD_DEVICE,
      listenPort: p.listenPort,
      publicKey: p.publicKey,
      tunnelAddress: p.plan?.tunnelAddress ?? null,
      mtu: p.plan?.device.mtu ?? null,
    },
    peers,
    refused: p.plan?.refused ?? [],
    policy: p.policy,
    paths: {
      available: p.available,
      pools: p.pools.map((x) => ({
        name: x.name,
        cidr: x.cidr,
        encryption: x.encryption,
        encryptionMode: x.encryptionMode,
        encapsulation: x.encapsulation,
        natOutgoing: x.natOutgoing,
      })),
      blocks: (p.paths?.blocks ?? []).map((b) => ({
        cidr: b.cidr,
        node: b.node,
        pool: b.pool,
        path: b.path,
        reason: b.reason,
      })),
      mtu: p.paths?.mtu ?? null,
      events: p.paths?.events ?? [],
    },
    remotes: p.remotes.map((r) => ({
      name: r.name,
      synced: r.synced,
      reachable: r.reachable,
      lastError: r.lastError,
      conditions: p.remotePlan?.clusters.find((c) => c.name === r.name)?.conditions ?? [],
      peers: peers.filter((x) => x.node.startsWith(`${r.name}/`)),
    })),
    ...(p.routes ? { routes: p.routes } : {}),
    reconcile: p.reconcile,
    synced: p.synced,
    ...(p.bgp ? { bgp: p.bgp } : {}),
  };
}
