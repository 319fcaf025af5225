// The CNI handler against in-memory IPAM and wiring: what the runtime sees for ADD,
// DEL and CHECK, and that a failed ADD never leaves an address promised twice.
import test from 'ava';
import { CniHandler, handleOf } from './handler.ts';
import { hostVethName } from './podnet.ts';
import { FakeWiring } from './wiring-fake.ts';
import { MemoryIpam } from './ipam-fake.ts';

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
const veth = hostVethName('default', 'web-0');

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

test("DEL of a dead sandbox leaves the live sandbox's pair of the same pod", async (t) => {
  const { handler, wiring } = setup();
  await handler.handle(env('ADD', 'old'), conf);
  await handler.handle(env('ADD', 'new'), conf);
  t.is((await handler.handle(env('DEL', 'old'), conf)).code, 0);
  t.is(wiring.links.get(veth)?.owner, handleOf('wiremesh', 'new', 'eth0'));
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
