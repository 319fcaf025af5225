// The multi-cluster suite (issue #7): two labs side by side, `mca` (pool
// 100.64.0.0/16) and `mcb` (pool 100.65.0.0/16), each with its own etcd and
// kube-apiserver, their underlays joined by lab/connect.ts. Each cluster gets a
// RemoteCluster for the other, whose Secret holds a kubeconfig with a token of the
// other side's read-only wiremesh-remote-reader ServiceAccount (minted with the
// TokenRequest API: the lab has no kube-controller-manager to fill token Secrets).
// The tests run in order, each on what the earlier ones built: every pod pair
// across the clusters, encrypted on the underlay; a NetworkPolicy admitting B's pool
// by ipBlock; a WireGuard peer outside Kubernetes configured only from
// `wiremesh peer-config`; B's apiserver stopped for 60 s; and last (it refuses A's
// pool on B's side too) an overlapping pool refused with CIDRConflict.
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, connectLabs, kubeClient as labCore, type LabPod } from '../lab/index.ts';
import { kubeconfigYaml, labPki } from '../lab/pki.ts';
import { serviceAccountToken } from '../lab/manifests.ts';
import { kubeClient, type KubeClient } from '../kube/index.ts';
import { defaultRunner, toolPath } from '../sys/index.ts';
import { REMOTECLUSTER_PATH, PEER_PATH } from '../multicluster/index.ts';
import { background, eventually, pingLoss } from './probes.ts';
import { LabDriver } from './lab-driver.ts';
import { parseGraphSvg } from '../explain/svg.ts';

const POOL_A = '100.64.0.0/16';
const POOL_B = '100.65.0.0/16';
const CLI = new URL('../bin/wiremesh', import.meta.url).pathname;
const run = defaultRunner;

let a: LabDriver | undefined;
let b: LabDriver | undefined;
let kubeA: KubeClient;
let kubeB: KubeClient;
const PEER_NETNS = 'mca-wgpeer';
let peerProc: ReturnType<typeof background> | undefined;

const labA = () => a!.lab;
const labB = () => b!.lab;

test.before(async () => {
  // Two labs, one at a time: the machine has two cores.
  a = await LabDriver.fresh({ name: 'mca', nodes: 2, podsPerNode: 1, pool: POOL_A });
  b = await LabDriver.fresh({ name: 'mcb', nodes: 2, podsPerNode: 1, pool: POOL_B });
  await connectLabs(run, labA().plan, labB().plan);
  kubeA = kubeClient(labA().state.kubeconfig);
  kubeB = kubeClient(labB().state.kubeconfig);
  await joinClusters(labA(), kubeA, 'mcb', labB());
  await joinClusters(labB(), kubeB, 'mca', labA());
});

test.after.always(async () => {
  await peerProc?.kill().catch(() => {});
  await run.run(['ip', 'netns', 'del', PEER_NETNS], { allowFailure: true });
  // Lab.down disconnects the labs too.
  await a?.close();
  await b?.close();
});

/** A Secret in `lab`'s wiremesh-remotes with a reader kubeconfig for `remote`, and the RemoteCluster. */
async function joinClusters(lab: Lab, kube: KubeClient, name: string, remote: Lab): Promise<void> {
  const token = await serviceAccountToken(
    labCore(remote.state.kubeconfig),
    'kube-system',
    'wiremesh-remote-reader',
  );
  const kubeconfig = await kubeconfigYaml(
    remote.state.apiserverURL,
    labPki(join(remote.plan.dataDir, 'pki')).caCert,
    { name: 'wiremesh-remote-reader', token },
  );
  await kube.request('POST', '/api/v1/namespaces/wiremesh-remotes/secrets', {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name },
    data: { kubeconfig: Buffer.from(kubeconfig).toString('base64') },
  });
  await kube.request('POST', REMOTECLUSTER_PATH, {
    apiVersion: 'wiremesh.io/v1alpha1',
    kind: 'RemoteCluster',
    metadata: { name },
    spec: { kubeconfigSecretRef: { name } },
  });
}

function ipOf(pod: LabPod): string {
  const ip = pod.ips[0];
  if (!ip) throw new Error(`pod ${pod.name} has no address`);
  return ip;
}

async function pings(lab: Lab, from: LabPod, to: string, count = 1): Promise<boolean> {
  const res = await lab.execInPod(
    from.name,
    ['ping', '-n', '-c', String(count), '-i', '0.2', '-W', '1', to],
    { namespace: from.namespace, allowFailure: true },
  );
  return res.code === 0;
}

async function condition(kube: KubeClient, name: string, type: string): Promise<string> {
  const obj = await kube.request<{ status?: { conditions?: { type: string; status: string }[] } }>(
    'GET',
    `${REMOTECLUSTER_PATH}/${name}`,
  );
  return obj.status?.conditions?.find((c) => c.type === type)?.status ?? 'none';
}

test.serial(
  'pods in A reach pods in B and back, every pair, encrypted on the underlay',
  async (t) => {
    t.timeout(180_000);
    const podsA = labA().state.pods;
    const podsB = labB().state.pods;
    t.true(podsA.length >= 2 && podsB.length >= 2);
    await eventually(
      'RemoteClusters Connected on both sides',
      async () =>
        (await condition(kubeA, 'mcb', 'Connected')) === 'True' &&
        (await condition(kubeB, 'mca', 'Connected')) === 'True',
      60_000,
      500,
    );
    await eventually(
      'the first cross-cluster ping',
      () => pings(labA(), podsA[0]!, ipOf(podsB[0]!)),
      60_000,
      500,
    );

    const bridge = labA().plan.bridge;
    const capture = await a!.captureUnderlay(labA().plan.nodes[0]!.name);
    const failures: string[] = [];
    for (const [lab, from, to] of [
      ...podsA.flatMap((x) => podsB.map((y) => [labA(), x, y] as const)),
      ...podsB.flatMap((y) => podsA.map((x) => [labB(), y, x] as const)),
    ]) {
      if (!(await pings(lab, from, ipOf(to), 2))) failures.push(`${from.name} -> ${to.name}`);
    }
    const { lines } = await capture.stop();
    t.deepEqual(failures, [], 'every pair across the clusters answers');

    const podIPs = [...podsA, ...podsB].map(ipOf);
    const clear = lines.filter((l) =>
      podIPs.some((ip) => l.includes(`${ip} `) || l.includes(`${ip}.`)),
    );
    t.deepEqual(clear, [], `no pod address in clear on ${bridge}`);
    const bNodes = labB().plan.nodes.map((n) => n.underlayIP);
    const cross = lines.filter((l) => bNodes.some((ip) => l.includes(ip)));
    t.true(cross.length > 0, 'traffic to B crossed the captured link');
    t.deepEqual(
      cross.filter((l) => !/UDP, length|\.51825[ :>]/.test(l)),
      [],
      'only WireGuard UDP between the clusters',
    );

    // What `wiremesh status` reads: A's agent knows B and its nodes' handshakes.
    const status = await labA().agentStatus(labA().plan.nodes[0]!.name);
    const mcb = status.remotes?.find((r) => r.name === 'mcb');
    t.truthy(mcb?.reachable);
    t.is(mcb?.peers.length, labB().plan.nodes.length);
    t.true(mcb!.peers.some((p) => p.latestHandshake > 0));

    // `wiremesh graph` of A draws B's nodes (read with the RemoteCluster's Secret)
    // with their blocks, each with a fresh WireGuard edge from every node of A.
    const svg = (
      await run.run([CLI, 'graph', '--kubeconfig', labA().state.kubeconfig, '-o', 'svg'])
    ).stdout;
    const items = parseGraphSvg(svg);
    const blocksB = await kubeB.request<{
      items: { spec: { cidr: string; node: string; pool: string } }[];
    }>('GET', '/apis/wiremesh.io/v1alpha1/ipamblocks');
    for (const nb of labB().plan.nodes) {
      const node = items.find((i) => i.kind === 'node' && i.title === `mcb/${nb.name}`);
      t.truthy(node, `B's node ${nb.name} in A's graph`);
      for (const blk of blocksB.items.filter((x) => x.spec.node === nb.name))
        t.true(node?.texts.includes(`${blk.spec.cidr} (${blk.spec.pool})`), blk.spec.cidr);
      for (const na of labA().plan.nodes) {
        const edge = items.find(
          (i) => i.kind === 'edge' && i.title === `${na.name}--mcb/${nb.name}`,
        );
        t.deepEqual(edge?.texts, ['wireguard'], `${na.name} -- mcb/${nb.name}`);
        t.is(edge?.stroke, 'darkgreen');
      }
    }
  },
);

test.serial(
  "a NetworkPolicy in A admitting only B's pool admits B's pods and refuses A's others",
  async (t) => {
    t.timeout(120_000);
    const [target, other] = labA().state.pods;
    const fromB = labB().state.pods[0]!;
    t.truthy(target && other && other.node !== target.node);
    // Without a policy A's pods reach each other (so a refusal below is the policy's).
    await eventually(
      "A's pods reach each other",
      () => pings(labA(), other!, ipOf(target!)),
      30_000,
      500,
    );
    await kubeA.request('POST', '/apis/networking.k8s.io/v1/namespaces/default/networkpolicies', {
      apiVersion: 'networking.k8s.io/v1',
      kind: 'NetworkPolicy',
      metadata: { name: 'from-mcb-only' },
      spec: {
        podSelector: {},
        policyTypes: ['Ingress'],
        ingress: [{ from: [{ ipBlock: { cidr: POOL_B } }] }],
      },
    });
    t.teardown(() =>
      kubeA
        .request(
          'DELETE',
          '/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/from-mcb-only',
        )
        .catch(() => {}),
    );
    await eventually(
      "A's own pod refused",
      async () => !(await pings(labA(), other!, ipOf(target!))),
      30_000,
      500,
    );
    t.true(await pings(labB(), fromB, ipOf(target!), 2), "B's pod admitted");
    t.false(await pings(labA(), other!, ipOf(target!), 2), "A's other pod refused");
  },
);

test.serial(
  'a WireGuard peer outside Kubernetes, configured only from wiremesh peer-config, reaches a pod',
  async (t) => {
    t.timeout(120_000);
    const dir = await mkdtemp(join(tmpdir(), 'mca-peer-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const target = labA().state.pods[0]!;
    const plan = labA().plan;
    const peerUnderlay = plan.gatewayIP.replace(/\.1$/, '.200');
    const tunnelIP = '100.90.0.1';

    // The peer's own key, and the Peer object in A.
    const priv = (await run.run(['wg', 'genkey'])).stdout.trim();
    const pub = (await run.run(['wg', 'pubkey'], { input: `${priv}\n` })).stdout.trim();
    const keyFile = join(dir, 'private.key');
    await writeFile(keyFile, `${priv}\n`, { mode: 0o600 });
    await kubeA.request('POST', PEER_PATH, {
      apiVersion: 'wiremesh.io/v1alpha1',
      kind: 'Peer',
      metadata: { name: 'laptop' },
      spec: { publicKey: pub, endpoint: `${peerUnderlay}:51820`, allowedIPs: [`${tunnelIP}/32`] },
    });

    // Its namespace, on A's bridge.
    await run.run(['ip', 'netns', 'add', PEER_NETNS]);
    const ns = (argv: string[]) => run.run(['ip', 'netns', 'exec', PEER_NETNS, ...argv]);
    await run.run([
      'ip',
      'link',
      'add',
      'mca-wgp0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      PEER_NETNS,
    ]);
    await run.run(['ip', 'link', 'set', 'mca-wgp0', 'master', plan.bridge, 'up']);
    await ns(['ip', 'link', 'set', 'lo', 'up']);
    await ns(['ip', 'addr', 'add', `${peerUnderlay}/${plan.prefixLength}`, 'dev', 'eth0']);
    await ns(['ip', 'link', 'set', 'eth0', 'up']);

    // The configuration, once every node of A has a block to offer.
    let conf = '';
    await eventually(
      'peer-config lists every node of A',
      async () => {
        const res = await run.run(
          [
            CLI,
            'peer-config',
            '--peer',
            'laptop',
            '--kubeconfig',
            labA().state.kubeconfig,
            '--private-key-file',
            keyFile,
          ],
          { allowFailure: true },
        );
        conf = res.stdout;
        return res.code === 0 && (conf.match(/^\[Peer\]/gm)?.length ?? 0) === plan.nodes.length;
      },
      30_000,
      500,
    );
    t.regex(conf, /^PrivateKey = /m);
    t.regex(conf, new RegExp(`^Address = ${tunnelIP.replace(/\./g, '\\.')}`, 'm'));

    // wg-quick needs the kernel module, which this machine has not: wireguard-go and
    // `wg setconf` with the file stripped of wg-quick's own keys, then what wg-quick
    // would do with them (the address, a route per AllowedIPs).
    const stripped = conf
      .split('\n')
      .filter(
        (l) => !/^\s*(Address|DNS|MTU|Table|PreUp|PostUp|PreDown|PostDown|SaveConfig)\s*=/.test(l),
      )
      .join('\n');
    const address = /^Address = (\S+)/m.exec(conf)![1]!;
    const allowed = [...conf.matchAll(/^AllowedIPs = (.+)$/gm)].flatMap((m) => m[1]!.split(/,\s*/));
    await writeFile(join(dir, 'wg0.conf'), stripped, { mode: 0o600 });
    peerProc = background([
      'ip',
      'netns',
      'exec',
      PEER_NETNS,
      'env',
      'WG_PROCESS_FOREGROUND=1',
      toolPath('wireguard-go'),
      'wg0',
    ]);
    await eventually(
      'wireguard-go made wg0',
      async () =>
        await ns(['ip', 'link', 'show', 'wg0']).then(
          () => true,
          () => false,
        ),
      10_000,
      100,
    );
    await ns(['wg', 'setconf', 'wg0', join(dir, 'wg0.conf')]);
    await ns(['ip', 'addr', 'add', address, 'dev', 'wg0']);
    await ns(['ip', 'link', 'set', 'wg0', 'up']);
    for (const cidr of allowed) await ns(['ip', 'route', 'replace', cidr, 'dev', 'wg0']);

    await eventually(
      'the peer reaches a pod of A',
      async () =>
        (
          await run.run(
            ['ip', 'netns', 'exec', PEER_NETNS, 'ping', '-n', '-c', '1', '-W', '1', ipOf(target)],
            { allowFailure: true },
          )
        ).code === 0,
      30_000,
      500,
    );
    const show = (await ns(['wg', 'show', 'wg0', 'latest-handshakes'])).stdout;
    t.regex(show, /\s[1-9]\d*$/m, 'a handshake with a node of A');
  },
);

test.serial(
  "B's apiserver stopped for 60 s: traffic continues; after it returns a new block joins",
  async (t) => {
    t.timeout(300_000);
    const from = labA().state.pods[0]!;
    const to = labB().state.pods[0]!;
    const ping = background([
      'ip',
      'netns',
      'exec',
      from.netns,
      'ping',
      '-n',
      '-i',
      '0.2',
      '-W',
      '1',
      ipOf(to),
    ]);
    await labB().stopApiserver();
    try {
      await eventually(
        'A reports B unreachable',
        async () => (await condition(kubeA, 'mcb', 'Unreachable')) === 'True',
        60_000,
        1000,
      );
      await sleep(60_000);
      t.true(
        await pings(labA(), from, ipOf(to), 3),
        "cross-cluster traffic continues while B's API is away",
      );
    } finally {
      await labB().startApiserver();
    }
    await ping.kill(); // SIGINT: ping prints its summary
    const out = (await ping.wait()).stdout;
    const { sent, received } = pingLoss(out);
    t.log(`during the outage: ${received}/${sent} pings answered`);
    t.true(sent > 0 && received >= sent * 0.95, `${received}/${sent} answered`);

    // A node cannot be added to a running lab, so the new member is a new block: a
    // pod of B in a pool of its own (a block A has never seen), made as soon as B's
    // API answers again. It must become routable from A through A's resumed watch.
    await kubeB.request('POST', '/apis/wiremesh.io/v1alpha1/ippools', {
      apiVersion: 'wiremesh.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'late' },
      spec: {
        cidr: '100.66.0.0/16',
        blockSize: 26,
        encryption: 'WireGuard',
        encryptionMode: 'Preferred',
        encapsulation: 'None',
        natOutgoing: false,
      },
    });
    await kubeB.request('POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'late', annotations: { 'wiremesh.io/ippool': 'late' } },
    });
    await sleep(2000); // the agents' namespace and pool watches
    const late = await labB().addPod(labB().plan.nodes[1]!.name, 'late', 'late-0');
    t.true(ipOf(late).startsWith('100.66.'), `the new pod is in the new pool (${ipOf(late)})`);
    await eventually(
      'A reaches the new block of B',
      () => pings(labA(), from, ipOf(late)),
      60_000,
      500,
    );
    await eventually(
      'A reports B reachable again',
      async () => (await condition(kubeA, 'mcb', 'Unreachable')) === 'False',
      30_000,
      500,
    );
    t.pass();
  },
);

test.serial(
  'overlapping pools are refused with CIDRConflict and no routes are installed',
  async (t) => {
    t.timeout(120_000);
    // A pool in B inside A's pool, with a pod, so B has a block in it.
    await kubeB.request('POST', '/apis/wiremesh.io/v1alpha1/ippools', {
      apiVersion: 'wiremesh.io/v1alpha1',
      kind: 'IPPool',
      metadata: { name: 'clash' },
      spec: {
        cidr: '100.64.200.0/24',
        blockSize: 26,
        encryption: 'WireGuard',
        encryptionMode: 'Preferred',
        encapsulation: 'None',
        natOutgoing: false,
      },
    });
    await kubeB.request('POST', '/api/v1/namespaces', {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: 'clash', annotations: { 'wiremesh.io/ippool': 'clash' } },
    });
    await sleep(2000);
    const pod = await labB().addPod(labB().plan.nodes[0]!.name, 'clash', 'clash-0');
    t.true(ipOf(pod).startsWith('100.64.200.'));

    await eventually(
      'CIDRConflict on both sides',
      async () =>
        (await condition(kubeA, 'mcb', 'CIDRConflict')) === 'True' &&
        (await condition(kubeB, 'mca', 'CIDRConflict')) === 'True',
      60_000,
      500,
    );
    // Neither side routes the overlapping ranges to the other: no A route to B's
    // clash block, no B route to A's pool's blocks through the tunnel.
    for (const node of labA().plan.nodes) {
      const routes = (
        await labA().execInNode(node.name, ['ip', '-j', 'route', 'show', 'dev', 'wiremesh.wg'])
      ).stdout;
      t.false(routes.includes('100.64.200.'), `${node.name} has no route to B's clash block`);
    }
    for (const node of labB().plan.nodes) {
      const routes = (
        await labB().execInNode(node.name, ['ip', '-j', 'route', 'show', 'dev', 'wiremesh.wg'])
      ).stdout;
      const fromA = labA()
        .state.pods.map(ipOf)
        .map((ip) => ip.split('.').slice(0, 3).join('.'));
      t.false(
        fromA.some((p) => routes.includes(`"${p}.`)),
        `${node.name} routes none of A's pool`,
      );
    }
  },
);
