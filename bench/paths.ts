// Throughput of each per-pool path (issue #5): one TCP stream (iperf3) between two
// pods on two lab nodes (lab `pools`: 'pathbench' is over the 8-character limit), over the path the agent set up for their pool
// (WireGuard, VXLAN, native routing), against the same kind of device configured by
// hand between the same two node namespaces in the same run (a wireguard-go tunnel,
// a VXLAN link on another VNI and port, the plain underlay). Medians over repeats,
// runs interleaved so drift on this shared machine hits both sides alike. The
// baselines run node to node, without the pods' veth hop at each end, so a ratio
// slightly below 1 is the veth pair's cost, not the path's.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { figureOf, type Figure } from './harness.ts';
import { generateKeyPair } from '../crypto/index.ts';
import { Lab } from '../lab/index.ts';
import { kubeClient } from '../kube/index.ts';
import { defaultRunner, systemEnv, toolPath } from '../sys/index.ts';
import { WgCli } from '../tunnels/index.ts';

const POOLS = [
  { name: 'secure', cidr: '100.90.0.0/16', encryption: 'WireGuard', encapsulation: 'None' },
  { name: 'plain', cidr: '100.91.0.0/16', encryption: 'None', encapsulation: 'VXLAN' },
  { name: 'native', cidr: '100.92.0.0/16', encryption: 'None', encapsulation: 'None' },
] as const;

export async function benchPaths(repeats: number): Promise<Figure[]> {
  const lab = await Lab.up({ name: 'pools', nodes: 2, podsPerNode: 0, agents: true });
  const servers: ChildProcess[] = [];
  try {
    const [a, b] = lab.plan.nodes;
    if (!a || !b) throw new Error('need 2 nodes');
    const kube = kubeClient(lab.state.kubeconfig);
    for (const { name, ...spec } of POOLS) {
      await kube.request('POST', '/apis/wiremesh.io/v1alpha1/ippools', {
        apiVersion: 'wiremesh.io/v1alpha1',
        kind: 'IPPool',
        metadata: { name },
        spec,
      });
      await kube.request('POST', '/api/v1/namespaces', {
        metadata: { name, annotations: { 'wiremesh.io/ippool': name } },
      });
    }
    await sleep(2000);
    const podIP: Record<string, string> = {};
    for (const p of POOLS) {
      await lab.addPod(a.name, p.name, `${p.name}-a`);
      const pb = await lab.addPod(b.name, p.name, `${p.name}-b`);
      podIP[p.name] = pb.ips[0]?.split('/')[0] ?? '';
      const argv = [
        ...lab.execPrefix({ pod: `${p.name}-b`, namespace: p.name }),
        ...['iperf3', '-s', '-B', podIP[p.name] ?? ''],
      ];
      servers.push(spawn(argv[0] ?? '', argv.slice(1), { stdio: 'ignore', env: systemEnv() }));
    }
    const mtu = (await lab.agentStatus(a.name)).paths.mtu?.devices;

    // The hand-made devices, between the same node namespaces.
    const ka = generateKeyPair();
    const kb = generateKeyPair();
    for (const [n, k, peer, self, other] of [
      [a, ka, kb, '100.126.0.1', '100.126.0.2'],
      [b, kb, ka, '100.126.0.2', '100.126.0.1'],
    ] as const) {
      const otherNode = n === a ? b : a;
      await lab.spawnInNode(n.name, `handwg-${n.name}`, [toolPath('wireguard-go'), '-f', 'handwg']);
      for (let i = 0; i < 50; i++) {
        const r = await lab.execInNode(n.name, ['ip', 'link', 'show', 'handwg'], {
          allowFailure: true,
        });
        if (r.code === 0) break;
        await sleep(100);
      }
      const wg = new WgCli(lab.nodeRunner(n.name));
      await wg.setPrivateKey('handwg', k.privateKey);
      await wg.setListenPort('handwg', 51900);
      await wg.setPeer('handwg', {
        publicKey: peer.publicKey,
        endpoint: `${otherNode.underlayIP}:51900`,
        allowedIPs: [`${other}/32`],
        persistentKeepalive: 0,
      });
      const ex = (argv: string[]) => lab.execInNode(n.name, argv);
      await ex(['ip', 'addr', 'add', `${self}/32`, 'peer', `${other}/32`, 'dev', 'handwg']);
      await ex(['ip', 'link', 'set', 'handwg', 'mtu', String(mtu?.wireguard ?? 1440), 'up']);
      const vself = self.replace('100.126.', '100.125.');
      const vother = other.replace('100.126.', '100.125.');
      await ex([
        ...['ip', 'link', 'add', 'handvx', 'type', 'vxlan', 'id', '4200', 'dstport', '4790'],
        ...['local', n.underlayIP, 'remote', otherNode.underlayIP, 'nolearning'],
      ]);
      await ex(['ip', 'addr', 'add', `${vself}/32`, 'peer', `${vother}/32`, 'dev', 'handvx']);
      await ex(['ip', 'link', 'set', 'handvx', 'mtu', String(mtu?.vxlan ?? 1450), 'up']);
    }
    await lab.spawnInNode(b.name, 'iperf3-hand', ['iperf3', '-s']);
    await sleep(1000);

    const iperf = async (prefix: string[], dst: string): Promise<number> => {
      const res = await defaultRunner.run([...prefix, 'iperf3', '-c', dst, '-t', '3', '-J'], {
        timeoutMs: 30_000,
      });
      const out = JSON.parse(res.stdout) as { end: { sum_received: { bits_per_second: number } } };
      return out.end.sum_received.bits_per_second / 1e6;
    };
    const nodeA = lab.execPrefix({ node: a.name });
    const cases = [
      { path: 'WireGuard', pool: 'secure', hand: '100.126.0.2', handWhat: 'wireguard-go tunnel' },
      { path: 'VXLAN', pool: 'plain', hand: '100.125.0.2', handWhat: 'VXLAN link' },
      { path: 'native', pool: 'native', hand: b.underlayIP, handWhat: 'plain underlay' },
    ];
    const figures: Figure[] = [];
    for (const c of cases) {
      const pod = lab.execPrefix({ pod: `${c.pool}-a`, namespace: c.pool });
      const dst = podIP[c.pool] ?? '';
      await iperf(pod, dst); // warm-up (and the WireGuard handshakes)
      await iperf(nodeA, c.hand);
      const agent: number[] = [];
      const hand: number[] = [];
      for (let i = 0; i < repeats; i++) {
        agent.push(await iperf(pod, dst));
        hand.push(await iperf(nodeA, c.hand));
      }
      figures.push(
        figureOf(
          'paths',
          `TCP pod to pod over the agent's ${c.path} path vs a hand-configured ${c.handWhat}`,
          'Mbit/s',
          agent,
          hand,
        ),
      );
    }
    return figures;
  } finally {
    for (const s of servers) s.kill('SIGTERM');
    await lab.down();
  }
}
