// The pod's network, as the CNI plugin wires it (the Calico way): a veth pair whose
// host end is named `wm` + 11 hex of sha1("<container id>.<ifname>"), the pod end holding
// a /32 (or /128) with a default route via 169.254.1.1, which the host end answers
// by proxy ARP; the host gets a /32 route to the veth. DEL is idempotent: deleting
// the host end removes the pair and the route, and a missing link or namespace is
// not an error.
//
// The host end is named after the attachment (what identifies one in the CNI spec:
// container id and interface), not after the pod: a pod's new sandbox may be wired
// while its old one still exists, and a client outside Kubernetes may reuse a pod's
// name, and neither may take over the other's pair. Attachments wired before were
// named from "<namespace>.<pod>" (legacyHostVethName); DEL, CHECK and GC still find
// them there, and the owner recorded in the link's alias keeps them from touching
// another attachment's pair of that name.
//
// IPv6 (a dual-stack pod has both): the pod's /128 with a default route via the
// link-local gateway fe80::1, which the host end holds (nodad, so it is usable at
// once; every host end holds it, as link-local addresses are per link). The pod has
// a permanent neighbour fe80::1 -> the host end's MAC and the host a permanent
// neighbour pod address -> the pod end's MAC, so neither direction waits for
// neighbour discovery and no proxy NDP is needed. The host gets a /128 route to the
// veth, and IPv6 forwarding is switched on for the node (net.ipv6.conf.all.forwarding,
// as Calico does: a node that takes its own IPv6 address from router advertisements
// then needs accept_ra=2 on its uplink).
//
// `PodWiring` is the kernel touchpoint, with three implementations: the agent's
// long-lived netlink worker (netlinkd.ts, no process start per ADD or DEL: what the
// agent uses), `CommandWiring` here (the same work through `ip -batch`, one process
// on the host and one inside the pod's namespace: for callers without the worker),
// and an in-memory fake (wiring-fake.ts). CHECK gathers facts and the pure
// `podNetProblems` says what is wrong, so every implementation judges alike.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { defaultRunner, type Runner } from '../sys/index.ts';

export const POD_GATEWAY_V4 = '169.254.1.1';
/** The pod's IPv6 next hop: a link-local address on the host end of its veth. */
export const POD_GATEWAY_V6 = 'fe80::1';
/** Routes to pods carry this protocol number (distinct from the mesh's 251). */
export const POD_ROUTE_PROTOCOL = 252;

/** The host end of an attachment's veth: `wm` + 11 hex of sha1("<container id>.<ifname>"). */
export function hostVethName(containerID: string, ifName: string): string {
  return `wm${createHash('sha1').update(`${containerID}.${ifName}`).digest('hex').slice(0, 11)}`;
}

/** The name earlier versions gave the host end, from the pod's name (see the opening comment). */
export function legacyHostVethName(namespace: string, pod: string): string {
  return `wm${createHash('sha1').update(`${namespace}.${pod}`).digest('hex').slice(0, 11)}`;
}

export interface PodNetSpec {
  /** Path of the pod's network namespace (e.g. /run/netns/x or /proc/PID/ns/net). */
  netns: string;
  podIfName: string;
  hostIfName: string;
  /** Plain addresses, one per family. */
  addresses: string[];
  mtu: number;
  /** The attachment (CNI handle) that owns the pair, recorded as the host end's alias. */
  owner?: string;
}

export interface PodNetResult {
  hostMac: string;
  podMac: string;
}

/** Wires and unwires pods; every implementation has the semantics of the functions below. */
export interface PodWiring {
  setup(spec: PodNetSpec): Promise<PodNetResult>;
  /** Remove the pair (only the one `owner` wired, when given); nothing to do when it is gone. */
  teardown(hostIfName: string, owner?: string): Promise<void>;
  /** What is wrong with a wired pod (empty when nothing is). */
  check(spec: PodNetSpec): Promise<string[]>;
}

/** What CHECK looks at, as the kernel reports it. */
export interface PodNetFacts {
  hostLink: boolean;
  netns: boolean;
  podLink: boolean;
  /** Addresses on the pod's interface. */
  podAddrs: string[];
  /** Destinations (plain addresses) of the routes on the host end. */
  hostRoutes: string[];
  /** The IPv4 default route's gateway inside the pod ('' when none). */
  podGateway4: string;
  /** The IPv6 default route's gateway inside the pod ('' when none; absent from old workers). */
  podGateway6?: string;
}

/** What CHECK verifies: the pair, the addresses inside the pod, the routes on both sides. */
export function podNetProblems(spec: PodNetSpec, facts: PodNetFacts): string[] {
  if (!facts.hostLink) return [`host interface ${spec.hostIfName} is missing`];
  if (!facts.netns) return [`network namespace ${spec.netns} is missing`];
  if (!facts.podLink) return [`pod interface ${spec.podIfName} is missing`];
  const problems: string[] = [];
  for (const ip of spec.addresses)
    if (!facts.podAddrs.includes(ip))
      problems.push(`address ${ip} is missing on ${spec.podIfName}`);
  for (const ip of spec.addresses)
    if (!facts.hostRoutes.includes(ip)) problems.push(`host route to ${ip} is missing`);
  if (spec.addresses.some((a) => !isV6(a)) && facts.podGateway4 !== POD_GATEWAY_V4)
    problems.push(`default route via ${POD_GATEWAY_V4} is missing in the pod`);
  if (spec.addresses.some(isV6) && facts.podGateway6 !== POD_GATEWAY_V6)
    problems.push(`IPv6 default route via ${POD_GATEWAY_V6} is missing in the pod`);
  return problems;
}

/** Pod wiring through `ip -batch` processes (and `sysctl`, or /proc writes in the agent). */
export class CommandWiring implements PodWiring {
  private readonly runner: Runner;
  private readonly sysctl: SysctlWriter;
  constructor(runner: Runner, sysctl: SysctlWriter = runnerSysctl(runner)) {
    this.runner = runner;
    this.sysctl = sysctl;
  }
  setup(spec: PodNetSpec): Promise<PodNetResult> {
    return setupPodNetwork(this.runner, spec, this.sysctl);
  }
  teardown(hostIfName: string, owner?: string): Promise<void> {
    return teardownPodNetwork(this.runner, hostIfName, owner);
  }
  check(spec: PodNetSpec): Promise<string[]> {
    return checkPodNetwork(this.runner, spec);
  }
}

const isV6 = (ip: string) => ip.includes(':');

function nsenter(netns: string): string[] {
  return ['nsenter', `--net=${netns}`, '--'];
}

async function hostLinkExists(runner: Runner, name: string): Promise<boolean> {
  const res = await runner.run(['ip', '-j', 'link', 'show', 'dev', name], { allowFailure: true });
  return res.code === 0;
}

/** A stable, locally administered unicast MAC for one end of a pod's veth pair. */
export function vethMac(hostIfName: string, end: 'host' | 'pod'): string {
  const h = createHash('sha1').update(`${hostIfName}/${end}`).digest();
  const bytes = [0x02, h[0] ?? 0, h[1] ?? 0, h[2] ?? 0, h[3] ?? 0, h[4] ?? 0];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Sets sysctls in the runner's network namespace (the default spawns `sysctl`). */
export type SysctlWriter = (settings: Record<string, string>) => Promise<void>;

export function runnerSysctl(runner: Runner): SysctlWriter {
  return async (settings) => {
    await runner.run(['sysctl', '-qw', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)]);
  };
}

/** For a process that lives in the network namespace it configures (the agent): /proc writes. */
export const procSysctl: SysctlWriter = async (settings) => {
  for (const [key, value] of Object.entries(settings)) {
    await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, value);
  }
};

/**
 * Wire a pod: two `ip -batch` runs (one on the host, one in the pod's namespace) and
 * the host end's sysctls. MACs are chosen here rather than read back, which saves
 * two process starts per ADD.
 */
export async function setupPodNetwork(
  runner: Runner,
  spec: PodNetSpec,
  sysctl: SysctlWriter = runnerSysctl(runner),
): Promise<PodNetResult> {
  if (!existsSync(spec.netns)) throw new Error(`network namespace ${spec.netns} does not exist`);
  const hostMac = vethMac(spec.hostIfName, 'host');
  const podMac = vethMac(spec.hostIfName, 'pod');
  const mtu = String(spec.mtu);
  const hostBatch = [
    `link add ${spec.hostIfName} address ${hostMac} mtu ${mtu} type veth peer name ${spec.podIfName} address ${podMac} mtu ${mtu} netns ${spec.netns}`,
    `link set ${spec.hostIfName} up`,
    ...(spec.owner ? [`link set ${spec.hostIfName} alias ${spec.owner}`] : []),
  ];
  for (const ip of spec.addresses) {
    const prefix = isV6(ip) ? 128 : 32;
    hostBatch.push(
      `route replace ${ip}/${prefix} dev ${spec.hostIfName} scope link proto ${POD_ROUTE_PROTOCOL}`,
    );
  }
  if (spec.addresses.some(isV6)) {
    hostBatch.push(`addr add ${POD_GATEWAY_V6}/64 dev ${spec.hostIfName} nodad`);
    for (const ip of spec.addresses.filter(isV6))
      hostBatch.push(`neigh replace ${ip} lladdr ${podMac} dev ${spec.hostIfName} nud permanent`);
  }
  const input = hostBatch.join('\n') + '\n';
  const first = await runner.run(['ip', '-batch', '-'], { input, allowFailure: true });
  if (first.code !== 0) {
    // A retried ADD finds the pair of an earlier, interrupted attempt: start clean, once.
    // A pair recorded for another attachment stays, and this ADD fails on it.
    if (!/File exists/i.test(first.stderr))
      throw new Error(`wiring ${spec.hostIfName}: ${first.stderr.trim()}`);
    await teardownPodNetwork(runner, spec.hostIfName, spec.owner);
    const again = await runner.run(['ip', '-batch', '-'], { input, allowFailure: true });
    if (again.code !== 0) throw new Error(`wiring ${spec.hostIfName}: ${again.stderr.trim()}`);
  }
  await sysctl({
    [`net.ipv4.conf.${spec.hostIfName}.proxy_arp`]: '1',
    [`net.ipv4.neigh.${spec.hostIfName}.proxy_delay`]: '0',
    [`net.ipv4.conf.${spec.hostIfName}.forwarding`]: '1',
    ...(spec.addresses.some(isV6) ? { 'net.ipv6.conf.all.forwarding': '1' } : {}),
  });
  // The pod resolves its gateway to the host end's MAC statically, so nothing depends
  // on proxy ARP finding a route to 169.254.1.1 on the node (a node need not have one).
  const podBatch = ['link set lo up', `link set ${spec.podIfName} up`];
  for (const ip of spec.addresses) {
    if (isV6(ip)) {
      podBatch.push(`addr add ${ip}/128 dev ${spec.podIfName} nodad`);
      podBatch.push(
        `neigh replace ${POD_GATEWAY_V6} lladdr ${hostMac} dev ${spec.podIfName} nud permanent`,
      );
      podBatch.push(`route add default via ${POD_GATEWAY_V6} dev ${spec.podIfName}`);
    } else {
      podBatch.push(`addr add ${ip}/32 dev ${spec.podIfName}`);
      podBatch.push(`route add ${POD_GATEWAY_V4} dev ${spec.podIfName} scope link`);
      podBatch.push(
        `neigh replace ${POD_GATEWAY_V4} lladdr ${hostMac} dev ${spec.podIfName} nud permanent`,
      );
      podBatch.push(`route add default via ${POD_GATEWAY_V4} dev ${spec.podIfName}`);
    }
  }
  await runner.run([...nsenter(spec.netns), 'ip', '-batch', '-'], {
    input: podBatch.join('\n') + '\n',
  });
  return { hostMac, podMac };
}

/**
 * A link's alias ('' when it has none), or null when the link does not exist. Read
 * from /sys when this process shares the runner's network namespace (the agent),
 * which saves a process start per DEL; through `ip` otherwise.
 */
async function readAlias(runner: Runner, name: string): Promise<string | null> {
  if (runner === defaultRunner) {
    try {
      return (await readFile(`/sys/class/net/${name}/ifalias`, 'utf8')).trim();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    }
  }
  const show = await runner.run(['ip', '-j', 'link', 'show', 'dev', name], { allowFailure: true });
  if (show.code !== 0) return null;
  const [link] = JSON.parse(show.stdout) as { ifalias?: string }[];
  return link?.ifalias ?? '';
}

/**
 * Remove the pair (and with it the host route); nothing to do when it is gone. With
 * `owner`, only a pair wired for that attachment (or with no owner recorded) is
 * removed: a name found by the legacy scheme may belong to another sandbox of the
 * same pod, and releasing the dead sandbox's handle must not cut the live one's network.
 */
export async function teardownPodNetwork(
  runner: Runner,
  hostIfName: string,
  owner?: string,
): Promise<void> {
  if (owner !== undefined) {
    const alias = await readAlias(runner, hostIfName);
    if (alias === null) return; // no such link
    if (alias !== '' && alias !== owner) return;
  }
  const res = await runner.run(['ip', 'link', 'del', 'dev', hostIfName], { allowFailure: true });
  if (res.code !== 0 && !/Cannot find device|does not exist/i.test(res.stderr)) {
    throw new Error(`cannot delete ${hostIfName}: ${res.stderr.trim()}`);
  }
}

/** CHECK through `ip -j` processes: the facts, judged by podNetProblems. */
export async function checkPodNetwork(runner: Runner, spec: PodNetSpec): Promise<string[]> {
  const facts: PodNetFacts = {
    hostLink: await hostLinkExists(runner, spec.hostIfName),
    netns: existsSync(spec.netns),
    podLink: false,
    podAddrs: [],
    hostRoutes: [],
    podGateway4: '',
    podGateway6: '',
  };
  if (facts.hostLink && facts.netns) {
    const addrs = await runner.run(
      [...nsenter(spec.netns), 'ip', '-j', 'addr', 'show', 'dev', spec.podIfName],
      { allowFailure: true },
    );
    if (addrs.code === 0) {
      facts.podLink = true;
      facts.podAddrs =
        (JSON.parse(addrs.stdout) as { addr_info?: { local: string }[] }[])[0]?.addr_info?.map(
          (a) => a.local,
        ) ?? [];
      for (const family of ['-4', '-6']) {
        const routes = await runner.run([
          'ip',
          '-j',
          family,
          'route',
          'show',
          'dev',
          spec.hostIfName,
        ]);
        facts.hostRoutes.push(
          ...(JSON.parse(routes.stdout || '[]') as { dst: string }[]).map((r) => r.dst),
        );
      }
      const def = await runner.run([
        ...nsenter(spec.netns),
        'ip',
        '-j',
        'route',
        'show',
        'default',
      ]);
      facts.podGateway4 =
        (JSON.parse(def.stdout || '[]') as { gateway?: string }[])[0]?.gateway ?? '';
      const def6 = await runner.run([
        ...nsenter(spec.netns),
        'ip',
        '-j',
        '-6',
        'route',
        'show',
        'default',
      ]);
      facts.podGateway6 =
        (JSON.parse(def6.stdout || '[]') as { gateway?: string }[])[0]?.gateway ?? '';
    }
  }
  return podNetProblems(spec, facts);
}
