// Metrics and status, end to end on a 3-node lab running the real agents: after
// traffic between every pair of nodes and a pod ADD on each, a Prometheus scrape of
// every node's /metrics (from inside the lab, on the node's underlay address, as a
// Prometheus on the node network would) shows the per-peer WireGuard series for
// every peer (handshake age and bytes, keyed by the peer's published key), and
// the reconcile and CNI histograms have observations; `wiremesh status -o json` on a
// node and `wiremesh status --cluster` against the lab's apiserver show every node.
import test from 'ava';
import { Lab } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { eventually } from './probes.ts';
import type { NodeStatus, ClusterStatus } from '../cli/status.ts';
import { defaultRunner } from '../sys/index.ts';

const CLI_MAIN = new URL('../cli/main.ts', import.meta.url).pathname;
const METRICS_PORT = 9825;

let driver: LabDriver | undefined;
let lab: Lab;
const extraPods: { namespace: string; name: string }[] = [];

test.before(async () => {
  driver = await LabDriver.open({ name: 'metrics', nodes: 3, podsPerNode: 1, agents: true });
  lab = driver.lab;
  // A pod ADD on every node while this agent runs, so its CNI histogram has one
  // whatever happened to the lab before (a shared lab's agents may have restarted).
  for (const n of names()) {
    const pod = await driver.createPod(n, 'default', `metrics-${n}`);
    extraPods.push(pod);
  }
  // Traffic over every pair, so every peer has handshaken and counted bytes.
  for (const from of names()) {
    for (const to of names()) {
      if (from === to) continue;
      const ip = (await lab.agentStatus(to)).wireguard.tunnelAddress;
      if (!ip) throw new Error(`${to} has no tunnel address`);
      await eventually(
        `${from} pings ${to}'s tunnel address ${ip}`,
        async () =>
          (
            await lab.execInNode(from, ['ping', '-c', '1', '-W', '1', ip], {
              allowFailure: true,
            })
          ).code === 0,
        30_000,
        200,
      );
    }
  }
});

test.after.always(async () => {
  for (const p of extraPods) await driver?.deletePod(p.namespace, p.name).catch(() => {});
  if (driver) await driver.close();
});

function names(): string[] {
  return lab.plan.nodes.map((n) => n.name);
}

/** Prometheus samples: `name{labels}` -> value. */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^(\S+?(?:\{.*\})?) (\S+)$/.exec(line);
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]));
  }
  return out;
}

/** Node `from` scrapes node `target`'s /metrics on its underlay address. */
async function scrape(from: string, target: string): Promise<Map<string, number>> {
  const ip = lab.node(target).underlayIP;
  const res = await lab.execInNode(from, [
    'curl',
    '-sSf',
    '--max-time',
    '10',
    `http://${ip}:${METRICS_PORT}/metrics`,
  ]);
  return parseExposition(res.stdout);
}

function cli(node: string, args: string[]): Promise<string> {
  return lab
    .execInNode(node, [
      process.execPath,
      '--disable-warning=ExperimentalWarning',
      CLI_MAIN,
      ...args,
    ])
    .then((r) => r.stdout);
}

test('every node serves per-peer series for every peer, with handshakes and bytes', async (t) => {
  const all = names();
  const keys = new Map<string, string>();
  for (const n of all) keys.set(n, (await lab.agentStatus(n)).wireguard.publicKey);
  for (const [i, node] of all.entries()) {
    // Scraped by the next node, across the underlay.
    const from = all[(i + 1) % all.length] ?? node;
    const samples = await scrape(from, node);
    for (const peer of all.filter((n) => n !== node)) {
      const labels = `{peer="${peer}",public_key="${keys.get(peer)}"}`;
      const age = samples.get(`wiremesh_wireguard_peer_latest_handshake_age_seconds${labels}`);
      const rx = samples.get(`wiremesh_wireguard_peer_receive_bytes_total${labels}`);
      const tx = samples.get(`wiremesh_wireguard_peer_transmit_bytes_total${labels}`);
      t.true(age !== undefined && Number.isFinite(age) && age >= 0, `${node}: ${peer} age ${age}`);
      t.true(rx !== undefined && rx > 0, `${node}: bytes from ${peer}: ${rx}`);
      t.true(tx !== undefined && tx > 0, `${node}: bytes to ${peer}: ${tx}`);
    }
    const peerSeries = [...samples.keys()].filter((k) =>
      k.startsWith('wiremesh_wireguard_peer_latest_handshake_age_seconds{'),
    );
    t.is(peerSeries.length, all.length - 1, `${node}: one handshake series per peer`);
  }
});

test('reconcile and CNI histograms have observations; IPAM and policy are reported', async (t) => {
  for (const node of names()) {
    const samples = await scrape(node, node);
    const sum = (prefix: string) =>
      [...samples].filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0);
    t.true(sum('wiremesh_reconcile_duration_seconds_count{') >= 1, `${node}: reconcile passes`);
    t.true(
      (samples.get('wiremesh_cni_request_duration_seconds_count{command="ADD",result="success"}') ??
        0) >= 1,
      `${node}: CNI ADDs`,
    );
    t.true(
      (samples.get('wiremesh_ipam_addresses_allocated') ?? 0) >= 1,
      `${node}: IPAM allocations`,
    );
    t.true((samples.get('wiremesh_ipam_addresses_capacity') ?? 0) >= 1, `${node}: IPAM capacity`);
    t.true(samples.has('wiremesh_policy_rules'), `${node}: policy rules`);
    t.is(samples.get('wiremesh_agent_synced'), 1);
  }
});

test('wiremesh status -o json on a node shows every peer and its IPAM', async (t) => {
  const [node, ...others] = names();
  if (!node) throw new Error('no nodes');
  const s = JSON.parse(await cli(node, ['status', '-o', 'json'])) as NodeStatus;
  t.is(s.node, node);
  t.deepEqual(s.peers.map((p) => p.node).sort(), [...others].sort());
  t.true((s.ipam?.[0]?.allocated ?? 0) >= 1, 'IPAM usage in the status');
  const table = await cli(node, ['status', '-o', 'wide']);
  for (const o of others) t.regex(table, new RegExp(`^${o}\\s+\\S+:51825\\s+wireguard\\s`, 'm'));
});

test('wiremesh status --cluster shows every node with its blocks and key', async (t) => {
  const res = await defaultRunner.run([
    process.execPath,
    '--disable-warning=ExperimentalWarning',
    CLI_MAIN,
    'status',
    '--cluster',
    '--kubeconfig',
    lab.state.kubeconfig,
    '-o',
    'json',
  ]);
  const c = JSON.parse(res.stdout) as ClusterStatus;
  t.deepEqual(c.nodes.map((n) => n.name).sort(), [...names()].sort());
  for (const n of c.nodes) {
    t.truthy(n.publicKey, `${n.name} has a published key`);
    t.true(n.blocks >= 1 && n.allocated >= 1, `${n.name}: ${n.allocated} in ${n.blocks} blocks`);
  }
  t.true(c.pools.length >= 1);
  t.is(
    c.pools.reduce((n, p) => n + p.allocated, 0),
    c.nodes.reduce((n, x) => n + x.allocated, 0),
  );
});
