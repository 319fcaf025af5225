// The agent's Prometheus metrics (prom-client), served on GET /metrics of a plain
// HTTP listener (setting `metrics-address`, default 0.0.0.0:9825 on the node's
// network). No external exporter: the per-peer WireGuard series come from the
// agent's own `wg show` (Agent.status()), read once per scrape, so a scrape shows
// exactly the peers the device has now and a removed peer's series disappears.
//
// Series (all prefixed wiremesh_; plus prom-client's process_* and nodejs_* ones):
//   wireguard_peer_latest_handshake_age_seconds{peer,public_key}  +Inf: never
//   wireguard_peer_latest_handshake_timestamp_seconds{peer,public_key}  0: never
//   wireguard_peer_receive_bytes_total / _transmit_bytes_total{peer,public_key}
//   reconcile_duration_seconds{phase}, reconcile_errors_total{phase}
//   ipam_block_addresses_allocated / _capacity{block,pool,state}
//   ipam_addresses_allocated / _capacity (this node, over its held blocks)
//   policy_rules, policy_network_policies, policy_isolated_pods{direction},
//   policy_nft_objects{kind}, policy_problems
//   cni_request_duration_seconds{command,result}
//   remote_blocks{path}, refused_nodes, agent_synced, agent_info{node,public_key,wireguard_mode}
//   routes_removed_total, route_repairs_total, routes_restored_total (the route watch)
//   bgp_session_up{session,neighbor} (1: Established), bgp_session_routes{session,direction}
//     (imported / exported), bgp_announced_blocks (only with BGP on)
//   policy_drops_total{kind,namespace,policy,direction}, encryption_drops_total{pool}
//     (agent/drops.ts; kind: NetworkPolicy, AdminNetworkPolicy or
//     BaselineAdminNetworkPolicy, namespace '' for the cluster-scoped ones; pool '*':
//     one of more than four Required pools, which the guard matches through one set)
// `peer` is the peer's node name, not `node`: Kubernetes service discovery usually
// puts the scraped node's name in `node`.
//
// The reconcile histogram is per pass: `loop` is the loop that ran it (`dataplane`
// or `policy`, agent/reconciler.ts), `phase` the phase it ran (`mesh`, `policy`),
// `all` for a full pass of its loop (start, resync, retry), or several joined by
// `+`. The loops report passes, not phases inside one.
// CNI requests arrive on a diagnostics channel (cni/server.ts), IPAM usage from the
// process's started PodNetwork (agent/podnetwork.ts): both reach this module
// without any wiring through the Agent class.
import { createServer, type Server } from 'node:http';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CNI_REQUEST_CHANNEL, type CniRequestEvent } from '../cni/index.ts';
import type { IpamUsage } from '../ipam/index.ts';
import type { AgentStatus } from './status.ts';
import type { DropTotals } from './drops.ts';
import type { PassObserver } from './reconciler.ts';
import { startedPodNetworks } from './podnetwork.ts';
import type { Logger } from './log.ts';

/** What a scrape reads: the agent's status and its IPAM usage. */
export interface MetricsSource {
  status(): Promise<AgentStatus>;
  /** One entry per IPAM of this process (one in an agent; none before it starts). */
  ipamUsage(): IpamUsage[];
  /** Drop totals, read from the table at each scrape; absent: no drop series. */
  drops?(): Promise<DropTotals>;
}

export interface AgentMetricsOptions {
  /** Unix milliseconds (the handshake ages); Date.now by default. */
  now?: () => number;
  /** Add prom-client's process_* and nodejs_* series (default true). */
  processMetrics?: boolean;
}

const PEER_LABELS = ['peer', 'public_key'] as const;

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly source: MetricsSource;
  private readonly now: () => number;
  private readonly handshakeAge: Gauge<'peer' | 'public_key'>;
  private readonly handshakeTime: Gauge<'peer' | 'public_key'>;
  private readonly rxBytes: Counter<'peer' | 'public_key'>;
  private readonly txBytes: Counter<'peer' | 'public_key'>;
  private readonly reconcileDuration: Histogram<'loop' | 'phase'>;
  private readonly reconcileErrors: Counter<'loop' | 'phase'>;
  private readonly blockAllocated: Gauge<'block' | 'pool' | 'state'>;
  private readonly blockCapacity: Gauge<'block' | 'pool' | 'state'>;
  private readonly ipamAllocated: Gauge;
  private readonly ipamCapacity: Gauge;
  private readonly policyRules: Gauge;
  private readonly policyPolicies: Gauge;
  private readonly policyIsolated: Gauge<'direction'>;
  private readonly policyObjects: Gauge<'kind'>;
  private readonly policyProblems: Gauge;
  private readonly cniDuration: Histogram<'command' | 'result'>;
  private readonly remoteBlocks: Gauge<'path'>;
  private readonly bgpUp: Gauge<'session' | 'neighbor'>;
  private readonly bgpRoutes: Gauge<'session' | 'direction'>;
  private readonly bgpAnnounced: Gauge;
  private readonly refusedNodes: Gauge;
  private readonly synced: Gauge;
  private readonly routesRemoved: Counter;
  private readonly routeRepairs: Counter;
  private readonly routesRestored: Counter;
  private readonly info: Gauge<'node' | 'public_key' | 'wireguard_mode'>;
  private readonly policyDrops: Counter<'kind' | 'namespace' | 'policy' | 'direction'>;
  private readonly encryptionDrops: Counter<'pool'>;

  constructor(source: MetricsSource, options: AgentMetricsOptions = {}) {
    this.source = source;
    this.now = options.now ?? Date.now;
    const registers = [this.registry];
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = []) =>
      new Gauge<L>({ name: `wiremesh_${name}`, help, labelNames, registers });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Counter<L>({ name: `wiremesh_${name}`, help, labelNames, registers });

    this.handshakeAge = gauge(
      'wireguard_peer_latest_handshake_age_seconds',
      'Seconds since the latest WireGuard handshake with the peer (+Inf: never)',
      PEER_LABELS,
    );
    this.handshakeTime = gauge(
      'wireguard_peer_latest_handshake_timestamp_seconds',
      'Unix time of the latest WireGuard handshake with the peer (0: never)',
      PEER_LABELS,
    );
    this.rxBytes = counter(
      'wireguard_peer_receive_bytes_total',
      'Bytes received from the peer over WireGuard (as `wg show` counts them)',
      PEER_LABELS,
    );
    this.txBytes = counter(
      'wireguard_peer_transmit_bytes_total',
      'Bytes sent to the peer over WireGuard (as `wg show` counts them)',
      PEER_LABELS,
    );
    this.reconcileDuration = new Histogram({
      name: 'wiremesh_reconcile_duration_seconds',
      help: 'Duration of reconcile passes by loop and the phase run (all: every phase of the loop)',
      labelNames: ['loop', 'phase'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.reconcileErrors = counter(
      'reconcile_errors_total',
      'Failed reconcile passes by loop and the phase run (all: every phase of the loop); each is retried',
      ['loop', 'phase'],
    );
    this.blockAllocated = gauge(
      'ipam_block_addresses_allocated',
      'Addresses allocated from an IPAM block this node holds',
      ['block', 'pool', 'state'],
    );
    this.blockCapacity = gauge(
      'ipam_block_addresses_capacity',
      'Addresses in an IPAM block this node holds',
      ['block', 'pool', 'state'],
    );
    this.ipamAllocated = gauge('ipam_addresses_allocated', 'Addresses allocated on this node');
    this.ipamCapacity = gauge(
      'ipam_addresses_capacity',
      "Addresses in this node's held IPAM blocks",
    );
    this.policyRules = gauge('policy_rules', "Rules in this node's compiled network policy");
    this.policyPolicies = gauge(
      'policy_network_policies',
      'NetworkPolicies the compiler considered for this node',
    );
    this.policyIsolated = gauge(
      'policy_isolated_pods',
      'Local pods isolated by network policy, by direction',
      ['direction'],
    );
    this.policyObjects = gauge(
      'policy_nft_objects',
      "Objects in this node's compiled policy: chains, sets, maps, elements",
      ['kind'],
    );
    this.policyProblems = gauge(
      'policy_problems',
      'Network policy problems (reported as Events) on the last compile',
    );
    this.cniDuration = new Histogram({
      name: 'wiremesh_cni_request_duration_seconds',
      help: 'Time the agent took to answer a CNI request, by command and result',
      labelNames: ['command', 'result'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.remoteBlocks = gauge(
      'remote_blocks',
      'Pod address blocks of the cluster by the path this node sends to them over',
      ['path'],
    );
    this.bgpUp = gauge('bgp_session_up', '1 when the BGP session is Established, else 0', [
      'session',
      'neighbor',
    ]);
    this.bgpRoutes = gauge('bgp_session_routes', 'Routes imported or exported on a BGP session', [
      'session',
      'direction',
    ]);
    this.bgpAnnounced = gauge('bgp_announced_blocks', 'Pod blocks this node announces over BGP');
    this.refusedNodes = gauge('refused_nodes', 'Nodes this agent refuses to program');
    this.synced = gauge('agent_synced', '1 once the agent has its first full lists');
    this.routesRemoved = counter(
      'routes_removed_total',
      'Routes and rules this node needs that someone else removed, as the route watch saw them',
      [],
    );
    this.routeRepairs = counter(
      'route_repairs_total',
      'Passes that repaired routes someone else removed',
      [],
    );
    this.routesRestored = counter(
      'routes_restored_total',
      'Routes the agent wrote back: removed ones as they were, missing pod host and connected routes',
      [],
    );
    this.info = gauge('agent_info', 'The agent: its node, public key and WireGuard mode', [
      'node',
      'public_key',
      'wireguard_mode',
    ]);
    this.policyDrops = counter(
      'policy_drops_total',
      'Packets dropped by a network policy on this node (a default deny counts for every policy selecting the pod)',
      ['kind', 'namespace', 'policy', 'direction'],
    );
    this.encryptionDrops = counter(
      'encryption_drops_total',
      'Packets of a pool that requires encryption dropped because they would have left unencrypted',
      ['pool'],
    );
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** A reconcile pass observer (Reconciler.observe). */
  readonly observePass: PassObserver = (phases, durationMs, error, loop) => {
    const labels = { loop, phase: phases.join('+') || 'none' };
    this.reconcileDuration.observe(labels, durationMs / 1000);
    // Every label set shows from the first pass, so rate() sees the first error.
    this.reconcileErrors.inc(labels, error ? 1 : 0);
  };

  /** A CNI request answered (the CNI_REQUEST_CHANNEL message). */
  observeCni(e: CniRequestEvent): void {
    this.cniDuration.observe(
      { command: e.command || 'unknown', result: e.code === 0 ? 'success' : 'error' },
      e.ms / 1000,
    );
  }

  /** Read the agent once and render the exposition text. */
  async render(): Promise<string> {
    await this.refresh();
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private async refresh(): Promise<void> {
    const status = await this.source.status();
    const nowS = this.now() / 1000;
    for (const m of [this.handshakeAge, this.handshakeTime, this.rxBytes, this.txBytes]) m.reset();
    for (const p of status.peers) {
      const labels = { peer: p.node, public_key: p.publicKey };
      this.handshakeAge.set(
        labels,
        p.latestHandshake
          ? Math.max(0, Math.round((nowS - p.latestHandshake) * 1000) / 1000)
          : Infinity,
      );
      this.handshakeTime.set(labels, p.latestHandshake);
      this.rxBytes.inc(labels, p.rxBytes);
      this.txBytes.inc(labels, p.txBytes);
    }

    this.blockAllocated.reset();
    this.blockCapacity.reset();
    let allocated = 0;
    let capacity = 0;
    for (const usage of this.source.ipamUsage()) {
      allocated += usage.allocated;
      capacity += usage.capacity;
      for (const b of usage.blocks) {
        const labels = { block: b.cidr, pool: b.pool, state: b.state };
        this.blockAllocated.set(labels, b.allocated);
        this.blockCapacity.set(labels, b.capacity);
      }
    }
    this.ipamAllocated.set(allocated);
    this.ipamCapacity.set(capacity);

    const stats = status.policy.stats;
    this.policyProblems.set(status.policy.problems);
    if (stats) {
      this.policyRules.set(stats.rules);
      this.policyPolicies.set(stats.policies);
      this.policyIsolated.set({ direction: 'ingress' }, stats.isolatedIngress);
      this.policyIsolated.set({ direction: 'egress' }, stats.isolatedEgress);
      this.policyObjects.set({ kind: 'chain' }, stats.chains);
      this.policyObjects.set({ kind: 'set' }, stats.sets);
      this.policyObjects.set({ kind: 'map' }, stats.maps);
      this.policyObjects.set({ kind: 'element' }, stats.elements);
    }

    this.remoteBlocks.reset();
    for (const b of status.paths.blocks) {
      if (b.node !== status.node) this.remoteBlocks.inc({ path: b.path });
    }
    this.bgpUp.reset();
    this.bgpRoutes.reset();
    this.bgpAnnounced.reset();
    if (status.bgp) {
      this.bgpAnnounced.set(status.bgp.announced.length);
      for (const x of status.bgp.sessions) {
        this.bgpUp.set(
          { session: x.name, neighbor: x.neighbor },
          x.state === 'Established' ? 1 : 0,
        );
        this.bgpRoutes.set({ session: x.name, direction: 'imported' }, x.routesImported);
        this.bgpRoutes.set({ session: x.name, direction: 'exported' }, x.routesExported);
      }
    }
    this.refusedNodes.set(status.refused.length);
    this.synced.set(status.synced ? 1 : 0);
    // Counted by the agent; a counter set to its total at each scrape.
    for (const [metric, value] of [
      [this.routesRemoved, status.routes?.removed ?? 0],
      [this.routeRepairs, status.routes?.repairs ?? 0],
      [this.routesRestored, status.routes?.restored ?? 0],
    ] as const) {
      metric.reset();
      metric.inc(value);
    }
    if (this.source.drops) {
      const drops = await this.source.drops();
      // Totals kept by the agent; counters set to them at each scrape.
      this.policyDrops.reset();
      for (const d of drops.policy) {
        const labels = { kind: d.tier, namespace: d.namespace, policy: d.policy };
        this.policyDrops.inc({ ...labels, direction: d.direction }, d.packets);
      }
      this.encryptionDrops.reset();
      for (const pool of status.paths.pools) {
        if (pool.encryptionMode === 'Required') this.encryptionDrops.inc({ pool: pool.name }, 0);
      }
      for (const d of drops.encryption) {
        const pool = status.paths.pools.find((p) => p.cidr === d.range)?.name ?? d.range;
        this.encryptionDrops.inc({ pool }, d.packets);
      }
    }
    this.info.reset();
    this.info.set(
      {
        node: status.node,
        public_key: status.wireguard.publicKey,
        wireguard_mode: status.wireguard.mode,
      },
      1,
    );
  }
}

/** What agent/metrics needs of the Agent: its public methods only. */
export interface MetricsAgent {
  status(): Promise<AgentStatus>;
  dropTotals?(): Promise<DropTotals>;
  readonly reconciler: { observe(o: PassObserver): () => void };
}

/**
 * The metrics of a running agent: observes its reconciler and the CNI channel and
 * reads IPAM usage from the process's PodNetwork. `close` stops observing.
 */
export function observeAgent(
  agent: MetricsAgent,
  options: AgentMetricsOptions & { ipamUsage?: () => IpamUsage[] } = {},
): { metrics: AgentMetrics; close: () => void } {
  const dropTotals = agent.dropTotals?.bind(agent);
  const metrics = new AgentMetrics(
    {
      status: () => agent.status(),
      ...(dropTotals ? { drops: dropTotals } : {}),
      ipamUsage:
        options.ipamUsage ?? (() => startedPodNetworks().map((network) => network.ipam.usage())),
    },
    options,
  );
  const stopPasses = agent.reconciler.observe(metrics.observePass);
  const onCni = (message: unknown) => metrics.observeCni(message as CniRequestEvent);
  subscribe(CNI_REQUEST_CHANNEL, onCni);
  return {
    metrics,
    close: () => {
      stopPasses();
      unsubscribe(CNI_REQUEST_CHANNEL, onCni);
    },
  };
}

/**
 * Serve GET /metrics (and /healthz, for a probe that only needs the listener) on
 * host:port. A scrape that fails answers 500 with the reason and is logged.
 */
export async function serveMetrics(
  metrics: AgentMetrics,
  address: { host: string; port: number },
  log: Logger,
): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('wiremesh agent: GET /metrics\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    metrics.render().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(text);
      },
      (e: unknown) => {
        log.warn('metrics scrape failed', { error: (e as Error).message });
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`scrape failed: ${(e as Error).message}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `cannot serve metrics on ${address.host}:${address.port}: ${e.message} (setting metrics-address)`,
          { cause: e },
        ),
      ),
    );
    server.listen(address.port, address.host, () => resolve());
  });
  return server;
}
