// Kernel tier: the VXLAN path between two throwaway "nodes" (network namespaces on a
// veth underlay, 198.18.252.0/24), each with wiremesh.vxlan driven only by VxlanDriver
// through IpCli, and a "pod" namespace behind each (a /32 on a veth with proxy ARP, as
// the CNI wires pods; each pod is dual-stack, its IPv6 /128 behind a permanent fe80::1
// gateway). Asserts what an operator would check: the pods reach each other over IPv4
// and IPv6, the underlay carries their packets only inside UDP 4789 with VNI 4100, a
// full-size DF ping fits, a second apply changes nothing, a removed peer leaves no FDB,
// neighbour or route behind; then the same over an IPv6 underlay (the device bound to
// the IPv6 address, FDB entries pointing at IPv6, overhead 70). And the IP-in-IP
// availability probe against the kernel's own answer.
import test from 'ava';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  IpCli,
  PrefixRunner,
  defaultRunner as runner,
  requireProgram,
  requireRoot,
} from '../sys/index.ts';
import { startCapture } from '../kind-tests/probes.ts';
import {
  ENCAP_ROUTE_PROTOCOL,
  IpipDriver,
  VXLAN_DEVICE,
  VxlanDriver,
  encapReportChanged,
  encapsulation,
  encapsulationMtu,
  vtepLinkLocal,
  vtepMac,
  type EncapState,
} from './index.ts';

const tag = process.pid % 100000;

interface Node {
  netns: string;
  pod: string;
  underlay: string;
  underlay6: string;
  vtep: string;
  /** The IPv6 VTEP: the IPv6 tunnel address (agent/plan.ts tunnelAddress6 of vtep). */
  vtep6: string;
  block: string;
  block6: string;
  podIP: string;
  podIP6: string;
  podVeth: string;
  ip: IpCli;
}

const nodes: Node[] = ['a', 'b'].map((side, i) => {
  const netns = `wmv-${tag}-${side}`;
  return {
    netns,
    pod: `wmv-${tag}-p${side}`,
    underlay: `198.18.252.${i + 1}`,
    underlay6: `2001:db8:252::${i + 1}`,
    vtep: `100.127.252.${i + 1}`,
    vtep6: `fd5e:7a11:3c8b:ffff::647f:fc0${i + 1}`,
    block: `100.64.${252 + i}.0/26`,
    block6: `fd00:64:${252 + i}::/122`,
    podIP: `100.64.${252 + i}.2`,
    podIP6: `fd00:64:${252 + i}::2`,
    podVeth: `wmvpod${side}`,
    ip: new IpCli(new PrefixRunner(runner, ['ip', 'netns', 'exec', netns])),
  };
});
const [A, B] = nodes as [Node, Node];
const HOST_MTU = 1500;
const namespaces = nodes.flatMap((n) => [n.netns, n.pod]);

const exec = (netns: string, argv: string[], allowFailure = false) =>
  runner.run(['ip', 'netns', 'exec', netns, ...argv], { allowFailure });

function stateOf(self: Node, peers: Node[], underlayFamily: 4 | 6 = 4): EncapState {
  const underlay = (n: Node) => (underlayFamily === 4 ? n.underlay : n.underlay6);
  return {
    localUnderlayIP: underlay(self),
    vtepIP: self.vtep,
    vtepIP6: self.vtep6,
    mtu: encapsulationMtu(HOST_MTU, 'vxlan', underlayFamily),
    peers: peers.map((p) => ({
      node: p.netns,
      underlayIP: underlay(p),
      vtepIP: p.vtep,
      vtepIP6: p.vtep6,
      blocks: [p.block, p.block6],
    })),
  };
}

/** What `bridge fdb`, `ip neigh` and `ip route` say about the VXLAN device, as text. */
async function kernelView(node: Node): Promise<string> {
  const fdb = await exec(node.netns, ['bridge', 'fdb', 'show', 'dev', VXLAN_DEVICE]);
  const neigh = await exec(node.netns, ['ip', 'neigh', 'show', 'dev', VXLAN_DEVICE]);
  const routes = await exec(node.netns, ['ip', 'route', 'show', 'dev', VXLAN_DEVICE]);
  const link = await exec(node.netns, ['ip', '-d', 'link', 'show', 'dev', VXLAN_DEVICE]);
  return [fdb.stdout, neigh.stdout, routes.stdout, link.stdout].join('---\n');
}

async function ping(from: Node, to: Node, extra: string[] = [], family: 4 | 6 = 4) {
  const dst = family === 4 ? to.podIP : to.podIP6;
  return exec(
    from.pod,
    ['ping', `-${family}`, '-c', '2', '-i', '0.2', '-W', '2', ...extra, dst],
    true,
  );
}

/** The underlay less ARP and IPv6 neighbour discovery and multicast housekeeping. */
const UNDERLAY_FILTER =
  'not arp and not (icmp6 and ip6[40] >= 133 and ip6[40] <= 137) and not (ip6 and dst net ff00::/8)';

/**
 * Pings both families both ways under an underlay capture; returns the outer packets
 * and, per family, the decapsulated lines naming A's pod.
 */
async function pingsUnderCapture(name: string) {
  const capture = await startCapture(
    ['ip', 'netns', 'exec', A.netns],
    'under0',
    UNDERLAY_FILTER,
    join(tmpdir(), `wmv-${tag}-${name}.pcap`),
  );
  const results = [await ping(A, B), await ping(A, B, [], 6)];
  const { lines } = await capture.stop();
  const innerOf = (ip: string) =>
    lines.flatMap((l, i) => (l.includes(` ${ip} `) || l.includes(` ${ip}:`) ? [i] : []));
  return {
    results,
    lines,
    outer: lines.filter((l) => /^\d\d:\d\d:\d\d/.test(l)),
    inner: { 4: innerOf(A.podIP), 6: innerOf(A.podIP6) },
  };
}

const VXLAN_HEADER = /\.4789: VXLAN, flags \[I\] \(0x08\), vni 4100$/;

async function cleanup(): Promise<void> {
  for (const ns of namespaces) {
    if (existsSync(`/run/netns/${ns}`))
      await runner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
}

test.before(async () => {
  requireRoot('tunnels/vxlan.netns.test.ts');
  await requireProgram('tcpdump', 'install tcpdump');
  await requireProgram('bridge', 'install iproute2');
  for (const ns of namespaces) {
    if (existsSync(`/run/netns/${ns}`)) throw new Error(`netns ${ns} already exists`);
  }
  for (const ns of namespaces) {
    await runner.run(['ip', 'netns', 'add', ns]);
    await exec(ns, ['ip', 'link', 'set', 'lo', 'up']);
    // No duplicate address detection: an address is usable the moment it is added.
    for (const conf of ['all', 'default'])
      await exec(ns, ['sysctl', '-qw', `net.ipv6.conf.${conf}.accept_dad=0`]);
  }
  await runner.run(
    ['ip', '-n', A.netns, 'link', 'add', 'under0', 'type', 'veth'].concat([
      'peer',
      'name',
      'under0',
      'netns',
      B.netns,
    ]),
  );
  for (const n of nodes) {
    await exec(n.netns, ['ip', 'addr', 'add', `${n.underlay}/24`, 'dev', 'under0']);
    await exec(n.netns, ['ip', 'link', 'set', 'under0', 'up']);
    await exec(n.netns, ['ip', 'addr', 'add', `${n.underlay6}/64`, 'dev', 'under0', 'nodad']);
    await exec(n.netns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await exec(n.netns, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    // As the WireGuard mesh does: the peer's IPv6 tunnel address routed out of another
    // device (the kernel then refuses it as an onlink next hop on wiremesh.vxlan).
    const peer = nodes.find((p) => p !== n);
    if (peer)
      await exec(n.netns, ['ip', '-6', 'route', 'add', `${peer.vtep6}/128`, 'dev', 'under0']);
    // The pod: a /32 behind a veth, default route via 169.254.1.1, a static neighbour
    // for it (as cni/podnet.ts wires pods); proxy ARP for anything else the pod asks.
    await runner.run(
      ['ip', '-n', n.netns, 'link', 'add', n.podVeth, 'type', 'veth'].concat([
        'peer',
        'name',
        'eth0',
        'netns',
        n.pod,
      ]),
    );
    await exec(n.netns, ['sysctl', '-qw', `net.ipv4.conf.${n.podVeth}.proxy_arp=1`]);
    await exec(n.netns, ['ip', 'link', 'set', n.podVeth, 'up']);
    await exec(n.netns, ['ip', 'route', 'add', `${n.podIP}/32`, 'dev', n.podVeth]);
    await exec(n.pod, ['ip', 'addr', 'add', `${n.podIP}/32`, 'dev', 'eth0']);
    await exec(n.pod, ['ip', 'link', 'set', 'eth0', 'mtu', '1450', 'up']);
    await exec(n.pod, ['ip', 'route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link']);
    const mac = await exec(n.netns, ['cat', `/sys/class/net/${n.podVeth}/address`]);
    await exec(
      n.pod,
      ['ip', 'neigh', 'replace', '169.254.1.1', 'lladdr', mac.stdout.trim()].concat([
        'dev',
        'eth0',
        'nud',
        'permanent',
      ]),
    );
    await exec(n.pod, ['ip', 'route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0']);
    // IPv6: the pod's /128, a default route via fe80::1 resolved by a permanent entry.
    await exec(n.netns, ['ip', '-6', 'route', 'add', `${n.podIP6}/128`, 'dev', n.podVeth]);
    await exec(n.pod, ['ip', 'addr', 'add', `${n.podIP6}/128`, 'dev', 'eth0', 'nodad']);
    await exec(
      n.pod,
      ['ip', '-6', 'neigh', 'replace', 'fe80::1', 'lladdr', mac.stdout.trim()].concat([
        'dev',
        'eth0',
        'nud',
        'permanent',
      ]),
    );
    await exec(n.pod, ['ip', '-6', 'route', 'add', 'default', 'via', 'fe80::1', 'dev', 'eth0']);
  }
});

test.after.always(cleanup);

test.serial(
  'IPv4 and IPv6 pods reach each other over VXLAN; the underlay shows only UDP 4789, VNI 4100',
  async (t) => {
    t.false((await ping(A, B)).code === 0, 'no path before the driver runs');
    t.false((await ping(A, B, [], 6)).code === 0, 'no IPv6 path before the driver runs');
    const ra = await new VxlanDriver(A.ip).apply(stateOf(A, [B]));
    const rb = await new VxlanDriver(B.ip).apply(stateOf(B, [A]));
    t.true(ra.deviceCreated && rb.deviceCreated);
    // One FDB entry for the node; a neighbour and a route per family.
    t.like(ra, { fdbAdded: 1, neighboursSet: 2, routesReplaced: 2 });

    const { results, lines, outer, inner } = await pingsUnderCapture('v4');
    for (const res of results) t.is(res.code, 0, res.stdout + res.stderr);
    t.log(lines.slice(0, 4).join('\n'));

    // tcpdump prints the decapsulated packet on the line after its VXLAN header.
    for (const family of [4, 6] as const) {
      t.true(inner[family].length >= 4, `IPv${family}: two requests and two replies seen`);
      for (const i of inner[family]) t.regex(lines[i - 1] ?? '', VXLAN_HEADER, lines[i]);
    }
    t.true(outer.length >= 8);
    for (const l of outer) t.regex(l, /^\S+ IP \S+ > \S+\.4789: VXLAN/, 'only UDP 4789');
    t.true(lines.some((l) => l.includes(`${A.underlay}.`) && l.includes(`> ${B.underlay}.4789`)));
  },
);

test.serial(
  'a full-size packet with DF set fits the VXLAN MTU; one byte more does not',
  async (t) => {
    const mtu = encapsulationMtu(HOST_MTU, 'vxlan', 4);
    t.is(
      (await exec(A.netns, ['cat', `/sys/class/net/${VXLAN_DEVICE}/mtu`])).stdout.trim(),
      `${mtu}`,
    );
    const fits = await ping(A, B, ['-M', 'do', '-s', String(mtu - 28)]);
    t.is(fits.code, 0, fits.stdout + fits.stderr);
    const tooBig = await ping(A, B, ['-M', 'do', '-s', String(mtu - 27)]);
    t.not(tooBig.code, 0);
    // IPv6: 40 bytes of header and 8 of ICMPv6.
    const fits6 = await ping(A, B, ['-M', 'do', '-s', String(mtu - 48)], 6);
    t.is(fits6.code, 0, fits6.stdout + fits6.stderr);
    t.not((await ping(A, B, ['-M', 'do', '-s', String(mtu - 47)], 6)).code, 0);
  },
);

test.serial('a second apply changes nothing in the kernel', async (t) => {
  const before = await kernelView(A);
  const report = await new VxlanDriver(A.ip).apply(stateOf(A, [B]));
  t.false(encapReportChanged(report), JSON.stringify(report));
  t.is(await kernelView(A), before);
  t.regex(before, new RegExp(`${vtepMac(B.vtep)} dst ${B.underlay} self permanent`));
  t.regex(before, new RegExp(`${B.vtep} lladdr ${vtepMac(B.vtep)} PERMANENT`));
  t.regex(before, new RegExp(`${B.block} via ${B.vtep} proto ${ENCAP_ROUTE_PROTOCOL} onlink`));
  t.regex(before, new RegExp(`${vtepLinkLocal(B.vtep)} lladdr ${vtepMac(B.vtep)} PERMANENT`));
  t.regex(
    (await exec(A.netns, ['ip', '-6', 'route', 'show', 'dev', VXLAN_DEVICE])).stdout,
    new RegExp(`${B.block6} via ${vtepLinkLocal(B.vtep)} proto ${ENCAP_ROUTE_PROTOCOL} .*onlink`),
  );
  const addrs = await exec(A.netns, ['ip', '-br', 'addr', 'show', 'dev', VXLAN_DEVICE]);
  t.regex(addrs.stdout, new RegExp(`${A.vtep}/32 ${A.vtep6}/128`));
});

test.serial('removing the peer removes its FDB entry, neighbour and routes', async (t) => {
  const report = await new VxlanDriver(A.ip).apply(stateOf(A, []));
  t.like(report, { fdbRemoved: 1, neighboursRemoved: 2, routesRemoved: 2 });
  const fdb = await exec(A.netns, ['bridge', 'fdb', 'show', 'dev', VXLAN_DEVICE]);
  t.notRegex(fdb.stdout, new RegExp(B.underlay));
  const neigh = await exec(A.netns, ['ip', 'neigh', 'show', 'dev', VXLAN_DEVICE]);
  t.notRegex(neigh.stdout, new RegExp(B.vtep.replaceAll('.', '\\.')));
  const routes = await exec(A.netns, ['ip', 'route', 'show', 'dev', VXLAN_DEVICE]);
  t.notRegex(routes.stdout, new RegExp(B.block.replaceAll('.', '\\.')));
  t.notRegex(neigh.stdout, new RegExp(vtepLinkLocal(B.vtep)));
  const routes6 = await exec(A.netns, ['ip', '-6', 'route', 'show', 'dev', VXLAN_DEVICE]);
  t.notRegex(routes6.stdout, new RegExp(B.block6));
  t.not((await ping(A, B)).code, 0, 'the pods no longer reach each other');
  t.not((await ping(A, B, [], 6)).code, 0, 'nor over IPv6');
  // And back: the path returns as it was.
  await new VxlanDriver(A.ip).apply(stateOf(A, [B]));
  t.is((await ping(A, B)).code, 0);
  t.is((await ping(A, B, [], 6)).code, 0);
});

test.serial(
  'IP-in-IP availability: the probe says what the kernel says, and leaves nothing',
  async (t) => {
    const direct = await exec(A.netns, ['ip', 'link', 'add', 'wmvdirect', 'type', 'ipip'], true);
    const kernelHasIpip = direct.code === 0;
    if (kernelHasIpip) await exec(A.netns, ['ip', 'link', 'del', 'wmvdirect']);
    const linksBefore = (await exec(A.netns, ['ip', '-o', 'link', 'show'])).stdout;

    const found = await encapsulation('ipip').probe(A.ip, { localUnderlayIP: A.underlay });
    t.log(
      `IP-in-IP on this kernel: ${found.available ? 'available' : 'unavailable'}: ${found.detail}`,
    );
    t.is(found.available, kernelHasIpip);
    t.is((await exec(A.netns, ['ip', '-o', 'link', 'show'])).stdout, linksBefore);
    if (!kernelHasIpip) {
      t.regex(found.detail, /the kernel has no ipip support \(module missing\)/);
      t.regex(found.detail, /Unknown device type/);
      // The driver, asked anyway, fails with the kernel's own words rather than pretending.
      const state = {
        ...stateOf(A, [B]),
        mtu: encapsulationMtu(HOST_MTU, 'ipip', 4),
        peers: [{ node: B.netns, underlayIP: B.underlay, vtepIP: B.vtep, blocks: [B.block] }],
      };
      await t.throwsAsync(() => new IpipDriver(A.ip).apply(state), {
        message: /Unknown device type/,
      });
    }
  },
);

test.serial(
  'over an IPv6 underlay: IPv4 and IPv6 pods reach each other inside UDP 4789 over IPv6, a full-size DF ping fits',
  async (t) => {
    // The device's local address is fixed at creation: moving to the IPv6 underlay recreates it.
    const ra = await new VxlanDriver(A.ip).apply(stateOf(A, [B], 6));
    const rb = await new VxlanDriver(B.ip).apply(stateOf(B, [A], 6));
    t.true(ra.deviceChanged && rb.deviceChanged);
    const link = await exec(A.netns, ['ip', '-d', 'link', 'show', 'dev', VXLAN_DEVICE]);
    t.regex(link.stdout, new RegExp(`local ${A.underlay6} `));
    const fdb = await exec(A.netns, ['bridge', 'fdb', 'show', 'dev', VXLAN_DEVICE]);
    t.regex(fdb.stdout, new RegExp(`${vtepMac(B.vtep)} dst ${B.underlay6} self permanent`));

    const { results, lines, outer, inner } = await pingsUnderCapture('v6');
    for (const res of results) t.is(res.code, 0, res.stdout + res.stderr);
    t.log(lines.slice(0, 4).join('\n'));
    for (const family of [4, 6] as const) {
      t.true(inner[family].length >= 4, `IPv${family}: two requests and two replies seen`);
      for (const i of inner[family]) t.regex(lines[i - 1] ?? '', VXLAN_HEADER, lines[i]);
    }
    t.true(outer.length >= 8);
    for (const l of outer) t.regex(l, /^\S+ IP6 \S+ > \S+\.4789: VXLAN/, 'only UDP 4789 over IPv6');
    t.true(outer.some((l) => l.includes(`${A.underlay6}.`) && l.includes(`> ${B.underlay6}.4789`)));

    // Overhead 70 over IPv6: the device MTU is 1430, and a full-size packet fits.
    const mtu = encapsulationMtu(HOST_MTU, 'vxlan', 6);
    t.is(mtu, 1430);
    t.is(
      (await exec(A.netns, ['cat', `/sys/class/net/${VXLAN_DEVICE}/mtu`])).stdout.trim(),
      `${mtu}`,
    );
    const fits = await ping(A, B, ['-M', 'do', '-s', String(mtu - 48)], 6);
    t.is(fits.code, 0, fits.stdout + fits.stderr);
    t.not((await ping(A, B, ['-M', 'do', '-s', String(mtu - 47)], 6)).code, 0);
    const fits4 = await ping(A, B, ['-M', 'do', '-s', String(mtu - 28)]);
    t.is(fits4.code, 0, fits4.stdout + fits4.stderr);

    // A second apply finds the IPv6-bound device as it wants it.
    const before = await kernelView(A);
    t.false(encapReportChanged(await new VxlanDriver(A.ip).apply(stateOf(A, [B], 6))));
    t.is(await kernelView(A), before);
  },
);
