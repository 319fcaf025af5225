// BGP for the natively routed plaintext pools, on a lab of two subnets (198.18.K.0/25
// and .128/25) joined by a router namespace with its own BIRD, a top-of-rack router
// peering with every node. Three nodes: node1 and node2 on the lower subnet, node3 on
// the upper. A pool `native` (encryption None, encapsulation None) beside the
// default Required pool: pods of `native` reach each other across the subnets through
// routes BGP taught the nodes and the router, in plaintext with no encapsulation on
// the underlay, while the Required pool's traffic on the same nodes stays WireGuard;
// a node that dies is withdrawn at once; a route reflector carries the routes. Lab-only:
// the subnets and the router are the lab's to make.
import test from 'ava';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Lab, createPoolNamespace } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { startCapture, eventually } from './probes.ts';
import { kubeClient, type KubeClient } from '../kube/index.ts';
import { defaultRunner } from '../sys/index.ts';
import { LABEL_ROUTE_REFLECTOR } from '../agent/bgp.ts';
import type { AgentStatus } from '../agent/index.ts';

let driver: LabDriver | undefined;
let lab: Lab;
let kube: KubeClient;
const NATIVE_CIDR = '10.250.0.0/16';
const pods: Record<string, { ip: string; node: string; name: string; namespace: string }> = {};
let n1 = '';
let n2 = '';
let n3 = '';

test.before(async () => {
  driver = await LabDriver.fresh({
    name: 'e2ebgp',
    nodes: 3,
    podsPerNode: 0,
    agents: true,
    subnets: 2,
  });
  lab = driver.lab;
  [n1, n2, n3] = lab.plan.nodes.map((n) => n.name) as [string, string, string];
  kube = kubeClient(lab.state.kubeconfig);
  const native = {
    cidr: NATIVE_CIDR,
    blockSize: 26,
    encryption: 'None',
    encapsulation: 'None',
  };
  await createPoolNamespace(kube, { name: 'native', ...native });
  // The Required pods' namespace names the default pool: a namespace without a pool
  // takes the first pool that serves the node, which may be `native`.
  await kube.request('POST', '/api/v1/namespaces', {
    metadata: { name: 'secret', annotations: { 'wiremesh.io/ippool': 'default-ipv4' } },
  });
  for (const [key, node, ns] of [
    ['native1', n1, 'native'],
    ['native2', n2, 'native'],
    ['native3', n3, 'native'],
    ['secret1', n1, 'secret'],
    ['secret3', n3, 'secret'],
  ] as const) {
    const pod = await eventuallyValue(`pod ${key}`, () => lab.addPod(node, ns, key, { app: key }));
    const ip = pod.ips[0];
    if (!ip) throw new Error(`pod ${key} has no address`);
    pods[key] = { ip, node, name: key, namespace: ns };
  }
});

test.after.always(async () => {
  if (driver) await driver.close();
});

async function eventuallyValue<T>(what: string, f: () => Promise<T>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > until) throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

function pod(key: string) {
  const p = pods[key];
  if (!p) throw new Error(`no pod ${key}`);
  return p;
}

/** Routes BIRD put into a node's (or the router's) kernel: destination -> gateway. */
async function birdRoutes(where: string): Promise<Map<string, string>> {
  const argv = ['ip', '-j', 'route', 'show', 'proto', 'bird'];
  const res =
    where === 'router'
      ? await defaultRunner.run(['ip', 'netns', 'exec', router().netns, ...argv])
      : await lab.execInNode(where, argv);
  const routes = JSON.parse(res.stdout || '[]') as { dst: string; gateway?: string }[];
  return new Map(routes.map((r) => [r.dst, r.gateway ?? '']));
}

function router() {
  const r = lab.plan.router;
  if (!r) throw new Error('the lab has no router');
  return r;
}

const blockOf = (ip: string) => {
  const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
  return `${a}.${b}.${c}.${d - (d % 64)}/26`;
};

async function ping(from: string, to: string): Promise<boolean> {
  const p = pod(from);
  const res = await lab.execInPod(p.name, ['ping', '-c', '1', '-W', '1', pod(to).ip], {
    allowFailure: true,
    namespace: p.namespace,
  });
  return res.code === 0;
}

async function bgpStatus(node: string): Promise<NonNullable<AgentStatus['bgp']>> {
  const s = (await lab.agentStatus(node)).bgp;
  if (!s) throw new Error(`${node}: the agent reports no BGP`);
  return s;
}

async function established(node: string): Promise<string[]> {
  return (await bgpStatus(node)).sessions
    .filter((s) => s.state === 'Established')
    .map((s) => s.name)
    .sort();
}

test.serial(
  'pods of a native pool reach each other across subnets in plaintext through BGP routes; the Required pool stays WireGuard',
  async (t) => {
    const far = blockOf(pod('native3').ip);
    const sessions = [
      'node_' + n2.replace(/-/g, '_'),
      'node_' + n3.replace(/-/g, '_'),
      'peer_lab_router_lower',
    ].sort();
    // The router passes blocks on as soon as its own sessions are up: wait for the mesh too.
    await eventually(
      `${n1}: sessions with the other nodes and the router, and ${far} learnt`,
      async () =>
        (await established(n1)).join() === sessions.join() &&
        (await birdRoutes(n1)).has(far) &&
        (await birdRoutes('router')).has(far),
      60_000,
    );
    t.deepEqual((await bgpStatus(n1)).announced, [blockOf(pod('native1').ip)]);
    // The router holds every native block, and no block of the encrypted pool.
    const routerTable = await birdRoutes('router');
    for (const k of ['native1', 'native2', 'native3'])
      t.true(routerTable.has(blockOf(pod(k).ip)), k);
    t.false(routerTable.has(blockOf(pod('secret1').ip)), 'no route for the Required pool');
    t.false((await birdRoutes(n1)).has(blockOf(pod('secret3').ip)));

    // On the router's link: the native pods' own addresses, no encapsulation.
    const file = join(tmpdir(), `bgp-${process.pid}-native.pcap`);
    const capture = await startCapture(
      ['ip', 'netns', 'exec', router().netns],
      'eth0',
      'icmp or udp port 4789 or udp port 51825',
      file,
    );
    let seen: string[];
    try {
      await eventually('native1 -> native3', () => ping('native1', 'native3'), 20_000);
      t.true(await ping('native3', 'native1'));
    } finally {
      seen = (await capture.stop()).lines;
    }
    const plain = seen.filter((l) =>
      l.includes(`${pod('native1').ip} > ${pod('native3').ip}: ICMP echo request`),
    );
    t.true(
      plain.length > 0,
      `the router forwarded the pods' own packets: ${seen.slice(0, 5).join(' | ')}`,
    );
    t.false(
      seen.some((l) => /\.4789: VXLAN/.test(l)),
      'no VXLAN on the underlay',
    );

    // The Required pool between the same nodes: only WireGuard crosses the router.
    const file2 = join(tmpdir(), `bgp-${process.pid}-secret.pcap`);
    const capture2 = await startCapture(
      ['ip', 'netns', 'exec', router().netns],
      'eth0',
      `host ${pod('secret1').ip} or host ${pod('secret3').ip} or udp port 51825`,
      file2,
    );
    let seen2: string[];
    try {
      await eventually('secret1 -> secret3', () => ping('secret1', 'secret3'), 30_000);
    } finally {
      seen2 = (await capture2.stop()).lines;
    }
    t.false(
      seen2.some((l) => l.includes(pod('secret1').ip) || l.includes(pod('secret3').ip)),
      `no Required pod address on the underlay: ${seen2
        .filter((l) => l.includes(pod('secret1').ip))
        .slice(0, 3)
        .join(' | ')}`,
    );
    t.true(
      seen2.some((l) => l.includes('.51825')),
      'the Required pool went through WireGuard',
    );
  },
);

test.serial(
  'a node that dies is withdrawn from the others and the router within the hold time',
  async (t) => {
    const far = blockOf(pod('native3').ip);
    await eventually(`${n1} has ${far}`, async () => (await birdRoutes(n1)).has(far), 30_000);
    const birdPid = Number(
      (await lab.execInNode(n3, ['cat', '/run/wiremesh/bird/bird.pid'])).stdout.trim(),
    );
    t.true(Number.isInteger(birdPid) && birdPid > 1, 'node3 runs BIRD');
    try {
      // Agent and BIRD killed at once (a crash, not a clean stop: no BGP notification;
      // the kernel still closes BIRD's connections, so neighbours see it at once). A
      // silent node is withdrawn by the hold timer: 8.3 s in bgp/bird.netns.test.ts.
      await lab.stopAgent(n3, 'SIGKILL');
      process.kill(birdPid, 'SIGKILL');
      const t0 = Date.now();
      await eventually(
        `${far} withdrawn from ${n1} and the router`,
        async () => !(await birdRoutes(n1)).has(far) && !(await birdRoutes('router')).has(far),
        30_000,
        200,
      );
      const ms = Date.now() - t0;
      t.log(`withdrawn ${ms} ms after node3's BGP speaker died (hold time 9 s)`);
      t.true(ms < 15_000);
      t.false(await ping('native1', 'native3'));
    } finally {
      await lab.startAgent(n3);
      await lab.waitAgentReady(n3, 60_000);
    }
    await eventually(`${far} back on ${n1}`, async () => (await birdRoutes(n1)).has(far), 60_000);
    await eventually('native1 -> native3 again', () => ping('native1', 'native3'), 30_000);
  },
);

test.serial(
  'a route reflector: the others peer with it only and learn every block through it',
  async (t) => {
    const reflectorName = 'node_' + n1.replace(/-/g, '_');
    const setLabel = (value: string | null) =>
      kube.request(
        'PATCH',
        `/api/v1/nodes/${n1}`,
        { metadata: { labels: { [LABEL_ROUTE_REFLECTOR]: value } } },
        { contentType: 'application/merge-patch+json' },
      );
    await setLabel('true');
    try {
      for (const n of [n2, n3]) {
        await eventually(
          `${n} peers with the reflector only`,
          async () => {
            const s = (await bgpStatus(n)).sessions
              .map((x) => x.name)
              .filter((x) => x.startsWith('node_'));
            return s.length === 1 && s[0] === reflectorName;
          },
          30_000,
        );
      }
      // node2 learns node3's block (across the subnets) from the reflector, next hop node3.
      const far = blockOf(pod('native3').ip);
      await eventually(
        `${n2} learns ${far} through ${n1}`,
        async () => {
          const res = await lab.execInNode(n2, [
            'birdc',
            '-s',
            '/run/wiremesh/bird/bird.ctl',
            'show',
            'route',
            'for',
            pod('native3').ip,
            'all',
          ]);
          return res.stdout.includes(reflectorName) && res.stdout.includes('BGP.originator_id');
        },
        30_000,
      );
      await eventually(
        'native2 -> native3 with the reflector',
        () => ping('native2', 'native3'),
        30_000,
      );
      t.pass();
    } finally {
      await setLabel(null);
    }
    await eventually(
      `${n2} back in the full mesh`,
      async () => (await established(n2)).length === 3,
      60_000,
    );
  },
);

test.serial(
  'external routers only (no node-to-node mesh): every node learns the others through the router',
  async (t) => {
    const nodes = [n1, n2, n3];
    const restartAgents = async (extraArgs: string[]) => {
      for (const n of nodes) {
        await lab.stopAgent(n);
        await lab.startAgent(n, extraArgs);
      }
      await Promise.all(nodes.map((n) => lab.waitAgentReady(n, 60_000)));
    };
    // The flag overrides the ConfigMap's bgp-node-mesh as the DaemonSet's args would.
    await restartAgents(['--bgp-node-mesh', 'false']);
    try {
      for (const n of nodes) {
        await eventually(
          `${n} has one session, with the router, Established`,
          async () => {
            const s = (await bgpStatus(n)).sessions;
            return s.length === 1 && s[0]?.name.startsWith('peer_') === true
              ? s[0].state === 'Established'
              : false;
          },
          30_000,
        );
      }
      const [lower, upper] = router().addresses.map((a) => a.split('/')[0] ?? '');
      // Each node learns the others' blocks from the router, next hop the router's
      // address on its own subnet, across the subnets as within one.
      const far = blockOf(pod('native3').ip);
      const near = blockOf(pod('native1').ip);
      for (const [n, block, via] of [
        [n1, far, lower],
        [n3, near, upper],
        [n2, near, lower],
      ] as const)
        await eventually(
          `${n} routes ${block} via the router ${via}`,
          async () => (await birdRoutes(n)).get(block) === via,
          30_000,
        );
      for (const [from, to] of [
        ['native1', 'native3'],
        ['native3', 'native2'],
        ['native2', 'native1'],
      ] as const)
        await eventually(`${from} -> ${to} through the router`, () => ping(from, to), 30_000);
      t.pass();
    } finally {
      await restartAgents([]);
    }
    await eventually(
      `${n2} back in the full mesh`,
      async () => (await established(n2)).length === 3,
      60_000,
    );
  },
);
