// The address-family suites, shared by the dual-stack lab (dualstack.e2e.test.ts, lab
// 'dual': `lab up --ip-family dual`, an IPv6 underlay 2001:db8:<lab>::/64 beside the
// IPv4 one and an IPv6 pool beside the IPv4 pool) and the IPv6-only lab
// (v6only.e2e.test.ts, lab 'v6only': IPv6 InternalIPs and an IPv6 pool only, so
// WireGuard runs over the IPv6 underlay). For the lab's families: every node has an
// InternalIP of each (IPv4 first), every pod an address of each (status.podIPs
// carries them all), every pod pair reaches each other over every family (ping and a
// TCP exchange), and a capture of the underlay while pods talk shows only WireGuard
// between the nodes: no pod address and no plaintext, which a capture inside
// wiremesh.wg does see. And a NetworkPolicy whose ipBlocks name one pod's addresses
// (an IPv6 /128 too) lets that pod in and keeps another out, over every family.
// The apiserver listens on the IPv6 underlay in the IPv6-only lab, the IPv4 one otherwise.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import { LabDriver } from './lab-driver.ts';
import type { ClusterPod } from './driver.ts';
import { eventually } from './probes.ts';
import { kubeClient, LAB_POOL_V6, type IpFamily } from '../lab/index.ts';
import { cidrContains, parseCidr } from '../agent/cidr.ts';

const NAMESPACE = 'default';
const ECHO_PORT = 7100;
const POOL_V4 = '100.64.0.0/16';

const isV6 = (ip: string) => ip.includes(':');

/** The suite against a fresh 3-node lab `name` of the given families. */
export function ipFamilySuite(name: string, ipFamily: Exclude<IpFamily, 'ipv4'>): void {
  const families: (4 | 6)[] = ipFamily === 'dual' ? [4, 6] : [6];
  const familyOf = (ip: string): 4 | 6 => (isV6(ip) ? 6 : 4);
  const addressOf = (p: ClusterPod, family: 4 | 6) =>
    p.ips.find((ip) => familyOf(ip) === family) ?? '';
  let driver: LabDriver | undefined;
  const pods: ClusterPod[] = [];
  const d = (): LabDriver => {
    if (!driver) throw new Error('no lab: test.before failed');
    return driver;
  };

  test.before(async () => {
    driver = await LabDriver.fresh({
      name,
      nodes: 3,
      podsPerNode: 0,
      agents: true,
      cni: 'wiremesh',
      ipFamily,
    });
    // A pod per node, each running a TCP echo server on both families.
    for (const [i, node] of d().nodeNames().entries()) {
      pods.push(
        await d().createPod(
          node,
          NAMESPACE,
          `${name}-pod${i + 1}`,
          { app: name, idx: String(i + 1) },
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
    const target =
      (isV6(to) ? `TCP6:[${to}]:${ECHO_PORT}` : `TCP4:${to}:${ECHO_PORT}`) + ',connect-timeout=3';
    const res = await d().execInPod(
      from.namespace,
      from.name,
      ['socat', '-t', '2', '-T', '5', '-', target],
      { input: `${line}\n`, allowFailure: true, timeoutMs: 15_000 },
    );
    return res.code === 0 && res.stdout.includes(line);
  }

  test.serial(
    `${ipFamily}: nodes have an InternalIP and pods an address of each family, in status.podIPs`,
    async (t) => {
      const core = kubeClient(d().kubeconfig);
      for (const n of d().nodeNames()) {
        const node = await core.readNode({ name: n });
        const internal = (node.status?.addresses ?? [])
          .filter((a) => a.type === 'InternalIP')
          .map((a) => a.address);
        t.deepEqual(internal.map(familyOf), families, `${n}: ${internal.join(', ')}`);
        const v6 = internal.find(isV6) ?? '';
        t.true(cidrContains(parseCidr('2001:db8::/32'), v6), `${n}: ${v6} in 2001:db8::/32`);
        // The node's underlay carries an address of each family, and no other.
        const own = await d().execInNode(n, [
          'ip',
          '-j',
          'addr',
          'show',
          'dev',
          'eth0',
          'scope',
          'global',
        ]);
        // (`ip -j` lists an address the scope leaves out as an empty object.)
        const addrs = (JSON.parse(own.stdout) as { addr_info: { local?: string }[] }[]).flatMap(
          (l) => l.addr_info.flatMap((a) => (a.local ? [a.local] : [])),
        );
        t.deepEqual(
          [...new Set(addrs.map(familyOf))].sort(),
          families,
          `${n}: ${addrs.join(', ')}`,
        );
      }
      for (const p of pods) {
        t.deepEqual(p.ips.map(familyOf), families, `${p.name}: ${p.ips.join(', ')}`);
        if (families.includes(4))
          t.true(cidrContains(parseCidr(POOL_V4), addressOf(p, 4)), `${p.name} in ${POOL_V4}`);
        t.true(
          cidrContains(parseCidr(LAB_POOL_V6), addressOf(p, 6)),
          `${p.name}: ${addressOf(p, 6)} in ${LAB_POOL_V6}`,
        );
        const obj = await core.readNamespacedPod({ namespace: p.namespace, name: p.name });
        t.deepEqual(
          obj.status?.podIPs?.map((x) => x.ip),
          p.ips,
          `${p.name}: status.podIPs`,
        );
      }
    },
  );

  test.serial(
    `${ipFamily}: nodes reach the apiserver at its ${ipFamily === 'ipv6' ? 'IPv6' : 'IPv4'} underlay address, and only there`,
    async (t) => {
      // An IPv6-only lab's control plane listens on the IPv6 underlay (its nodes need no
      // IPv4); a dual-stack lab's on the IPv4 one, as before.
      const { plan, state } = d().lab;
      const [here, there] =
        ipFamily === 'ipv6'
          ? [`https://[${plan.gatewayIP6}]:6443`, `https://${plan.gatewayIP}:6443`]
          : [`https://${plan.gatewayIP}:6443`, `https://[${plan.gatewayIP6}]:6443`];
      t.is(state.apiserverURL, here);
      const agentConfig = await readFile(
        join(plan.dataDir, 'nodes', d().nodeNames()[0] ?? '', 'agent.kubeconfig'),
        'utf8',
      );
      t.true(agentConfig.includes(`server: ${here}`), `the agents' kubeconfig names ${here}`);
      const curl = (node: string, url: string) =>
        d().execInNode(
          node,
          [
            'curl',
            '-sS',
            '--max-time',
            '5',
            '--cacert',
            join(plan.dataDir, 'pki', 'ca.crt'),
            `${url}/livez`,
          ],
          { allowFailure: true },
        );
      for (const node of d().nodeNames()) {
        // The certificate names the address (curl checks the IP SAN).
        t.is((await curl(node, here)).stdout.trim(), 'ok', `${node}: ${here}/livez`);
        t.not((await curl(node, there)).code, 0, `${node}: nothing listens at ${there}`);
      }
    },
  );

  test.serial(
    `${ipFamily}: every pod pair reaches each other over every family: ping and TCP`,
    async (t) => {
      t.is(pods.length, 3);
      const failures: string[] = [];
      let checked = 0;
      for (const from of pods) {
        for (const to of pods) {
          if (from === to) continue;
          for (const family of families) {
            const ip = addressOf(to, family);
            const what = `${from.name} -> ${to.name} at ${ip}`;
            try {
              await eventually(`ping ${what}`, () => pingOk(from, ip), 20_000, 200);
              await eventually(
                `TCP ${what}`,
                () => tcpEchoOk(from, ip, `hello ${ip}`),
                20_000,
                500,
              );
              checked++;
            } catch (e) {
              failures.push(`${what}: ${(e as Error).message}`);
            }
          }
        }
      }
      t.deepEqual(failures, [], 'pod pairs that cannot reach each other');
      t.is(checked, 6 * families.length, '6 ordered pairs, every family');
    },
  );

  test.serial(`${ipFamily}: the underlay carries pod traffic only inside WireGuard`, async (t) => {
    const [a, b] = pods;
    if (!a || !b) throw new Error('need 2 pods');
    const marker = `WIREMESH-FAMILY-MARKER-${Date.now()}`;
    const nodeIPs = d()
      .nodeNames()
      .flatMap((n) => [d().lab.node(n).underlayIP, d().lab.node(n).underlayIP6]);
    // Without the control plane's traffic (the driver leaves out its IPv4 address;
    // an IPv6-only lab's apiserver is at the IPv6 one).
    const underlay = await d().captureUnderlay(b.node, `not host ${d().lab.plan.gatewayIP6}`);
    const inside = await d().captureInNode(b.node, 'wiremesh.wg');
    for (const family of families) {
      const ip = addressOf(b, family);
      t.true(await tcpEchoOk(a, ip, `${marker} ${ip}`), `TCP ${a.name} -> ${ip}`);
      t.true(await pingOk(a, ip), `ping ${a.name} -> ${ip}`);
    }
    const wire = await underlay.stop();
    const plain = await inside.stop();

    // Controls: inside the tunnel, every family's pod traffic and the marker are visible.
    t.true(plain.raw.includes(marker), 'the marker is visible inside wiremesh.wg');
    for (const family of families)
      t.true(
        plain.lines.some(
          (l) => l.includes(addressOf(a, family)) && l.includes(addressOf(b, family)),
        ),
        `IPv${family} pod traffic inside wiremesh.wg`,
      );

    t.false(wire.raw.includes(marker), 'the marker never appears on the underlay');
    const podIPs = pods.flatMap((p) => p.ips);
    const tunnel = wire.lines.filter((l) => /: UDP, length/.test(l));
    t.true(tunnel.length > 0, 'the capture saw the tunnel traffic');
    const underlayFamily = families[0] === 4 ? 'IP' : 'IP6';
    // The lab's veths have MTU 1500: WireGuard takes 60 over IPv4 and 80 over IPv6,
    // rounded down to a multiple of 16.
    t.is((await d().agentStatus(b.node)).wireguard.mtu, families[0] === 4 ? 1440 : 1408);
    t.true(
      tunnel.every((l) => l.includes(` ${underlayFamily} `)),
      `WireGuard runs over the ${underlayFamily === 'IP' ? 'IPv4' : 'IPv6'} underlay`,
    );
    for (const line of wire.lines) {
      const leaked = podIPs.find((ip) => line.includes(`${ip}.`) || line.includes(`${ip} `));
      t.is(leaked, undefined, `no pod address on the underlay: ${line}`);
      // Between nodes only WireGuard, and the underlay's own neighbour discovery / ARP.
      if (/ICMP6, (neighbor|router|multicast listener)|ARP,/.test(line)) continue;
      const m = /IP6? (\S+)\.(\d+) > (\S+)\.(\d+): UDP/.exec(line);
      t.truthy(m, `only UDP crosses the underlay: ${line}`);
      if (!m) continue;
      t.true(
        nodeIPs.includes(m[1] ?? '') && nodeIPs.includes(m[3] ?? ''),
        `between nodes: ${line}`,
      );
      t.true(m[2] === '51825' || m[4] === '51825', `WireGuard's port: ${line}`);
    }
  });

  test.serial(
    `${ipFamily}: NetworkPolicy ipBlocks of every family admit one pod, not another`,
    async (t) => {
      const [friend, stranger, guarded] = pods;
      if (!friend || !stranger || !guarded) throw new Error('need 3 pods');
      const kc = new KubeConfig();
      kc.loadFromFile(d().kubeconfig);
      const net = kc.makeApiClient(NetworkingV1Api);
      const policy = `${name}-ipblock`;
      await net.createNamespacedNetworkPolicy({
        namespace: NAMESPACE,
        body: {
          metadata: { name: policy },
          spec: {
            podSelector: { matchLabels: { app: name, idx: '3' } },
            policyTypes: ['Ingress'],
            ingress: [
              {
                _from: friend.ips.map((ip) => ({
                  ipBlock: { cidr: `${ip}/${isV6(ip) ? 128 : 32}` },
                })),
              },
            ],
          },
        },
      });
      t.teardown(() =>
        net
          .deleteNamespacedNetworkPolicy({ namespace: NAMESPACE, name: policy })
          .then(() => undefined)
          .catch(() => undefined),
      );
      for (const family of families) {
        const ip = addressOf(guarded, family);
        await eventually(
          `IPv${family}: ${stranger.name} kept out of ${guarded.name}`,
          async () => !(await tcpEchoOk(stranger, ip, `stranger ${ip}`)),
          30_000,
          500,
        );
        t.true(await tcpEchoOk(friend, ip, `friend ${ip}`), `IPv${family}: ${friend.name} let in`);
        t.false(await tcpEchoOk(stranger, ip, `stranger ${ip}`), `IPv${family}: stranger kept out`);
      }
    },
  );
}
