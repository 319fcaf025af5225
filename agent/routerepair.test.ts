import test from 'ava';
import { hostVethName, legacyHostVethName } from '../cni/index.ts';
import { FakeIp } from '../sys/index.ts';
import {
  planConnectedRoutes,
  planPodRoutes,
  restoreHostRoutes,
  restoreRemovedRoutes,
  type PodAddress,
} from './routerepair.ts';
import { parseMonitorLine } from './routewatch.ts';

const pod = (name: string, address: string, handle = `wiremesh.c-${name}.eth0`): PodAddress => ({
  handle,
  namespace: 'default',
  pod: name,
  address,
});

/** A pod's pair, named after its attachment, or after the pod as earlier versions did. */
const veth = (name: string, alias: string, up = true, legacy = false) => ({
  name: legacy ? legacyHostVethName('default', name) : hostVethName(`c-${name}`, 'eth0'),
  index: 1,
  mtu: 1420,
  up,
  alias,
});

test('a pod’s host route is wanted while its veth is there, up and wired for it', (t) => {
  const pods = [
    pod('a', '100.64.0.2'),
    pod('a', 'fd00:64::2'),
    pod('b', '100.64.0.3'),
    pod('c', '100.64.0.4'),
    pod('d', '100.64.0.5'),
    pod('e', '100.64.0.6'),
  ];
  const links = [
    veth('a', 'wiremesh.c-a.eth0'),
    veth('b', '', true, true), // wired by an earlier version, under the pod's name, no owner
    veth('c', 'wiremesh.c-other.eth0', true, true), // the pod's other sandbox, not c's
    veth('d', 'wiremesh.c-d.eth0', false), // down: not ours to route to
    // e: no veth (an ADD not yet wired, or a DEL under way)
  ];
  t.deepEqual(
    planPodRoutes(pods, links).map((r) => `${r.dst} ${r.dev} ${r.protocol}`),
    [
      `100.64.0.2/32 ${hostVethName('c-a', 'eth0')} 252`,
      `fd00:64::2/128 ${hostVethName('c-a', 'eth0')} 252`,
      `100.64.0.3/32 ${legacyHostVethName('default', 'b')} 252`,
    ],
  );
});

test('connected routes: the subnet of each address, none for noprefixroute or host prefixes', (t) => {
  t.deepEqual(
    planConnectedRoutes('eth0', [
      { cidr: '198.18.0.2/16', prefixRoute: true },
      { cidr: '198.19.0.2/24', prefixRoute: false },
      { cidr: '203.0.113.7/32', prefixRoute: true },
      { cidr: '2001:db8:0:1::2/64', prefixRoute: true },
    ]),
    [
      { dst: '198.18.0.0/16', dev: 'eth0', protocol: 2, src: '198.18.0.2' },
      { dst: '2001:db8:0:1::/64', dev: 'eth0', protocol: 2, metric: 256 },
    ],
  );
});

function node() {
  const ip = new FakeIp();
  ip.addLink('eth0', 1500);
  const eth0 = ip.links.get('eth0');
  if (eth0) eth0.up = true;
  ip.links.get('eth0')?.addrs.add('198.18.0.2/16');
  for (const name of ['a', 'b']) {
    ip.addLink(hostVethName('default', name), 1420, 'veth');
    const link = ip.links.get(hostVethName('default', name));
    if (link) {
      link.up = true;
      link.alias = `wiremesh.c-${name}.eth0`;
    }
  }
  return ip;
}

test('a flushed main table: the underlay’s connected route first, then the pods’ routes', async (t) => {
  const ip = node();
  const pods = [pod('a', '100.64.0.2'), pod('b', '100.64.0.3')];
  const repair = await restoreHostRoutes(ip, { underlay: 'eth0', pods });
  t.deepEqual(repair, {
    connectedRoutes: ['198.18.0.0/16 dev eth0'],
    podRoutes: [
      `100.64.0.2/32 dev ${hostVethName('default', 'a')}`,
      `100.64.0.3/32 dev ${hostVethName('default', 'b')}`,
    ],
  });
  t.deepEqual(
    ip.calls.filter((c) => c.startsWith('route')),
    [
      'route replace 198.18.0.0/16 eth0',
      `route replace 100.64.0.2/32 ${hostVethName('default', 'a')}`,
      `route replace 100.64.0.3/32 ${hostVethName('default', 'b')}`,
    ],
  );
  ip.calls = [];
  t.deepEqual(await restoreHostRoutes(ip, { underlay: 'eth0', pods }), {
    connectedRoutes: [],
    podRoutes: [],
  });
  t.deepEqual(ip.calls, [], 'nothing missing: nothing written');

  // One pod's route deleted by hand: only it comes back.
  ip.routes = ip.routes.filter((r) => r.dst !== '100.64.0.3/32');
  t.deepEqual((await restoreHostRoutes(ip, { underlay: 'eth0', pods })).podRoutes, [
    `100.64.0.3/32 dev ${hostVethName('default', 'b')}`,
  ]);
});

test('a veth deleted between the listing and the write is skipped; other failures fail, naming the route', async (t) => {
  const ip = node();
  const pods = [pod('a', '100.64.0.2'), pod('b', '100.64.0.3')];
  const replace = ip.routeReplace.bind(ip);
  ip.routeReplace = async (route) => {
    if (route.dev === hostVethName('default', 'a'))
      throw new Error(`Cannot find device "${route.dev}"`);
    if (route.dev === 'eth0') throw new Error('RTNETLINK answers: Network is down');
    return replace(route);
  };
  const error = await t.throwsAsync(restoreHostRoutes(ip, { underlay: 'eth0', pods }));
  t.is(
    error?.message,
    'restoring the route 198.18.0.0/16 dev eth0: RTNETLINK answers: Network is down',
  );
  t.deepEqual(
    ip.routes.map((r) => r.dst),
    ['100.64.0.3/32'],
    'the other pod’s route was still restored',
  );
});

test('removed routes go back as the kernel described them, direct ones before those via a gateway', async (t) => {
  const ip = node();
  ip.addLink('wiremesh.wg', 1420, 'wireguard');
  ip.addLink('wiremesh.vxlan', 1450, 'vxlan');
  const events = [
    'Deleted 100.64.0.2 dev ' + hostVethName('default', 'a') + ' proto 252 scope 253 ',
    'Deleted 100.80.2.0/26 via 100.127.0.3 dev wiremesh.vxlan proto 253 onlink ',
    'Deleted 100.64.1.0/26 dev wiremesh.wg proto 251 scope 253 src 100.127.0.1 ',
    'Deleted 100.64.3.0/26 dev wiremesh.wg table 51826 proto 253 scope 253 ',
    'Deleted 198.18.0.0/16 dev eth0 proto 2 scope 253 src 198.18.0.2 ',
    'Deleted 5183:\tfrom 100.64.0.0/16 lookup 51826',
  ].map((l) => parseMonitorLine(l) ?? t.fail(l));
  t.deepEqual(await restoreRemovedRoutes(ip, events), { written: 5, failed: [] });
  t.deepEqual(ip.calls, [
    `route replace 100.64.0.2/32 ${hostVethName('default', 'a')}`,
    'route replace 100.64.1.0/26 wiremesh.wg',
    'route replace 100.64.3.0/26 wiremesh.wg table 51826',
    'route replace 198.18.0.0/16 eth0',
    'route replace 100.80.2.0/26 via 100.127.0.3 onlink wiremesh.vxlan',
  ]);
  t.like(
    ip.routes.find((r) => r.dst === '198.18.0.0/16'),
    { protocol: 2, scope: 253, src: '198.18.0.2' },
    'the kernel’s own protocol and scope',
  );
  t.like(
    ip.routes.find((r) => r.dst === '100.64.1.0/26'),
    { protocol: 251, src: '100.127.0.1' },
  );
});

test('an underlay link that is down gets no connected route (the kernel restores it when up)', async (t) => {
  const ip = node();
  const eth0 = ip.links.get('eth0');
  if (eth0) eth0.up = false;
  t.deepEqual(await restoreHostRoutes(ip, { underlay: 'eth0', pods: [] }), {
    connectedRoutes: [],
    podRoutes: [],
  });
  t.deepEqual(ip.calls, []);
});
