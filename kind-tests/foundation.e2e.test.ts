// The foundation, end to end: a 3-node lab whose nodes are Ready Node objects in
// a real kube-apiserver of the release we built, reachable from inside the nodes;
// pods wired through cnitool get addresses that their Pod objects report; and
// teardown leaves no namespace, link, mount or process behind.
// Lab-only: it tests the lab engine itself (nodes, apiserver, teardown).
import test from 'ava';
import { readFileSync } from 'node:fs';
import { CoreV1Api, KubeConfig, VersionApi } from '@kubernetes/client-node';
import { Lab, labLeftovers } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';

// Its own lab even when a shared one exists: this suite tears its lab down.
let driver: LabDriver | undefined;
let lab: Lab;

test.before(async () => {
  driver = await LabDriver.fresh({ name: 'e2efound', nodes: 3, podsPerNode: 0, agents: false });
  lab = driver.lab;
});

test.after.always(async () => {
  if (driver) await driver.close().catch(() => {});
});

function api(): { core: CoreV1Api; version: VersionApi } {
  const kc = new KubeConfig();
  kc.loadFromFile(lab.state.kubeconfig);
  return { core: kc.makeApiClient(CoreV1Api), version: kc.makeApiClient(VersionApi) };
}

function builtRelease(): string {
  const gomod = readFileSync(new URL('../hack/kube-apiserver/go.mod', import.meta.url), 'utf8');
  const m = /k8s\.io\/kubernetes (v1\.\d+\.\d+)/.exec(gomod);
  if (!m?.[1]) throw new Error('hack/kube-apiserver/go.mod names no k8s.io/kubernetes release');
  return m[1];
}

test.serial('the apiserver serves the Kubernetes release that was built', async (t) => {
  const info = await api().version.getCode();
  t.is(info.gitVersion, builtRelease());
});

test.serial('every lab node is a Ready Node object with its underlay InternalIP', async (t) => {
  const nodes = (await api().core.listNode()).items;
  t.deepEqual(nodes.map((n) => n.metadata?.name).sort(), lab.plan.nodes.map((n) => n.name).sort());
  for (const planned of lab.plan.nodes) {
    const node = nodes.find((n) => n.metadata?.name === planned.name);
    const ready = node?.status?.conditions?.find((c) => c.type === 'Ready');
    t.is(ready?.status, 'True', `${planned.name} Ready`);
    const ip = node?.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
    t.is(ip, planned.underlayIP, `${planned.name} InternalIP`);
  }
});

test.serial('the apiserver is reachable from inside every node over the underlay', async (t) => {
  for (const node of lab.plan.nodes) {
    const res = await lab.execInNode(node.name, [
      'curl',
      '-sS',
      '--max-time',
      '5',
      '--cacert',
      `${lab.plan.dataDir}/pki/ca.crt`,
      `${lab.plan.apiserverURL}/livez`,
    ]);
    t.is(res.stdout.trim(), 'ok', node.name);
  }
});

test.serial(
  'pods created through cnitool on two nodes get addresses that their Pod objects report',
  async (t) => {
    const [n1, n2] = lab.plan.nodes;
    if (!n1 || !n2) throw new Error('lab has fewer than 2 nodes');
    const a = await lab.addPod(n1.name, 'default', 'alpha', { app: 'alpha' });
    const b = await lab.addPod(n2.name, 'e2e', 'beta', { app: 'beta' });
    for (const pod of [a, b]) {
      t.is(pod.ips.length, 1, `${pod.name} has one address`);
      const inside = JSON.parse(
        (await lab.execInPod(pod.name, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0'])).stdout,
      ) as {
        addr_info: { local: string }[];
      }[];
      t.deepEqual(
        inside[0]?.addr_info.map((x) => x.local),
        pod.ips,
        `${pod.name} address inside its namespace`,
      );
      const obj = await api().core.readNamespacedPod({ namespace: pod.namespace, name: pod.name });
      t.is(obj.spec?.nodeName, pod.node);
      t.deepEqual(
        obj.status?.podIPs?.map((p) => p.ip),
        pod.ips,
        `${pod.name} status.podIPs`,
      );
    }
    t.not(a.ips[0], b.ips[0]);
    // The pod reaches its own node's bridge gateway through the plugin's wiring.
    const ping = await lab.execInPod('alpha', [
      'ping',
      '-c',
      '1',
      '-W',
      '2',
      '100.64.' + (lab.plan.index * 16 + 1) + '.1',
    ]);
    t.regex(ping.stdout, / 0% packet loss/);
  },
);

test.serial('teardown leaves no namespace, link, mount or process of the lab', async (t) => {
  const procs = [...lab.state.procs];
  t.true(procs.length >= 2, 'etcd and kube-apiserver were recorded');
  const before = await labLeftovers(lab.plan.name, procs);
  t.true(
    before.some((l) => l.startsWith('netns ')),
    'the leftover check sees the running lab',
  );
  t.true(
    before.some((l) => l.startsWith('process ')),
    'the leftover check sees its processes',
  );
  await driver?.close();
  driver = undefined;
  t.deepEqual(await labLeftovers(lab.plan.name, procs), []);
  t.false((await Lab.list()).includes(lab.plan.name));
});
