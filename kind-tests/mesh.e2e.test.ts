// The WireGuard mesh, end to end on any cluster the driver opens (a 3-node lab
// here, kind where Docker exists): every pair of nodes has a peer with a recent
// handshake and carries ping and a TCP stream through the tunnel; a pod on every
// node reaches a pod on every other node; and the underlay carries only WireGuard
// UDP between the nodes, never the plaintext seen inside the tunnel. The faults
// that need the lab's control of processes and Node objects (agent crash, node
// removal, forged annotations, key rotation, wireguard-go killed, host encryption)
// are in mesh-lab.e2e.test.ts.
import test from 'ava';
import { openCluster } from './lab-driver.ts';
import type { ClusterDriver, ClusterPod } from './driver.ts';
import { eventually } from './probes.ts';
import type { RunResult } from '../sys/index.ts';

const WG_PORT = '51825';
const NAMESPACE = 'default';
let driver: ClusterDriver | undefined;

const d = (): ClusterDriver => {
  if (!driver) throw new Error('no cluster: test.before failed');
  return driver;
};

test.before(async () => {
  driver = await openCluster({
    name: 'drvmesh',
    nodes: 3,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
  });
});

test.after.always(async () => {
  if (driver) await driver.close();
});

function names(): string[] {
  return d().nodeNames();
}

async function wgPeerKeys(node: string): Promise<string[]> {
  const res = await d().execInNode(node, ['wg', 'show', 'wiremesh.wg', 'peers']);
  return res.stdout.split('\n').filter(Boolean).sort();
}

async function tunnelIP(node: string): Promise<string> {
  const ip = (await d().agentStatus(node)).wireguard.tunnelAddress;
  if (!ip) throw new Error(`${node} has no tunnel address yet`);
  return ip;
}

async function ping(from: string, to: string): Promise<boolean> {
  const res = await d().execInNode(from, ['ping', '-c', '3', '-i', '0.2', '-W', '1', to], {
    allowFailure: true,
  });
  return res.code === 0;
}

/** A command that runs while the test goes on (a one-connection server); its result later. */
function meanwhile(run: Promise<RunResult>): () => Promise<RunResult> {
  const settled = run.then(
    (r) => ({ ok: true as const, r }),
    (e: unknown) => ({ ok: false as const, e }),
  );
  return async () => {
    const s = await settled;
    if (!s.ok) throw s.e;
    return s.r;
  };
}

/** Wait until something listens on TCP `port` where `exec` runs. */
function listening(exec: (argv: string[]) => Promise<RunResult>, port: number) {
  return eventually(`a listener on ${port}`, async () =>
    (await exec(['ss', '-Hltn', `sport = :${port}`])).stdout.includes(`:${port}`),
  );
}

test.serial(
  'every pair of nodes completes a handshake; ping and a TCP stream cross every pair',
  async (t) => {
    const all = names();
    t.true(all.length >= 3, `3 nodes or more: ${all.join(', ')}`);
    await eventually(
      'every agent to have a peer per other node',
      async () => {
        for (const n of all) if ((await wgPeerKeys(n)).length !== all.length - 1) return false;
        return true;
      },
      60_000,
      500,
    );
    const ips = Object.fromEntries(
      await Promise.all(all.map(async (n) => [n, await tunnelIP(n)] as const)),
    );
    for (const a of all) {
      for (const b of all) {
        if (a === b) continue;
        const to = ips[b] ?? '';
        const elapsed = await eventually(`ping ${a} -> ${b}`, () => ping(a, to), 20_000);
        t.log(`${a} -> ${b}: ping through the tunnel after ${elapsed} ms`);
        // A one-connection iperf3 server on b's tunnel address, a 1 s stream from a.
        const server = meanwhile(
          d().execInNode(b, ['timeout', '30', 'iperf3', '-s', '-1', '-B', to], {
            timeoutMs: 40_000,
          }),
        );
        await listening((argv) => d().execInNode(b, argv), 5201);
        const res = await d().execInNode(a, ['iperf3', '-c', to, '-t', '1', '-J'], {
          timeoutMs: 30_000,
        });
        await server();
        const bytes = (JSON.parse(res.stdout) as { end: { sum_received: { bytes: number } } }).end
          .sum_received.bytes;
        t.true(bytes > 0, `TCP stream ${a} -> ${b}`);
      }
    }
    const now = Date.now() / 1000;
    for (const n of all) {
      const s = await d().agentStatus(n);
      t.is(s.peers.length, all.length - 1, `${n} has a peer per other node`);
      for (const p of s.peers)
        t.true(
          p.latestHandshake > 0 && now - p.latestHandshake < 120,
          `${n} <-> ${p.node} handshake`,
        );
    }
  },
);

test.serial('a pod on every node reaches a pod on every other node', async (t) => {
  const pods: ClusterPod[] = [];
  t.teardown(async () => {
    for (const p of pods) await d().deletePod(p.namespace, p.name);
  });
  for (const [i, node] of names().entries())
    pods.push(await d().createPod(node, NAMESPACE, `mesh-pod${i + 1}`));
  const failures: string[] = [];
  for (const from of pods) {
    for (const to of pods) {
      if (from === to) continue;
      const reach = async () =>
        (
          await d().execInPod(
            from.namespace,
            from.name,
            ['ping', '-c', '1', '-W', '1', to.ips[0] ?? ''],
            {
              allowFailure: true,
            },
          )
        ).code === 0;
      try {
        await eventually(`${from.name} -> ${to.name}`, reach, 10_000, 200);
      } catch {
        failures.push(`${from.name} (${from.node}) -> ${to.name} (${to.node})`);
      }
    }
  }
  t.deepEqual(failures, [], 'pods that cannot reach each other');
});

test.serial(
  'the underlay carries only WireGuard UDP between nodes, and no plaintext',
  async (t) => {
    const [a, b] = names();
    if (!a || !b) throw new Error('need 2 nodes');
    const ipB = await tunnelIP(b);
    const marker = `WIREMESH-PLAINTEXT-MARKER-${Date.now()}`;
    const nodeIPs = names().map((n) => d().underlayIP(n));
    const underlay = await d().captureUnderlay(b, 'ip');
    const inside = await d().captureInNode(b, 'wiremesh.wg');
    // A sink for one connection on b's tunnel address; a sends the marker to it.
    const sink = meanwhile(
      d().execInNode(
        b,
        ['timeout', '30', 'socat', '-u', `TCP-LISTEN:7002,bind=${ipB},reuseaddr`, 'OPEN:/dev/null'],
        { timeoutMs: 40_000 },
      ),
    );
    await listening((argv) => d().execInNode(b, argv), 7002);
    await d().execInNode(a, ['socat', '-u', 'STDIN', `TCP:${ipB}:7002`], {
      input: `${marker}\n`.repeat(200),
      timeoutMs: 20_000,
    });
    await sink();
    await d().execInNode(a, ['ping', '-c', '3', '-i', '0.2', ipB]);
    const wire = await underlay.stop();
    const plain = await inside.stop();

    t.true(
      plain.raw.includes(marker),
      'control: the marker is visible inside the tunnel, so the check can see it',
    );
    t.false(wire.raw.includes(marker), 'the marker never appears on the underlay');
    t.true(wire.lines.length > 0, 'the capture saw the traffic');
    for (const line of wire.lines) {
      const m = /IP (\S+)\.(\d+) > (\S+)\.(\d+): UDP/.exec(line);
      t.truthy(m, `only UDP crosses the underlay: ${line}`);
      if (!m) continue;
      t.true(
        nodeIPs.includes(m[1] ?? '') && nodeIPs.includes(m[3] ?? ''),
        `between nodes: ${line}`,
      );
      t.true(m[2] === WG_PORT || m[4] === WG_PORT, `to or from port ${WG_PORT}: ${line}`);
    }
  },
);
