// The agent's BGP phase: it watches BGPPeer objects, turns the mesh pass's facts
// (nodes, pools, admitted blocks) into a BirdPlan (agent/bgp.ts) and has the node's
// BIRD run it (bgp/daemon.ts); every few seconds it reads the sessions back for
// status and metrics, and a session that leaves Established is a Warning Event on
// this node. With BGP off it starts nothing.
//
// Where BIRD runs: as the agent's child, or (`externalBird`, the manifest's way) in the
// wiremesh-wireguard pod, which starts it on the bird.conf this phase writes into the
// shared host directory and stops it when the file goes. The second keeps BGP sessions
// and the routes learnt over them through an agent upgrade or a restart of its
// container, which ends every process of that container.
import { join } from 'node:path';
import { mkdir } from 'node:fs/promises';
import type { KubernetesObject } from '@kubernetes/client-node';
import { Informer, type KubeClient } from '../kube/index.ts';
import { parseLabelSelector } from '../ipam/index.ts';
import { BirdDaemon, removeBirdConfig, type BgpSession, type BirdPlan } from '../bgp/index.ts';
import { planBgp, type BgpInput, type BgpSettings, type ExternalPeer } from './bgp.ts';
import { KubeEventRecorder, type EventSink } from './events.ts';
import type { Logger } from './log.ts';
import { runInformer } from './watch.ts';

/** What `wiremesh status` and the metrics show of BGP. */
export interface BgpStatus {
  /** The sessions BIRD reports (none until it runs). */
  sessions: {
    name: string;
    neighbor: string;
    as: number | null;
    state: string;
    since: string;
    lastError: string;
    routesImported: number;
    routesExported: number;
  }[];
  /** The blocks this node announces. */
  announced: string[];
  problems: string[];
  /** BIRD's last failure (start, check or reload), '' when none. */
  error: string;
}

/** The --bird value saying another process runs BIRD on the file the agent writes. */
export const EXTERNAL_BIRD = 'external';

const POLL_MS = 3000;
const READ_FAILED = "reading BIRD's sessions: ";
const NO_ANSWER = 'BIRD does not answer on ';

/** BGPPeer objects as the planner's type; malformed ones are skipped with a reason. */
export function externalPeersFromK8s(objects: readonly KubernetesObject[]): {
  peers: ExternalPeer[];
  problems: string[];
} {
  const peers: ExternalPeer[] = [];
  const problems: string[] = [];
  for (const o of objects) {
    const name = o.metadata?.name ?? '';
    const spec = (o as { spec?: Record<string, unknown> }).spec ?? {};
    const address = spec.peerIP;
    const as = spec.asNumber;
    const selector = parseLabelSelector(spec.nodeSelector);
    if (typeof address !== 'string' || !/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) {
      problems.push(`BGPPeer ${name}: peerIP must be an IPv4 address`);
      continue;
    }
    if (typeof as !== 'number' || !Number.isInteger(as) || as < 1 || as > 4294967295) {
      problems.push(`BGPPeer ${name}: asNumber must be 1-4294967295`);
      continue;
    }
    if (!selector.ok) {
      problems.push(`BGPPeer ${name}: ${selector.reason}`);
      continue;
    }
    peers.push({ name, address, asNumber: as, nodeSelector: selector.value });
  }
  return { peers, problems };
}

export class BgpPhase {
  private readonly settings: BgpSettings;
  private readonly self: string;
  private readonly log: Logger;
  private readonly events: EventSink & { retain?: KubeEventRecorder['retain'] };
  private readonly peers: Informer<KubernetesObject> | null;
  private readonly daemon: BirdDaemon | null;
  private readonly dir: string;
  private readonly externalBird: boolean;
  private timer: NodeJS.Timeout | undefined;
  private lastPlan: BirdPlan | null = null;
  private current: BgpStatus = { sessions: [], announced: [], problems: [], error: '' };
  private wasUp = new Set<string>();

  constructor(deps: {
    kube: KubeClient;
    log: Logger;
    events: EventSink;
    self: string;
    settings: BgpSettings;
    runDir: string;
    birdPath?: string;
    /** BIRD is run by another process (the wiremesh-wireguard pod's `wiremesh bird`). */
    externalBird?: boolean;
  }) {
    this.settings = deps.settings;
    this.self = deps.self;
    this.log = deps.log;
    this.events = deps.events;
    this.dir = join(deps.runDir, 'bird');
    this.externalBird = deps.externalBird ?? false;
    this.peers = deps.settings.enabled
      ? new Informer(deps.kube, '/apis/wiremesh.io/v1alpha1/bgppeers')
      : null;
    this.daemon = deps.settings.enabled
      ? new BirdDaemon({
          configPath: join(this.dir, 'bird.conf'),
          socketPath: join(this.dir, 'bird.ctl'),
          pidPath: join(this.dir, 'bird.pid'),
          ...(deps.birdPath ? { birdPath: deps.birdPath } : {}),
          log: (line) => this.log.info('bird', { line }),
          external: this.externalBird,
        })
      : null;
  }

  get enabled(): boolean {
    return this.settings.enabled;
  }

  async start(onChange: (reason: string) => void): Promise<void> {
    if (!this.peers) {
      // BGP off: a BIRD that runs outside this container still runs the file an
      // earlier agent (with BGP on) wrote; removing it stops that BIRD, which withdraws
      // this node's blocks from its peers.
      if (this.externalBird && (await removeBirdConfig(join(this.dir, 'bird.conf'))))
        this.log.info('BGP is off: removed bird.conf, so BIRD stops', {});
      return;
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await runInformer(this.peers, 'BGP peers', this.log, onChange);
    this.timer = setInterval(() => void this.poll(), POLL_MS);
    this.timer.unref();
  }

  /** Plans and applies; the mesh pass calls it with what it has just admitted. */
  async reconcile(input: Omit<BgpInput, 'self' | 'settings' | 'externalPeers'>): Promise<void> {
    if (!this.daemon || !this.peers) return;
    const external = externalPeersFromK8s(this.peers.list());
    const { plan, problems } = planBgp({
      ...input,
      self: this.self,
      settings: this.settings,
      externalPeers: external.peers,
    });
    const all = [...external.problems, ...problems];
    for (const p of all)
      if (!this.current.problems.includes(p)) this.log.warn('bgp', { problem: p });
    this.current = { ...this.current, problems: all, announced: plan?.announce ?? [] };
    if (!plan) return;
    try {
      const result = await this.daemon.apply(plan);
      if (result.changed || result.started)
        this.log.info('bgp applied', {
          neighbors: plan.neighbors.length,
          announced: plan.announce.length,
          started: result.started,
          running: result.running,
        });
      this.current.error = result.running
        ? ''
        : `${NO_ANSWER}${join(this.dir, 'bird.ctl')}: it is started on the written ` +
          'bird.conf by the bird container of the wiremesh-wireguard pod on this node';
      this.lastPlan = plan;
    } catch (e) {
      this.current.error = (e as Error).message;
      throw e;
    }
  }

  /** Reads the sessions; a session that was Established and is no longer is an Event. */
  async poll(): Promise<void> {
    if (!this.daemon || !this.lastPlan) return;
    if (!this.externalBird && !this.daemon.pid) return;
    let sessions: BgpSession[];
    try {
      sessions = await this.daemon.sessions();
    } catch (e) {
      this.current.error = `${READ_FAILED}${(e as Error).message}`;
      return;
    }
    // BIRD answers again (or was started after the pass): those errors are over.
    if (this.current.error.startsWith(READ_FAILED) || this.current.error.startsWith(NO_ANSWER))
      this.current.error = '';
    const neighbors = new Map(this.lastPlan.neighbors.map((n) => [n.name, n]));
    const up = new Set<string>();
    this.current.sessions = sessions
      .filter((s) => neighbors.has(s.name))
      .map((s) => {
        const n = neighbors.get(s.name);
        if (s.info === 'Established') up.add(s.name);
        return {
          name: s.name,
          neighbor: s.neighborAddress ?? n?.address ?? '',
          as: s.neighborAS ?? n?.as ?? null,
          state: s.info || s.state,
          since: s.since,
          lastError: s.lastError ?? '',
          routesImported: s.importedRoutes ?? 0,
          routesExported: s.exportedRoutes ?? 0,
        };
      });
    const target = { kind: 'Node' as const, name: this.self };
    for (const name of this.wasUp) {
      if (up.has(name)) continue;
      const s = this.current.sessions.find((x) => x.name === name);
      if (!s) continue; // the neighbour left the plan: not a failure
      const message = `BGP session ${name} with ${s.neighbor} (AS ${s.as ?? '?'}) is down: ${s.state}${s.lastError ? ` (${s.lastError})` : ''}`;
      this.log.warn('bgp session down', { session: name, neighbor: s.neighbor, state: s.state });
      this.events.warn(target, 'BGPSessionDown', message);
    }
    this.wasUp = up;
  }

  status(): BgpStatus | null {
    return this.settings.enabled ? this.current : null;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.peers?.stop();
    // BIRD as the agent's child is left to share its end: a stopped agent container
    // (or lab process group) takes it down, and the neighbours withdraw this node's
    // blocks; the next agent ends any BIRD left over and starts its own. An external
    // BIRD keeps running the last file written: the next agent takes it over as it is.
  }
}
