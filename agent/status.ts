// What `wiremesh status` reports of one agent (the agent's status socket, the
// metrics and the CLI read this shape).
import type { Availability, WgPeer } from '../tunnels/index.ts';
import type { NftApplyReport } from '../nftables/index.ts';
import type { CompileStats } from '../policy/index.ts';
import type { IpPool } from '../ipam/index.ts';
import type { Condition } from '../multicluster/index.ts';
import type { Path, PathPlan } from './paths.ts';
import type { Reconciler } from './reconciler.ts';

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
  reconcile: Reconciler['stats'];
  synced: boolean;
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
