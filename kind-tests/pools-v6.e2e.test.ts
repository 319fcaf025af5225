// Fail-closed encryption for an IPv6 pool, end to end on a 2-node IPv6-only lab
// (`poolsv6`, `lab up --ip-family ipv6`: WireGuard over the IPv6 underlay). A pool
// `securev6` (2001:db8:80::/48, WireGuard, Required) gets a pod on each node; while
// both nodes have WireGuard the pods reach each other and the underlay (captured on
// the lab's bridge) shows WireGuard and never a pod address. Then node B's agent is
// restarted on "a kernel without WireGuard" (`--wireguard kernel` where the module
// is missing: it withdraws its key), as kind-tests/pools.e2e.test.ts does for IPv4:
// node A marks B's block blocked, the pods cannot connect (ping and TCP), and the
// underlay carries zero IPv6 packets with a pod address of that pool, in an outer
// header or inside any encapsulation.
//
// Beside it an IPv6 VXLAN pool without encryption, `vxlanv6` (2001:db8:81::/48,
// encryption None, VXLAN), with a pod on each node: each node routes the other's
// block over VXLAN (VXLAN over the IPv6 underlay, the IPv6 tunnel addresses as
// VTEPs), the underlay shows its pod traffic only inside UDP 4789, and a full-size
// ping with DF set (the pod's own MTU, at most the VXLAN device's 1430) passes.
import test from 'ava';
import { createPoolNamespace, Lab } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { startCapture, eventually, type Capture } from './probes.ts';
import { kubeClient, type KubeClient } from '../kube/index.ts';
import { cidrContains, parseCidr } from '../agent/cidr.ts';

const POOL = {
  name: 'securev6',
  cidr: '2001:db8:80::/48',
  blockSize: 122,
  encryption: 'WireGuard',
  encryptionMode: 'Required',
  encapsulation: 'None',
};
const VXLAN_POOL = {
  name: 'vxlanv6',
  cidr: '2001:db8:81::/48',
  blockSize: 122,
  encryption: 'None',
  encryptionMode: 'Preferred',
  encapsulation: 'VXLAN',
};
const ECHO_PORT = 7200;

let driver: LabDriver | undefined;
let lab: Lab;
let kube: KubeClient;
let nodeA = '';
let nodeB = '';
const ips = { a: '', b: '' };
const vxlanIps = { a: '', b: '' };

const d = (): LabDriver => {
  if (!driver) throw new Error('no lab: test.before failed');
  return driver;
};

test.before(async () => {
  driver = await LabDriver.fresh({
    name: 'poolsv6',
    nodes: 2,
    podsPerNode: 0,
    agents: true,
    ipFamily: 'ipv6',
  });
  lab = driver.lab;
  kube = kubeClient(lab.state.kubeconfig);
  [nodeA = '', nodeB = ''] = lab.plan.nodes.map((n) => n.name);
  for (const p of [POOL, VXLAN_POOL]) await createPoolNamespace(kube, p);
  // Both agents have the pools (and, a little later, the namespaces' annotations).
  for (const node of [nodeA, nodeB])
    for (const name of [POOL.name, VXLAN_POOL.name])
      await eventually(
        `${node} to take pool ${name}`,
        async () => (await lab.agentStatus(node)).paths.pools.some((p) => p.name === name),
        60_000,
        500,
      );
  await new Promise((r) => setTimeout(r, 2000));
  for (const [side, node] of [
    ['a', nodeA],
    ['b', nodeB],
  ] as const) {
    const pod = await d().createPod(
      node,
      POOL.name,
      `${POOL.name}-${side}`,
      { app: 'poolsv6' },
      [],
      ['socat', `TCP6-LISTEN:${ECHO_PORT},fork,reuseaddr`, 'EXEC:cat'],
    );
    ips[side] = pod.ips[0] ?? '';
    const vx = await d().createPod(node, VXLAN_POOL.name, `${VXLAN_POOL.name}-${side}`, {
      app: 'poolsv6',
    });
    vxlanIps[side] = vx.ips[0] ?? '';
  }
});

test.after.always(async () => {
  if (driver) await driver.close();
});

async function pingOk(
  from: 'a' | 'b',
  to: string,
  pool: string = POOL.name,
  extra: string[] = [],
): Promise<boolean> {
  const res = await d().execInPod(
    pool,
    `${pool}-${from}`,
    ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '1', ...extra, to],
    { allowFailure: true },
  );
  return res.code === 0;
}

async function tcpEchoOk(from: 'a' | 'b', to: string, line: string): Promise<boolean> {
  const res = await d().execInPod(
    POOL.name,
    `${POOL.name}-${from}`,
    ['socat', '-t', '2', '-T', '5', '-', `TCP6:[${to}]:${ECHO_PORT},connect-timeout=3`],
    { input: `${line}\n`, allowFailure: true, timeoutMs: 15_000 },
  );
  return res.code === 0 && res.stdout.includes(line);
}

function underlayCapture(tag: string): Promise<Capture> {
  return startCapture(
    [],
    lab.plan.bridge,
    `ip6 and not host ${lab.plan.gatewayIP6}`,
    `/tmp/wm-poolsv6-${tag}-${process.pid}.pcap`,
  );
}

/** Outer packets, WireGuard among them, and every line naming one of the pool's pods. */
function summarise(lines: string[]) {
  const outer = lines.filter((l) => /^\d\d:\d\d:\d\d/.test(l));
  const mentions = (l: string) =>
    [ips.a, ips.b].some((ip) => [' ', '.', ':', ','].some((end) => l.includes(`${ip}${end}`)));
  return {
    packets: outer.length,
    wireguard: outer.filter((l) => /^\S+ IP6 \S+\.51825 > |> \S+\.51825: UDP/.test(l)).length,
    /** Any line (outer header or a decoded inner one) naming a pod of the pool. */
    pool: lines.filter(mentions).length,
  };
}

/** Pod a and b exchange pings and a TCP line both ways under an underlay capture. */
async function exchange(tag: string) {
  const cap = await underlayCapture(tag);
  const ok: boolean[] = [];
  try {
    ok.push(await pingOk('a', ips.b), await pingOk('b', ips.a));
    ok.push(await tcpEchoOk('a', ips.b, `${tag} a->b`), await tcpEchoOk('b', ips.a, `${tag} b->a`));
  } catch (e) {
    await cap.stop();
    throw e;
  }
  // Let tcpdump read what is still in its ring before it stops.
  await new Promise((r) => setTimeout(r, 500));
  const { lines } = await cap.stop();
  return { ok, seen: summarise(lines) };
}

async function blockPath(node: string, ip: string): Promise<string | undefined> {
  const s = await lab.agentStatus(node);
  return s.paths.blocks.find((b) => cidrContains(parseCidr(b.cidr), ip))?.path;
}

test.serial('the Required IPv6 pool gives each pod an address of its CIDR', (t) => {
  for (const ip of [ips.a, ips.b])
    t.true(cidrContains(parseCidr(POOL.cidr), ip), `${ip} in ${POOL.cidr}`);
});

test.serial(
  'with WireGuard on both nodes, the pool connects, only WireGuard on the underlay',
  async (t) => {
    await eventually('pod a reaching pod b', () => pingOk('a', ips.b), 30_000, 300);
    const { ok, seen } = await exchange('before');
    t.log({ before: seen });
    t.deepEqual(ok, [true, true, true, true], 'ping and TCP both ways');
    t.true(seen.wireguard >= 12, 'the capture saw the tunnel over the IPv6 underlay');
    t.is(seen.pool, 0, 'no packet of the pool in plaintext on the underlay');
  },
);

test.serial(
  'the IPv6 VXLAN pool (encryption None): its pod traffic crosses the underlay as VXLAN; a full-size DF ping passes',
  async (t) => {
    for (const ip of [vxlanIps.a, vxlanIps.b])
      t.true(cidrContains(parseCidr(VXLAN_POOL.cidr), ip), `${ip} in ${VXLAN_POOL.cidr}`);
    for (const [node, ip] of [
      [nodeA, vxlanIps.b],
      [nodeB, vxlanIps.a],
    ] as const)
      await eventually(
        `${node} to route ${ip}'s block over VXLAN`,
        async () => (await blockPath(node, ip)) === 'vxlan',
        30_000,
        300,
      ).catch(async (e: unknown) => {
        // Say why not: the block's path and reason, and the node's path events.
        const { blocks, events } = (await lab.agentStatus(node)).paths;
        t.log({ blocks, events });
        throw e;
      });
    await eventually(
      'vxlan pod a reaching pod b',
      () => pingOk('a', vxlanIps.b, VXLAN_POOL.name),
      30_000,
      300,
    );

    const cap = await underlayCapture('vxlan');
    const ok: boolean[] = [];
    try {
      ok.push(
        await pingOk('a', vxlanIps.b, VXLAN_POOL.name),
        await pingOk('b', vxlanIps.a, VXLAN_POOL.name),
      );
    } catch (e) {
      await cap.stop();
      throw e;
    }
    // Let tcpdump read what is still in its ring before it stops.
    await new Promise((r) => setTimeout(r, 500));
    const { lines } = await cap.stop();
    t.deepEqual(ok, [true, true], 'ping both ways');
    const outer = (l: string) => /^\d\d:\d\d:\d\d/.test(l);
    const mentions = (l: string) =>
      [vxlanIps.a, vxlanIps.b].some((ip) =>
        [' ', ':', ','].some((end) => l.includes(` ${ip}${end}`)),
      );
    const inner = lines.flatMap((l, i) => (!outer(l) && mentions(l) ? [i] : []));
    t.log({ lines: lines.length, inner: inner.length, first: lines.slice(0, 2) });
    t.true(inner.length >= 12, 'three requests and three replies each way, decapsulated');
    for (const i of inner)
      t.regex(
        lines[i - 1] ?? '',
        /^\S+ IP6 \S+ > \S+\.4789: VXLAN, flags \[I\] \(0x08\), vni 4100$/,
        `inside VXLAN over the IPv6 underlay: ${lines[i]}`,
      );
    t.false(
      lines.some((l) => outer(l) && mentions(l)),
      'no pod address in an outer header',
    );

    // Full size: the pod's own MTU (no larger than the VXLAN device's, 1500 - 70) less
    // 48 bytes of IPv6 and ICMPv6 header, with fragmentation forbidden.
    const mtu = Number(
      (
        await d().execInPod(VXLAN_POOL.name, `${VXLAN_POOL.name}-a`, [
          'cat',
          '/sys/class/net/eth0/mtu',
        ])
      ).stdout.trim(),
    );
    const status = await lab.agentStatus(nodeA);
    t.log({ podMtu: mtu, status: status.paths.blocks.find((b) => b.path === 'vxlan') });
    t.true(mtu > 1280 && mtu <= 1430, `pod MTU ${mtu} fits VXLAN over IPv6`);
    t.true(
      await pingOk('a', vxlanIps.b, VXLAN_POOL.name, ['-M', 'do', '-s', String(mtu - 48)]),
      `a ${mtu}-byte packet with DF set crosses`,
    );
  },
);

test.serial(
  'a peer that lost its key: the Required IPv6 pool fails closed, zero plaintext on the underlay',
  async (t) => {
    // Node B's agent restarted on "a kernel without WireGuard": it withdraws its key.
    await lab.stopAgent(nodeB);
    await lab.startAgent(nodeB, ['--wireguard', 'kernel']);
    t.teardown(async () => {
      await lab.stopAgent(nodeB);
      await lab.startAgent(nodeB);
    });
    await eventually(
      'node B to report WireGuard unavailable',
      async () => {
        const s = await lab.agentStatus(nodeB);
        return s.wireguard.mode === 'unavailable' && s.paths.blocks.length > 0;
      },
      30_000,
      300,
    );
    await eventually(
      `${nodeA} to mark ${ips.b}'s block blocked`,
      async () => (await blockPath(nodeA, ips.b)) === 'blocked',
      30_000,
      200,
    );
    const { ok, seen } = await exchange('after');
    t.log({ after: seen });
    t.deepEqual(ok, [false, false, false, false], 'neither ping nor TCP connects, either way');
    t.is(seen.pool, 0, 'zero IPv6 packets of the Required pool on the underlay');
    const a = await lab.agentStatus(nodeA);
    t.true(
      a.paths.events.some((e) => e.reason === 'EncryptionRequiredBlocked' && e.pool === POOL.name),
      'node A reports the pool blocked',
    );
  },
);
