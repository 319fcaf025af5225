// Dual-stack, end to end on a lab (lab 'dual': `lab up --ip-family dual`, an IPv6
// underlay 2001:db8:<lab>::/64 beside the IPv4 one and an IPv6 pool beside the IPv4
// pool): every node has both InternalIPs, every pod an IPv4 and an IPv6 address
// (status.podIPs carries both), every pod pair reaches each other over IPv4 and over
// IPv6 (ping and a TCP exchange), and a capture of the underlay while pods talk in
// both families shows only WireGuard between the nodes: no pod address of either
// family and no plaintext, which a capture inside wiremesh.wg does see.
import test from 'ava';
import { LabDriver } from './lab-driver.ts';
import type { ClusterPod } from './driver.ts';
import { eventually } from './probes.ts';
import { kubeClient, LAB_POOL_V6 } from '../lab/index.ts';
import { cidrContains, parseCidr } from '../agent/cidr.ts';

const NAMESPACE = 'default';
const ECHO_PORT = 7100;
let driver: LabDriver | undefined;
const pods: ClusterPod[] = [];

const d = (): LabDriver => {
  if (!driver) throw new Error('no lab: test.before failed');
  return driver;
};

const isV6 = (ip: string) => ip.includes(':');
const v4Of = (p: ClusterPod) => p.ips.find((ip) => !isV6(ip)) ?? '';
const v6Of = (p: ClusterPod) => p.ips.find(isV6) ?? '';

test.before(async () => {
  driver = await LabDriver.fresh({
    name: 'dual',
    nodes: 3,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
    ipFamily: 'dual',
  });
  // A pod per node, each running a TCP echo server on both families.
  for (const [i, node] of d().nodeNames().entries()) {
    pods.push(
      await d().createPod(
        node,
        NAMESPACE,
        `dual-pod${i + 1}`,
        { app: 'dual' },
        [],
        ['socat', `TCP6-LISTEN:${ECHO_PORT},ipv6only=0,fork,reuseaddr`, 'EXEC:cat'],
      ),
    );
  }
});

test.after.always(async () => {
  if (driver) await driver.close();
});

async function pingOk(from: ClusterPod, to: string): Promise<boolean> {
  const res = await d().execInPod(
    from.namespace,
    from.name,
    ['ping', ...(isV6(to) ? ['-6'] : []), '-c', '1', '-W', '1', to],
    { allowFailure: true },
  );
  return res.code === 0;
}

/** A line sent to the pod's echo server over TCP comes back. */
async function tcpEchoOk(from: ClusterPod, to: string, line: string): Promise<boolean> {
  const target = isV6(to) ? `TCP6:[${to}]:${ECHO_PORT}` : `TCP4:${to}:${ECHO_PORT}`;
  const res = await d().execInPod(
    from.namespace,
    from.name,
    ['socat', '-t', '2', '-T', '5', '-', target],
    {
      input: `${line}\n`,
      allowFailure: true,
      timeoutMs: 15_000,
    },
  );
  return res.code === 0 && res.stdout.includes(line);
}

test.serial(
  'nodes have both InternalIPs; pods an IPv4 and an IPv6 address, both in status.podIPs',
  async (t) => {
    const core = kubeClient(d().kubeconfig);
    for (const name of d().nodeNames()) {
      const node = await core.readNode({ name });
      const internal = (node.status?.addresses ?? [])
        .filter((a) => a.type === 'InternalIP')
        .map((a) => a.address);
      t.is(internal.length, 2, `${name}: ${internal.join(', ')}`);
      t.true(!isV6(internal[0] ?? '') && isV6(internal[1] ?? ''), `${name}: IPv4 first, then IPv6`);
      t.true(
        cidrContains(parseCidr('2001:db8::/32'), internal[1] ?? ''),
        'IPv6 underlay in the documentation range',
      );
    }
    const pool6 = parseCidr(LAB_POOL_V6);
    for (const p of pods) {
      t.is(p.ips.length, 2, `${p.name}: ${p.ips.join(', ')}`);
      t.true(cidrContains(parseCidr('100.64.0.0/16'), v4Of(p)), `${p.name} IPv4 ${v4Of(p)}`);
      t.true(cidrContains(pool6, v6Of(p)), `${p.name} IPv6 ${v6Of(p)} in ${LAB_POOL_V6}`);
      const obj = await core.readNamespacedPod({ namespace: p.namespace, name: p.name });
      t.deepEqual(
        obj.status?.podIPs?.map((x) => x.ip),
        p.ips,
        `${p.name}: status.podIPs carries both families`,
      );
    }
  },
);

test.serial(
  'every pod pair reaches each other over IPv4 and over IPv6: ping and TCP',
  async (t) => {
    t.is(pods.length, 3);
    const failures: string[] = [];
    let checked = 0;
    for (const from of pods) {
      for (const to of pods) {
        if (from === to) continue;
        for (const ip of [v4Of(to), v6Of(to)]) {
          const what = `${from.name} -> ${to.name} at ${ip}`;
          try {
            await eventually(`ping ${what}`, () => pingOk(from, ip), 20_000, 200);
            await eventually(`TCP ${what}`, () => tcpEchoOk(from, ip, `hello ${ip}`), 20_000, 500);
            checked++;
          } catch (e) {
            failures.push(`${what}: ${(e as Error).message}`);
          }
        }
      }
    }
    t.deepEqual(failures, [], 'pod pairs that cannot reach each other');
    t.is(checked, 12, '6 ordered pairs x 2 families');
  },
);

test.serial('the underlay carries both families only inside WireGuard', async (t) => {
  const [a, b] = pods;
  if (!a || !b) throw new Error('need 2 pods');
  const marker = `WIREMESH-DUAL-MARKER-${Date.now()}`;
  const nodeIPs = d()
    .nodeNames()
    .flatMap((n) => [d().lab.node(n).underlayIP, d().lab.node(n).underlayIP6]);
  const underlay = await d().captureUnderlay(b.node);
  const inside = await d().captureInNode(b.node, 'wiremesh.wg');
  for (const ip of [v4Of(b), v6Of(b)]) {
    t.true(await tcpEchoOk(a, ip, `${marker} ${ip}`), `TCP ${a.name} -> ${ip}`);
    t.true(await pingOk(a, ip), `ping ${a.name} -> ${ip}`);
  }
  const wire = await underlay.stop();
  const plain = await inside.stop();

  // Controls: inside the tunnel, both families' pod traffic and the marker are visible.
  t.true(plain.raw.includes(marker), 'the marker is visible inside wiremesh.wg');
  t.true(
    plain.lines.some((l) => l.includes(v6Of(a)) && l.includes(v6Of(b))),
    'IPv6 pod traffic inside wiremesh.wg',
  );
  t.true(
    plain.lines.some((l) => l.includes(v4Of(a)) && l.includes(v4Of(b))),
    'IPv4 pod traffic inside wiremesh.wg',
  );

  t.false(wire.raw.includes(marker), 'the marker never appears on the underlay');
  const podIPs = pods.flatMap((p) => p.ips);
  const wireguard = wire.lines.filter((l) => / UDP, length/.test(l));
  t.true(wireguard.length > 0, 'the capture saw the tunnel traffic');
  for (const line of wire.lines) {
    const leaked = podIPs.find((ip) => line.includes(`${ip}.`) || line.includes(`${ip} `));
    t.is(leaked, undefined, `no pod address on the underlay: ${line}`);
    // Between nodes only WireGuard, and the underlay's own neighbour discovery / ARP.
    if (/ICMP6, (neighbor|router|multicast listener)|ARP,/.test(line)) continue;
    const m = /IP6? (\S+)\.(\d+) > (\S+)\.(\d+): UDP/.exec(line);
    t.truthy(m, `only UDP crosses the underlay: ${line}`);
    if (!m) continue;
    t.true(nodeIPs.includes(m[1] ?? '') && nodeIPs.includes(m[3] ?? ''), `between nodes: ${line}`);
    t.true(m[2] === '51825' || m[4] === '51825', `WireGuard's port: ${line}`);
  }
});
