// The probing harness of the network-policy suite: it builds upstream's model in a
// cluster (namespaces x, y, z; pods a, b, c; every pod serving ports 80 and 81 over
// TCP, UDP and SCTP), applies NetworkPolicy objects and labels through the API,
// and checks reachability as a whole matrix: every pod probes every pod on each
// port/protocol a case names, all at once (one wiremesh-prober process per source
// pod), and rounds repeat until the observed tables equal the expected ones or a
// deadline passes. A round is one consistent snapshot: a case passes on a round
// where every cell matches, never on cells gathered from different rounds.
// Every round probes over every address family the pods have (IPv4 and IPv6 on a
// dual-stack cluster), all in the same prober runs, and a case's table must hold
// over each family: "IPv4 TCP/80" and "IPv6 TCP/80" are separate tables.
//
// The harness talks to the cluster only through ClusterDriver and the API: every
// pod is created with `wiremesh-prober serve` as its own command (the container's
// command on kind, a process in the pod's network namespace in the lab), so the
// same suite runs on both. A test may still start the servers itself (ProberServers).
import { setTimeout as sleep } from 'node:timers/promises';
import { kubeClient, KubeApiError, type KubeClient } from '../../kube/index.ts';
import type { ClusterDriver } from '../driver.ts';
import { LabDriver } from '../lab-driver.ts';
import {
  ALL_PORT_PROTOCOLS,
  PORTS,
  NAMESPACES,
  containerPorts,
  coveringCidr,
  familyOf,
  familyPortKey,
  hostCidr,
  modelPods,
  namespaceLabels,
  placePods,
  portProtocolKey,
  type Family,
  type ModelPod,
  type PortProtocol,
} from './model.ts';
import { runProbes, serveArgv, type ProbeResult, type ProbeTarget } from './prober.ts';
import { TruthTable, renderComparison } from './truth-table.ts';
import { ipBlock, type NetworkPolicy, type NetworkPolicyPeer } from './policies.ts';

export interface HarnessPod extends ModelPod {
  /** The namespace's name in the cluster (the logical name plus a suffix, if any). */
  realNamespace: string;
  node: string;
  /** The pod's first address (status.podIP). */
  ip: string;
  /** Every address, one per family (status.podIPs). */
  ips: string[];
}

/** The pod's address of `family`. */
export function addressOf(pod: HarnessPod, family: Family): string {
  const ip = pod.ips.find((a) => familyOf(a) === family);
  if (!ip) throw new Error(`pod ${pod.key} has no IPv${family} address (${pod.ips.join(', ')})`);
  return ip;
}

/** Starts and stops the prober servers of the pods, instead of the pods' own command. */
export interface ProberServers {
  start(pod: HarnessPod): Promise<void>;
  stopAll(): Promise<void>;
}

/** Servers as processes in the lab pods' network namespaces, recorded by the lab (so `lab down` stops them too). */
export function labProberServers(driver: LabDriver): ProberServers {
  const lab = driver.lab;
  const started: string[] = [];
  return {
    async start(pod) {
      const netns = lab.pod(pod.name, pod.realNamespace).netns;
      const procName = `netpol-serve-${pod.realNamespace}-${pod.name}`;
      await lab.spawnInNode(pod.node, procName, [
        'nsenter',
        `--net=/run/netns/${netns}`,
        '--',
        ...serveArgv(PORTS, pod.key),
      ]);
      started.push(procName);
    },
    async stopAll() {
      for (const name of started.splice(0)) await lab.stopProcess(name);
    },
  };
}

/** The table a case expects on some ports/protocols. */
export interface Expectation {
  on: readonly PortProtocol[];
  table: TruthTable;
}

export interface RoundResult {
  /** Per family and port/protocol key ("IPv4 TCP/80"): what was observed. */
  observed: Map<string, TruthTable>;
  /** Per family and port/protocol key, per "from>to": the raw probe result. */
  probes: Map<string, Map<string, ProbeResult>>;
  ms: number;
}

export interface Verdict {
  rounds: number;
  ms: number;
  /** Duration of each round. */
  roundMs: number[];
  /** The round that matched: per family and port/protocol key, what was observed. */
  observed: Map<string, TruthTable>;
}

export interface HarnessOptions {
  driver: ClusterDriver;
  /** Start the servers this way; by default each pod runs its server as its own command. */
  servers?: ProberServers;
  /** Appended to x, y, z (e.g. on a cluster shared with other runs). */
  namespaceSuffix?: string;
  probeTimeoutMs?: number;
  /**
   * The address families to probe over; by default every family all the pods have
   * an address of (both on a dual-stack cluster).
   */
  families?: readonly Family[];
}

const NETPOL_PATH = '/apis/networking.k8s.io/v1/namespaces';
const STRICT = { query: { fieldValidation: 'Strict' } };

export class NetpolHarness {
  readonly driver: ClusterDriver;
  readonly api: KubeClient;
  readonly pods: readonly HarnessPod[];
  /** The families every round probes over, IPv4 first. */
  families: readonly Family[] = [];
  private readonly servers: ProberServers | undefined;
  private readonly suffix: string;
  private readonly probeTimeoutMs: number;

  private constructor(
    opts: HarnessOptions,
    api: KubeClient,
    servers: ProberServers | undefined,
    pods: HarnessPod[],
  ) {
    this.driver = opts.driver;
    this.api = api;
    this.servers = servers;
    this.suffix = opts.namespaceSuffix ?? '';
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 1000;
    this.pods = pods;
  }

  /** Create the namespaces and pods, start every server; tear down what was made if that fails. */
  static async setUp(opts: HarnessOptions): Promise<NetpolHarness> {
    const api = kubeClient(opts.driver.kubeconfig);
    const servers = opts.servers;
    const prober = opts.driver.proberPath();
    const suffix = opts.namespaceSuffix ?? '';
    const placed = placePods(modelPods(), opts.driver.nodeNames());
    const pods: HarnessPod[] = [];
    const h = new NetpolHarness(opts, api, servers, pods);
    try {
      for (const ns of NAMESPACES) {
        await api.request('POST', '/api/v1/namespaces', {
          metadata: { name: `${ns}${suffix}`, labels: namespaceLabels(ns) },
        });
      }
      for (const m of modelPods()) {
        const node = placed.get(m.key) as string;
        const realNamespace = `${m.namespace}${suffix}`;
        const created = await opts.driver.createPod(
          node,
          realNamespace,
          m.name,
          m.labels,
          containerPorts(),
          servers ? undefined : serveArgv(PORTS, m.key, prober),
        );
        const ip = created.ips[0];
        if (!ip) throw new Error(`pod ${m.key} got no address`);
        const pod = { ...m, realNamespace, node, ip, ips: [...created.ips] };
        pods.push(pod);
        if (servers) await servers.start(pod);
      }
      const common = ([4, 6] as const).filter((f) =>
        pods.every((p) => p.ips.some((a) => familyOf(a) === f)),
      );
      h.families = opts.families ?? common;
      const missing = h.families.filter((f) => !common.includes(f));
      if (h.families.length === 0 || missing.length)
        throw new Error(
          `the pods have addresses of IPv${common.join(' and IPv') || ' none'}; cannot probe over IPv${missing.join(', IPv') || ' nothing'}`,
        );
    } catch (e) {
      await h.tearDown().catch(() => {});
      throw e;
    }
    return h;
  }

  /** Stop the servers, delete the policies, pods and namespaces this harness made. */
  async tearDown(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    };
    const servers = this.servers;
    if (servers) await attempt(() => servers.stopAll());
    await attempt(() => this.deleteAllPolicies());
    for (const p of this.pods) await attempt(() => this.driver.deletePod(p.realNamespace, p.name));
    for (const ns of NAMESPACES)
      await attempt(() =>
        this.api.request('DELETE', `/api/v1/namespaces/${this.ns(ns)}`).catch(ignore(404)),
      );
    if (errors.length) throw new AggregateError(errors, 'netpol harness tear-down');
  }

  /** The pods' keys ("x/a", ...): the rows and columns of every table. */
  get keys(): string[] {
    return this.pods.map((p) => p.key);
  }

  /** The cluster name of a logical namespace (x, y, z). */
  ns(logical: string): string {
    return `${logical}${this.suffix}`;
  }

  pod(key: string): HarnessPod {
    const p = this.pods.find((q) => q.key === key);
    if (!p) throw new Error(`no pod ${key} in the model`);
    return p;
  }

  /**
   * ipBlock peers, one per family probed, each the smallest CIDR holding every pod's
   * address of that family, except the addresses of the pods `except` names.
   */
  coveringBlocks(except: readonly string[] = []): NetworkPolicyPeer[] {
    return this.families.map((f) => {
      const cidr = coveringCidr(this.pods.map((p) => addressOf(p, f)));
      const out = except.map((k) => hostCidr(addressOf(this.pod(k), f)));
      return ipBlock(cidr, out.length ? out : undefined);
    });
  }

  /** A table over every pod, all `connected` (start of every expectation). */
  table(connected: boolean): TruthTable {
    return new TruthTable(this.keys, connected);
  }

  // --- the API ---------------------------------------------------------------

  /** Create a policy; a field the API does not know is an error, never silently dropped. */
  async applyPolicy(policy: NetworkPolicy): Promise<void> {
    const { namespace } = policy.metadata;
    await this.api.request('POST', `${NETPOL_PATH}/${namespace}/networkpolicies`, policy, STRICT);
  }

  /** Replace an existing policy's spec (a real update: same object, new resourceVersion). */
  async updatePolicy(policy: NetworkPolicy): Promise<void> {
    const { namespace, name } = policy.metadata;
    const path = `${NETPOL_PATH}/${namespace}/networkpolicies/${name}`;
    const current = await this.api.request<NetworkPolicy>('GET', path);
    await this.api.request('PUT', path, { ...current, spec: policy.spec }, STRICT);
  }

  async deletePolicy(namespace: string, name: string): Promise<void> {
    await this.api.request('DELETE', `${NETPOL_PATH}/${namespace}/networkpolicies/${name}`);
  }

  async deleteAllPolicies(): Promise<void> {
    for (const ns of NAMESPACES) {
      await this.api
        .request('DELETE', `${NETPOL_PATH}/${this.ns(ns)}/networkpolicies`)
        .catch(ignore(404));
    }
  }

  /** Merge labels into a pod (null removes one). */
  async labelPod(key: string, labels: Record<string, string | null>): Promise<void> {
    const p = this.pod(key);
    await this.api.request(
      'PATCH',
      `/api/v1/namespaces/${p.realNamespace}/pods/${p.name}`,
      { metadata: { labels } },
      { contentType: 'application/merge-patch+json' },
    );
  }

  /** Merge labels into a namespace (null removes one). */
  async labelNamespace(logical: string, labels: Record<string, string | null>): Promise<void> {
    await this.api.request(
      'PATCH',
      `/api/v1/namespaces/${this.ns(logical)}`,
      { metadata: { labels } },
      { contentType: 'application/merge-patch+json' },
    );
  }

  /** Back to the model's labels: the cases' label changes are undone. */
  async restoreLabels(): Promise<void> {
    for (const p of this.pods)
      await this.replaceLabels(`/api/v1/namespaces/${p.realNamespace}/pods/${p.name}`, p.labels);
    for (const ns of NAMESPACES)
      await this.replaceLabels(`/api/v1/namespaces/${this.ns(ns)}`, {
        ...namespaceLabels(ns),
        'kubernetes.io/metadata.name': this.ns(ns),
      });
  }

  private async replaceLabels(path: string, want: Record<string, string>): Promise<void> {
    const obj = await this.api.request<{ metadata: { labels?: Record<string, string> } }>(
      'GET',
      path,
    );
    const have = obj.metadata.labels ?? {};
    const patch: Record<string, string | null> = {};
    for (const k of Object.keys(have)) if (!(k in want)) patch[k] = null;
    for (const [k, v] of Object.entries(want)) if (have[k] !== v) patch[k] = v;
    if (Object.keys(patch).length === 0) return;
    await this.api.request(
      'PATCH',
      path,
      { metadata: { labels: patch } },
      {
        contentType: 'application/merge-patch+json',
      },
    );
  }

  // --- probing ---------------------------------------------------------------

  /** One round: every pod probes every pod on every given port/protocol, all at once. */
  async probeRound(on: readonly PortProtocol[]): Promise<RoundResult> {
    const start = Date.now();
    const observed = new Map<string, TruthTable>();
    const probes = new Map<string, Map<string, ProbeResult>>();
    for (const f of this.families)
      for (const pp of on) {
        observed.set(familyPortKey(f, pp), this.table(false));
        probes.set(familyPortKey(f, pp), new Map());
      }
    await Promise.all(
      this.pods.map(async (from) => {
        // One prober run per source pod: every family, port and target in parallel.
        const targets: (ProbeTarget & { to: HarnessPod })[] = [];
        for (const f of this.families)
          for (const pp of on)
            for (const to of this.pods)
              targets.push({ proto: pp.protocol, ip: addressOf(to, f), port: pp.port, to });
        const results = await runProbes(
          (argv, o) => this.driver.execInPod(from.realNamespace, from.name, argv, o),
          targets.map(({ proto, ip, port }) => ({ proto, ip, port })),
          this.probeTimeoutMs,
          this.driver.proberPath(),
        );
        results.forEach((r, i) => {
          const to = (targets[i] as { to: HarnessPod }).to;
          const key = familyPortKey(familyOf(r.ip), { port: r.port, protocol: r.proto });
          // Reachable means the intended server answered, not just anything.
          const ok = r.result === 'reachable' && r.answer === to.key;
          observed.get(key)?.set(from.key, to.key, ok);
          probes.get(key)?.set(`${from.key}>${to.key}`, r);
        });
      }),
    );
    return { observed, probes, ms: Date.now() - start };
  }

  /**
   * Probe rounds until every expectation holds in one round, or fail after
   * `deadlineMs` with the expected and observed tables of the last round.
   */
  async expectReachability(
    what: string,
    expectations: readonly Expectation[],
    deadlineMs = 20_000,
  ): Promise<Verdict> {
    const start = Date.now();
    const roundMs: number[] = [];
    const on = uniquePortProtocols(expectations.flatMap((e) => e.on));
    const expected = new Map<string, TruthTable>();
    for (const e of expectations) {
      const t = e.table.clone().allowLoopback();
      for (const f of this.families) for (const pp of e.on) expected.set(familyPortKey(f, pp), t);
    }
    for (;;) {
      const round = await this.probeRound(on);
      roundMs.push(round.ms);
      const matched = [...expected].every(([k, t]) =>
        t.equals(round.observed.get(k) as TruthTable),
      );
      if (matched)
        return {
          rounds: roundMs.length,
          ms: Date.now() - start,
          roundMs,
          observed: round.observed,
        };
      if (Date.now() - start >= deadlineMs)
        throw new Error(mismatchReport(what, expected, round, roundMs.length, Date.now() - start));
      await sleep(200);
    }
  }

  /** Every pod reaches every pod on every port and protocol. */
  expectAllowAll(what = 'no policy: all reachable', deadlineMs = 20_000): Promise<Verdict> {
    return this.expectReachability(
      what,
      [{ on: ALL_PORT_PROTOCOLS, table: this.table(true) }],
      deadlineMs,
    );
  }

  /** Delete every policy, undo label changes, and wait until everything is reachable again. */
  async reset(): Promise<Verdict> {
    await this.deleteAllPolicies();
    await this.restoreLabels();
    return this.expectAllowAll('reset to no policy');
  }

  /** Probe from a node (its host network namespace). */
  probeFromNode(node: string, targets: readonly ProbeTarget[]): Promise<ProbeResult[]> {
    return runProbes(
      (argv, o) => this.driver.execInNode(node, argv, o),
      targets,
      this.probeTimeoutMs,
      this.driver.proberPath(),
    );
  }
}

function uniquePortProtocols(list: readonly PortProtocol[]): PortProtocol[] {
  const seen = new Map<string, PortProtocol>();
  for (const pp of list) seen.set(portProtocolKey(pp), pp);
  return [...seen.values()];
}

function describeProbe(r: ProbeResult | undefined): string {
  if (!r) return 'not probed';
  const parts: string[] = [r.result];
  if (r.answer) parts.push(`answered by ${r.answer}`);
  if (r.detail) parts.push(r.detail);
  parts.push(`${r.ms} ms`);
  return parts.join(', ');
}

/** The failure message: per port/protocol, expected, observed and where they differ. */
export function mismatchReport(
  what: string,
  expected: Map<string, TruthTable>,
  round: RoundResult,
  rounds: number,
  ms: number,
): string {
  const out = [
    `${what}: reachability did not match after ${rounds} rounds in ${ms} ms (rows = from, columns = to; "." connected, "X" blocked)`,
  ];
  for (const [key, want] of expected) {
    const seen = round.observed.get(key);
    if (!seen) continue;
    const diffs = want.diff(seen);
    if (diffs.length === 0) {
      out.push(`\n${key}: as expected`);
      continue;
    }
    out.push(
      `\n${key}: ${diffs.length} cells differ`,
      `expected:\n${want.render()}`,
      `observed:\n${seen.render()}`,
      `comparison ("X" = differs):\n${renderComparison(want, seen)}`,
      'differing probes:',
      ...diffs.map(
        (d) =>
          `  ${d.from} -> ${d.to} ${key}: expected ${d.expected ? 'connected' : 'blocked'}, observed ${describeProbe(round.probes.get(key)?.get(`${d.from}>${d.to}`))}`,
      ),
    );
  }
  return out.join('\n');
}

function ignore(status: number) {
  return (e: unknown) => {
    if (!(e instanceof KubeApiError && e.status === status)) throw e;
  };
}
