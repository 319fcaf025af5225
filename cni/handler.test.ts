// The CNI handler against in-memory IPAM and wiring: what the runtime sees for ADD,
// DEL and CHECK, and that a failed ADD never leaves an address promised twice.
import test from 'ava';
import { CniHandler, handleOf } from './handler.ts';
import { hostVethName, legacyHostVethName } from './podnet.ts';
import { FakeWiring } from './wiring-fake.ts';
import { MemoryIpam } from './ipam-fake.ts';
import { nodeNetnsCheck } from './hostnetns.ts';

const conf = JSON.stringify({ cniVersion: '1.1.0', name: 'wiremesh', type: 'wiremesh' });
const env = (command: string, id = 'c1', pod = 'web-0') => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: id,
  CNI_NETNS: `/run/netns/${id}`,
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
  CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`,
});

function setup() {
  const ipam = new MemoryIpam();
  const wiring = new FakeWiring();
  const handler = new CniHandler({ ipam, wiring, mtu: () => 1420 });
  return { ipam, wiring, handler };
}

const handle = handleOf('wiremesh', 'c1', 'eth0');
const veth = hostVethName('c1', 'eth0');

test('ADD wires the pod with its address and owner and returns the CNI result', async (t) => {
  const { handler, wiring } = setup();
  const r = await handler.handle(env('ADD'), conf);
  t.is(r.code, 0, r.stdout);
  const result = JSON.parse(r.stdout) as { ips: { address: string }[]; interfaces: object[] };
  t.is(result.ips[0]?.address, '100.64.0.2/32');
  t.like(wiring.links.get(veth), {
    netns: '/run/netns/c1',
    podIfName: 'eth0',
    addresses: ['100.64.0.2'],
    mtu: 1420,
    owner: handle,
  });
});

test('a wiring failure is CNI error 5, removes the pair and gives the address back', async (t) => {
  const { handler, wiring, ipam } = setup();
  wiring.failNext('setup', 'error', 'creating veth: no space');
  const r = await handler.handle(env('ADD'), conf);
  t.is(r.code, 1);
  t.like(JSON.parse(r.stdout), { code: 5, details: 'creating veth: no space' });
  t.deepEqual(
    wiring.calls.map((c) => c.op),
    ['setup', 'teardown'],
  );
  t.false(ipam.held.has(handle));
});

test('an unavailable worker is CNI error 11, try again later', async (t) => {
  const { handler, wiring } = setup();
  wiring.failNext('setup', 'unavailable', 'the netlink worker exited while wiring');
  const r = await handler.handle(env('ADD'), conf);
  t.is(r.code, 1);
  t.like(JSON.parse(r.stdout), {
    code: 11,
    details: 'the netlink worker exited while wiring',
  });
});

test('a failed ADD whose pair cannot be removed keeps its address until DEL', async (t) => {
  const { handler, wiring, ipam } = setup();
  wiring.failNext('setup', 'unavailable');
  wiring.failNext('teardown', 'unavailable');
  t.is((await handler.handle(env('ADD'), conf)).code, 1);
  t.true(ipam.held.has(handle), 'the address may still be routed to a leftover pair');
  t.is((await handler.handle(env('DEL'), conf)).code, 0);
  t.false(ipam.held.has(handle));
});

test('DEL removes the pair and the address, and is idempotent', async (t) => {
  const { handler, wiring, ipam } = setup();
  await handler.handle(env('ADD'), conf);
  t.is((await handler.handle(env('DEL'), conf)).code, 0);
  t.is((await handler.handle(env('DEL'), conf)).code, 0);
  t.is(wiring.links.size, 0);
  t.is(ipam.held.size, 0);
});

test('DEL with the worker unavailable is error 11 and keeps the address', async (t) => {
  const { handler, wiring, ipam } = setup();
  await handler.handle(env('ADD'), conf);
  wiring.failNext('teardown', 'unavailable');
  const r = await handler.handle(env('DEL'), conf);
  t.like(JSON.parse(r.stdout), { code: 11 });
  t.true(ipam.held.has(handle));
  t.true(wiring.links.has(veth));
});

test('two sandboxes of one pod get pairs of their own; DEL of the old one leaves the new one', async (t) => {
  const { handler, wiring, ipam } = setup();
  t.is((await handler.handle(env('ADD', 'old'), conf)).code, 0);
  t.is((await handler.handle(env('ADD', 'new'), conf)).code, 0);
  const oldVeth = hostVethName('old', 'eth0');
  const newVeth = hostVethName('new', 'eth0');
  t.not(oldVeth, newVeth);
  t.deepEqual(wiring.links.get(oldVeth)?.addresses, ['100.64.0.2']);
  t.deepEqual(wiring.links.get(newVeth)?.addresses, ['100.64.0.3']);
  t.is((await handler.handle(env('DEL', 'old'), conf)).code, 0);
  t.false(wiring.links.has(oldVeth));
  t.like(wiring.links.get(newVeth), {
    owner: handleOf('wiremesh', 'new', 'eth0'),
    addresses: ['100.64.0.3'],
  });
  t.deepEqual([...ipam.held.keys()], [handleOf('wiremesh', 'new', 'eth0')]);
  t.is((await handler.handle(env('CHECK', 'new'), conf)).code, 0);
});

test('an ADD never takes over a pair recorded for another attachment', async (t) => {
  const { handler, wiring, ipam } = setup();
  // Another attachment's pair under this attachment's name (a hash collision).
  wiring.links.set(veth, {
    netns: '/run/netns/other',
    podIfName: 'eth0',
    hostIfName: veth,
    addresses: ['100.64.0.99'],
    mtu: 1420,
    owner: 'wiremesh.other.eth0',
  });
  const r = await handler.handle(env('ADD'), conf);
  t.like(JSON.parse(r.stdout), { code: 5 });
  t.is(wiring.links.get(veth)?.owner, 'wiremesh.other.eth0');
  t.false(ipam.held.has(handle), 'the failed ADD gave its address back');
});

test('DEL and CHECK find a pair an earlier version named after the pod, and only their own', async (t) => {
  const { handler, wiring, ipam } = setup();
  const legacy = legacyHostVethName('default', 'web-0');
  const wired = (id: string) => ({
    netns: `/run/netns/${id}`,
    podIfName: 'eth0',
    hostIfName: legacy,
    addresses: ['100.64.0.2'],
    mtu: 1420,
    owner: handleOf('wiremesh', id, 'eth0'),
  });
  ipam.held.set(handle, {
    addresses: ['100.64.0.2'],
    namespace: 'default',
    pod: 'web-0',
    containerID: 'c1',
    ifName: 'eth0',
  });
  wiring.links.set(legacy, wired('c1'));
  t.is((await handler.handle(env('CHECK'), conf)).code, 0, 'CHECK looks under the old name');
  // The pod's next sandbox holds the old name now: DEL of c1 must leave it.
  wiring.links.set(legacy, wired('c2'));
  t.is((await handler.handle(env('DEL'), conf)).code, 0);
  t.is(wiring.links.get(legacy)?.owner, handleOf('wiremesh', 'c2', 'eth0'));
  ipam.held.set(handleOf('wiremesh', 'c2', 'eth0'), {
    ...wired('c2'),
    namespace: 'default',
    pod: 'web-0',
    containerID: 'c2',
    ifName: 'eth0',
  });
  t.is((await handler.handle(env('DEL', 'c2'), conf)).code, 0);
  t.false(wiring.links.has(legacy));
  t.is(ipam.held.size, 0);
});

test('CHECK passes for a wired pod and reports a missing pair', async (t) => {
  const { handler, wiring } = setup();
  await handler.handle(env('ADD'), conf);
  t.is((await handler.handle(env('CHECK'), conf)).code, 0);
  wiring.links.clear();
  const r = await handler.handle(env('CHECK'), conf);
  t.like(JSON.parse(r.stdout), { code: 999, details: `host interface ${veth} is missing` });
});

test('a dual-stack ADD wires both addresses and lists both, with a default route per family', async (t) => {
  const { handler, wiring, ipam } = setup();
  ipam.dualStack = true;
  const r = await handler.handle(env('ADD'), conf);
  t.is(r.code, 0, r.stdout);
  const result = JSON.parse(r.stdout) as {
    ips: { address: string; gateway?: string }[];
    routes: { dst: string; gw?: string }[];
  };
  t.deepEqual(
    result.ips.map((i) => [i.address, i.gateway]),
    [
      ['100.64.0.2/32', '169.254.1.1'],
      ['fd00:64::2/128', 'fe80::1'],
    ],
  );
  t.deepEqual(result.routes, [
    { dst: '0.0.0.0/0', gw: '169.254.1.1' },
    { dst: '::/0', gw: 'fe80::1' },
  ]);
  t.deepEqual(wiring.links.get(veth)?.addresses, ['100.64.0.2', 'fd00:64::2']);
  t.is((await handler.handle(env('CHECK'), conf)).code, 0, 'CHECK finds both families wired');
  t.is((await handler.handle(env('DEL'), conf)).code, 0);
  t.false(wiring.links.has(veth));
  t.false(ipam.held.has(handle));
});

test('ADD passes the pod and its UID to IPAM; without Kubernetes arguments, no pod at all', async (t) => {
  const { handler, ipam } = setup();
  const k8s = {
    ...env('ADD'),
    CNI_ARGS:
      'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=4f1c0d2e-uid;K8S_POD_INFRA_CONTAINER_ID=c1',
  };
  t.is((await handler.handle(k8s, conf)).code, 0);
  t.like(ipam.requests[0], { namespace: 'shop', pod: 'web-0', podUID: '4f1c0d2e-uid' });
  // cnitool: CNI_ARGS without the K8S_ keys, or none.
  const bare = { ...env('ADD', 'c2'), CNI_ARGS: '' };
  t.is((await handler.handle(bare, conf)).code, 0);
  t.like(ipam.requests[1], { namespace: '', pod: '', containerID: 'c2' });
  t.false('podUID' in (ipam.requests[1] ?? {}));
  // podman: its container's name as K8S_POD_NAME, and no namespace.
  const podman = { ...env('ADD', 'c3'), CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=web-0' };
  t.is((await handler.handle(podman, conf)).code, 0);
  t.like(ipam.requests[2], { namespace: '', pod: 'web-0', containerID: 'c3' });
  t.is((await handler.handle({ ...bare, CNI_COMMAND: 'CHECK' }, conf)).code, 0);
  t.is((await handler.handle({ ...bare, CNI_COMMAND: 'DEL' }, conf)).code, 0);
  t.false(ipam.held.has(handleOf('wiremesh', 'c2', 'eth0')));
});

test("ADD refuses the node's own network namespace, by identity, whatever the path", async (t) => {
  const ipam = new MemoryIpam();
  const wiring = new FakeWiring();
  const handler = new CniHandler({ ipam, wiring, mtu: () => 1420, isNodeNetns: nodeNetnsCheck() });
  for (const path of [
    '/proc/self/ns/net',
    `/proc/${process.pid}/ns/net`,
    '/proc/self/task/../ns/net',
  ]) {
    const r = await handler.handle({ ...env('ADD'), CNI_NETNS: path }, conf);
    t.is(r.code, 1, path);
    t.like(JSON.parse(r.stdout), {
      code: 4,
      msg: `CNI_NETNS ${path} is the node's own network namespace`,
    });
  }
  t.is(ipam.held.size, 0, 'no address was taken');
  t.deepEqual(wiring.calls, [], 'nothing was wired');
  // Another namespace (here: a path naming none, which the wiring reports) is not refused.
  const other = await handler.handle({ ...env('ADD'), CNI_NETNS: '/run/netns/c1' }, conf);
  t.is(other.code, 0, other.stdout);
});
