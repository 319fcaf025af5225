import test from 'ava';
import { request } from 'node:http';
import { channel } from 'node:diagnostics_channel';
import { AgentMetrics, observeAgent, serveMetrics, type MetricsAgent } from './metrics.ts';
import { Reconciler } from './reconciler.ts';
import { silentLogger } from './log.ts';
import { CNI_REQUEST_CHANNEL } from '../cni/index.ts';
import { fakeAgentStatus, fakeIpamUsage, FIXTURE_NOW_MS } from './status-fixture.ts';

function fixtureMetrics(status = fakeAgentStatus()): AgentMetrics {
  return new AgentMetrics(
    { status: async () => status, ipamUsage: () => [fakeIpamUsage()] },
    { now: () => FIXTURE_NOW_MS, processMetrics: false },
  );
}

/** The sample lines of one metric, label text -> value. */
function samples(text: string, name: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) out.set(m[2] ?? '', m[3] ?? '');
  }
  return out;
}

const B = 'peer="node-b",public_key="BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="';
const C = 'peer="node-c",public_key="CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA="';

test('every WireGuard peer has its handshake age and byte series', async (t) => {
  const text = await fixtureMetrics().render();
  t.deepEqual(
    samples(text, 'wiremesh_wireguard_peer_latest_handshake_age_seconds'),
    new Map([
      [`{${B}}`, '42'],
      [`{${C}}`, '+Inf'],
    ]),
  );
  t.deepEqual(
    samples(text, 'wiremesh_wireguard_peer_latest_handshake_timestamp_seconds').get(`{${C}}`),
    '0',
  );
  t.deepEqual(
    samples(text, 'wiremesh_wireguard_peer_receive_bytes_total'),
    new Map([
      [`{${B}}`, '123456'],
      [`{${C}}`, '0'],
    ]),
  );
  t.deepEqual(
    samples(text, 'wiremesh_wireguard_peer_transmit_bytes_total'),
    new Map([
      [`{${B}}`, '654321'],
      [`{${C}}`, '148'],
    ]),
  );
  t.regex(text, /# TYPE wiremesh_wireguard_peer_receive_bytes_total counter/);
});

test('a peer gone from the device loses its series at the next scrape', async (t) => {
  const status = fakeAgentStatus();
  const metrics = fixtureMetrics(status);
  await metrics.render();
  status.peers = status.peers.filter((p) => p.node !== 'node-c');
  const text = await metrics.render();
  t.deepEqual(
    [...samples(text, 'wiremesh_wireguard_peer_transmit_bytes_total').keys()],
    [`{${B}}`],
  );
});

test('the route watch’s counts: removed, repairs, restored; as the agent counts them', async (t) => {
  const status = fakeAgentStatus();
  const metrics = fixtureMetrics(status);
  let text = await metrics.render();
  t.is(samples(text, 'wiremesh_routes_removed_total').get(''), '3');
  t.is(samples(text, 'wiremesh_route_repairs_total').get(''), '1');
  t.is(samples(text, 'wiremesh_routes_restored_total').get(''), '2');
  t.regex(text, /# TYPE wiremesh_route_repairs_total counter/);
  if (status.routes) status.routes = { ...status.routes, removed: 40, repairs: 2, restored: 39 };
  text = await metrics.render();
  t.is(samples(text, 'wiremesh_routes_removed_total').get(''), '40');
  t.is(samples(text, 'wiremesh_route_repairs_total').get(''), '2');
  t.is(samples(text, 'wiremesh_routes_restored_total').get(''), '39');
});

test('IPAM usage, policy counts, paths and the agent info', async (t) => {
  const text = await fixtureMetrics().render();
  const block = '{block="100.64.0.0/26",pool="default",state="held"}';
  t.is(samples(text, 'wiremesh_ipam_block_addresses_allocated').get(block), '2');
  t.is(samples(text, 'wiremesh_ipam_block_addresses_capacity').get(block), '64');
  t.is(samples(text, 'wiremesh_ipam_addresses_allocated').get(''), '2');
  t.is(samples(text, 'wiremesh_ipam_addresses_capacity').get(''), '64');
  t.is(samples(text, 'wiremesh_policy_rules').get(''), '21');
  t.is(samples(text, 'wiremesh_policy_network_policies').get(''), '3');
  t.is(samples(text, 'wiremesh_policy_isolated_pods').get('{direction="ingress"}'), '1');
  t.is(samples(text, 'wiremesh_policy_nft_objects').get('{kind="chain"}'), '7');
  t.is(samples(text, 'wiremesh_policy_problems').get(''), '1');
  t.deepEqual(
    samples(text, 'wiremesh_remote_blocks'),
    new Map([
      ['{path="wireguard"}', '2'],
      ['{path="vxlan"}', '1'],
    ]),
  );
  t.is(samples(text, 'wiremesh_refused_nodes').get(''), '1');
  t.is(samples(text, 'wiremesh_agent_synced').get(''), '1');
  t.is(
    samples(text, 'wiremesh_agent_info').get(
      '{node="node-a",public_key="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",wireguard_mode="userspace"}',
    ),
    '1',
  );
});

test("a real Reconciler's passes and failures land in the histogram and counter by phase", async (t) => {
  let fail = false;
  const reconciler = new Reconciler(
    async () => {
      if (fail) throw new Error('apiserver away');
    },
    { resyncMs: 3_600_000, minBackoffMs: 3_600_000, log: silentLogger },
  );
  t.teardown(() => reconciler.stop());
  const agent: MetricsAgent = { status: async () => fakeAgentStatus(), reconciler };
  const { metrics, close } = observeAgent(agent, {
    ipamUsage: () => [],
    processMetrics: false,
  });
  t.teardown(close);
  reconciler.start(); // a full pass: phase="all"
  await reconciler.idle();
  reconciler.schedule('pod label', 'policy');
  await reconciler.idle();
  fail = true;
  reconciler.schedule('node', 'mesh');
  await reconciler.idle();
  const text = await metrics.render();
  const counts = samples(text, 'wiremesh_reconcile_duration_seconds_count');
  t.deepEqual(
    counts,
    new Map([
      ['{loop="main",phase="all"}', '1'],
      ['{loop="main",phase="policy"}', '1'],
      ['{loop="main",phase="mesh"}', '1'],
    ]),
  );
  t.deepEqual(
    samples(text, 'wiremesh_reconcile_errors_total'),
    new Map([
      ['{loop="main",phase="all"}', '0'],
      ['{loop="main",phase="policy"}', '0'],
      ['{loop="main",phase="mesh"}', '1'],
    ]),
  );
});

test('CNI requests published by the CNI server land in the latency histogram', async (t) => {
  const agent: MetricsAgent = {
    status: async () => fakeAgentStatus(),
    reconciler: { observe: () => () => {} },
  };
  const { metrics, close } = observeAgent(agent, { ipamUsage: () => [], processMetrics: false });
  const cni = channel(CNI_REQUEST_CHANNEL);
  cni.publish({ command: 'ADD', code: 0, ms: 4 });
  cni.publish({ command: 'ADD', code: 0, ms: 30 });
  cni.publish({ command: 'DEL', code: 11, ms: 2 });
  close();
  cni.publish({ command: 'ADD', code: 0, ms: 1 }); // after close: not counted
  const text = await metrics.render();
  t.deepEqual(
    samples(text, 'wiremesh_cni_request_duration_seconds_count'),
    new Map([
      ['{command="ADD",result="success"}', '2'],
      ['{command="DEL",result="error"}', '1'],
    ]),
  );
  t.is(
    samples(text, 'wiremesh_cni_request_duration_seconds_bucket').get(
      '{le="0.005",command="ADD",result="success"}',
    ),
    '1',
  );
});

function get(port: number, path: string): Promise<{ code: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          code: res.statusCode ?? 0,
          type: String(res.headers['content-type']),
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

test('GET /metrics serves the exposition format on loopback; a failing scrape is a 500', async (t) => {
  let broken = false;
  const metrics = new AgentMetrics(
    {
      status: async () => {
        if (broken) throw new Error('wg show failed');
        return fakeAgentStatus();
      },
      ipamUsage: () => [],
    },
    { now: () => FIXTURE_NOW_MS },
  );
  const server = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 }, silentLogger);
  t.teardown(() => server.close());
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const ok = await get(port, '/metrics');
  t.is(ok.code, 200);
  t.regex(ok.type, /^text\/plain; version=0\.0\.4/);
  t.regex(ok.body, /wiremesh_wireguard_peer_latest_handshake_age_seconds\{peer="node-b"/);
  t.regex(ok.body, /^process_cpu_seconds_total /m);
  t.is((await get(port, '/other')).code, 404);
  broken = true;
  const failed = await get(port, '/metrics');
  t.is(failed.code, 500);
  t.regex(failed.body, /wg show failed/);
});

test('a taken port fails with the setting named', async (t) => {
  const metrics = fixtureMetrics();
  const first = await serveMetrics(metrics, { host: '127.0.0.1', port: 0 }, silentLogger);
  t.teardown(() => first.close());
  const address = first.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const e = await t.throwsAsync(serveMetrics(metrics, { host: '127.0.0.1', port }, silentLogger));
  t.regex(
    e?.message ?? '',
    /cannot serve metrics on 127\.0\.0\.1:\d+: .*EADDRINUSE.*metrics-address/,
  );
});

test('drops are exported per policy and per Required pool', async (t) => {
  const metrics = new AgentMetrics(
    {
      status: async () => fakeAgentStatus(),
      ipamUsage: () => [],
      drops: async () => ({
        policy: [
          {
            tier: 'NetworkPolicy',
            namespace: 'x',
            policy: 'deny-all',
            direction: 'ingress',
            packets: 3,
          },
          {
            tier: 'AdminNetworkPolicy',
            namespace: '',
            policy: 'block-y',
            direction: 'egress',
            packets: 1,
          },
        ],
        encryption: [{ range: '100.64.0.0/16', packets: 2 }],
      }),
    },
    { now: () => FIXTURE_NOW_MS, processMetrics: false },
  );
  const text = await metrics.render();
  t.deepEqual(
    samples(text, 'wiremesh_policy_drops_total'),
    new Map([
      ['{kind="NetworkPolicy",namespace="x",policy="deny-all",direction="ingress"}', '3'],
      ['{kind="AdminNetworkPolicy",namespace="",policy="block-y",direction="egress"}', '1'],
    ]),
  );
  t.deepEqual(
    samples(text, 'wiremesh_encryption_drops_total'),
    new Map([['{pool="default"}', '2']]),
  );
});
