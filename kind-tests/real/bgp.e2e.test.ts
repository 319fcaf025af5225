// BGP on the real-node lab (kubeadm, kubelet, containerd, the manifest): with BGP
// turned on through wiremesh-config, every node's BIRD runs in its wiremesh-wireguard
// pod (container bird), not in the agent's container, so a rollout restart of the
// agents must leave every BIRD and BGP session as it was; turned off again, every
// BIRD stops. The cross-subnet routing itself is kind-tests/bgp.e2e.test.ts's, on the
// process lab's two subnets (these nodes share one). Run by the cluster tier
// (WIREMESH_E2E_CLUSTER=real); it leaves BGP off, as it found it.
import test from 'ava';
import { RealLab } from './reallab.ts';
import type { KindDriver } from '../kind-driver.ts';
import type { Cluster } from '../../lab/cluster.ts';
import { eventually } from '../probes.ts';
import { parseBgpSessions } from '../../bgp/status.ts';

const real = new RealLab();
const d = (): KindDriver => real.driver;
const lab = (): Cluster => real.cluster;

test.before(async () => {
  await real.open('bgp-real', 'reads each real node’s BIRD');
});

test.after.always(async () => {
  await real.close();
});

const BIRD_SOCKET = '/run/wiremesh/bird/bird.ctl';

async function setBgpAS(value: string): Promise<void> {
  const kube = d().kubectl;
  await kube.run([
    ...['-n', 'kube-system', 'patch', 'configmap', 'wiremesh-config', '--type=merge'],
    ...['-p', JSON.stringify({ data: { 'bgp-as': value } })],
  ]);
  await kube.run(['-n', 'kube-system', 'rollout', 'restart', 'daemonset/wiremesh-agent']);
  await kube.rolloutStatus('daemonset', 'wiremesh-agent', 'kube-system', 300);
}

/** What each node's BIRD says of itself: when it started, and its BGP sessions. */
async function birds(): Promise<
  Record<string, { started: string; sessions: { name: string; state: string; since: string }[] }>
> {
  const out: Awaited<ReturnType<typeof birds>> = {};
  for (const node of d().nodeNames()) {
    const birdc = (...args: string[]) =>
      lab().execInNode(node, ['birdc', '-s', BIRD_SOCKET, ...args], { allowFailure: true });
    const status = await birdc('show', 'status');
    const started = /^Last reboot on (.+)$/m.exec(status.stdout)?.[1] ?? '';
    const sessions = parseBgpSessions((await birdc('show', 'protocols', 'all')).stdout).map(
      (s) => ({ name: s.name, state: s.info || s.state, since: s.since }),
    );
    out[node] = { started: status.code === 0 ? started : '', sessions };
  }
  return out;
}

test.serial(
  'BGP on: BIRD runs outside the agent’s container and keeps its sessions through a rollout restart',
  async (t) => {
    const nodes = d().nodeNames();
    const established = (b: Awaited<ReturnType<typeof birds>>) =>
      nodes.every(
        (n) =>
          b[n]?.started &&
          b[n].sessions.length === nodes.length - 1 &&
          b[n].sessions.every((s) => s.state === 'Established'),
      );
    try {
      await setBgpAS('64512');
      let before: Awaited<ReturnType<typeof birds>> = {};
      await eventually(
        'every node’s BIRD with an Established session to each other node',
        async () => established((before = await birds())),
        120_000,
        1000,
      ).catch((e: Error) => {
        throw new Error(`${e.message}; last seen: ${JSON.stringify(before)}`);
      });
      const sinceRestart = new Date().toISOString();
      await d().kubectl.run([
        '-n',
        'kube-system',
        'rollout',
        'restart',
        'daemonset/wiremesh-agent',
      ]);
      await d().kubectl.rolloutStatus('daemonset', 'wiremesh-agent', 'kube-system', 300);
      // The new agents have written their bird.conf and had BIRD reload it.
      for (const node of nodes)
        await eventually(
          `the new agent on ${node} reporting its BGP sessions`,
          async () =>
            (await d().agentStatus(node)).bgp?.sessions.filter((s) => s.state === 'Established')
              .length ===
            nodes.length - 1,
          60_000,
          1000,
        );
      const after = await birds();
      const line =
        `upgrades BGP through a rollout restart: ` +
        nodes
          .map(
            (n) =>
              `${n} BIRD started ${after[n]?.started} (before: ${before[n]?.started}), sessions ` +
              (after[n]?.sessions.map((s) => `${s.name} ${s.state} since ${s.since}`).join(', ') ??
                ''),
          )
          .join('; ');
      t.log(line);
      console.log(line);
      // The same BIRDs, and no session went down and up again.
      t.deepEqual(after, before, 'every BIRD and BGP session outlived the agents’ containers');
      const downs = await d().kubectl.json<{
        items: { lastTimestamp?: string; message?: string }[];
      }>(['get', 'events', '-A', '--field-selector', 'reason=BGPSessionDown']);
      t.deepEqual(
        downs.items.filter((e) => (e.lastTimestamp ?? '') >= sinceRestart).map((e) => e.message),
        [],
        'no BGPSessionDown event',
      );
    } finally {
      // BGP off again: the agents remove bird.conf, and the pods' BIRDs stop.
      await setBgpAS('off');
    }
    await eventually(
      'every node’s BIRD stopped with BGP off',
      async () => Object.values(await birds()).every((b) => b.started === ''),
      60_000,
      1000,
    );
    for (const node of nodes) {
      const conf = await lab().execInNode(node, ['test', '-e', '/run/wiremesh/bird/bird.conf'], {
        allowFailure: true,
      });
      t.not(conf.code, 0, `${node}: no bird.conf with BGP off`);
    }
  },
);
