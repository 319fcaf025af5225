// Kernel-level building blocks of lab nodes and pods. A node is a network
// namespace joined to the lab's underlay bridge by a veth, plus a persistent
// private mount namespace in which the node's state directories (/var/lib/wiremesh,
// /run/wireguard, /etc/cni/net.d, /opt/cni/bin, ...) are its own, and /sys shows
// its own links. The mount namespace is a slave of the host's, so pod network
// namespaces created later under /run/netns appear inside it (as a DaemonSet's
// HostToContainer mount would). A pod is a network namespace.
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import type { Runner } from '../sys/index.ts';
import { LAB_ROOT_RUN } from './plan.ts';

export const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Make LAB_ROOT_RUN a private mount, as `unshare --mount=FILE` requires of FILE's mount. */
export async function ensurePrivateRunRoot(runner: Runner): Promise<void> {
  await mkdir(LAB_ROOT_RUN, { recursive: true });
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const mounted = mountinfo.split('\n').some((l) => l.split(' ')[4] === LAB_ROOT_RUN);
  if (!mounted) {
    await runner.run(['mount', '--bind', LAB_ROOT_RUN, LAB_ROOT_RUN]);
  }
  await runner.run(['mount', '--make-private', LAB_ROOT_RUN]);
}

export async function releaseRunRoot(runner: Runner): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  if (mountinfo.split('\n').some((l) => l.split(' ')[4] === LAB_ROOT_RUN)) {
    await runner.run(['umount', LAB_ROOT_RUN], { allowFailure: true });
  }
}

export async function createBridge(
  runner: Runner,
  bridge: string,
  cidr: string,
  cidr6?: string,
): Promise<void> {
  await runner.run(['ip', 'link', 'add', bridge, 'type', 'bridge']);
  await runner.run(['ip', 'addr', 'add', cidr, 'dev', bridge]);
  if (cidr6) await runner.run(['ip', '-6', 'addr', 'add', cidr6, 'dev', bridge, 'nodad']);
  await runner.run(['ip', 'link', 'set', bridge, 'up']);
}

export interface NodeNamespaceSpec {
  netns: string;
  hostVeth: string;
  bridge: string;
  /** Underlay address with prefix, e.g. 198.18.0.11/24 (none on an IPv6-only node). */
  address?: string;
  /** IPv6 underlay address with prefix, e.g. 2001:db8::11/64 (added without DAD). */
  address6?: string;
  /** Where the persistent mount namespace is bound. */
  mountFile: string;
  /** Host path -> node-private directory bound over it. */
  privateDirs: Record<string, string>;
  /**
   * Shell commands run in the new mount namespace instead of the default (a fresh
   * sysfs, then `privateDirs` bound in place); a real node's setup has more to do.
   */
  mountSetup?: string[];
}

export async function createNodeNamespaces(runner: Runner, spec: NodeNamespaceSpec): Promise<void> {
  await runner.run(['ip', 'netns', 'add', spec.netns]);
  await runner.run([
    'ip',
    'link',
    'add',
    spec.hostVeth,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    spec.netns,
  ]);
  await runner.run(['ip', 'link', 'set', spec.hostVeth, 'master', spec.bridge, 'up']);
  const inNode = (argv: string[]) => runner.run(['ip', 'netns', 'exec', spec.netns, ...argv]);
  await inNode(['ip', 'link', 'set', 'lo', 'up']);
  if (spec.address) await inNode(['ip', 'addr', 'add', spec.address, 'dev', 'eth0']);
  if (spec.address6)
    await inNode(['ip', '-6', 'addr', 'add', spec.address6, 'dev', 'eth0', 'nodad']);
  await inNode(['ip', 'link', 'set', 'eth0', 'up']);
  await inNode(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);

  const binds: string[] = ['mount -t sysfs sysfs /sys'];
  for (const [target, source] of Object.entries(spec.privateDirs)) {
    await mkdir(source, { recursive: true, mode: 0o755 });
    binds.push(`mount --bind ${q(source)} ${q(target)}`);
  }
  const setup = spec.mountSetup ?? binds;
  await writeFile(spec.mountFile, '');
  await runner.run([
    'nsenter',
    `--net=/run/netns/${spec.netns}`,
    '--',
    'unshare',
    `--mount=${spec.mountFile}`,
    '--propagation',
    'slave',
    '--',
    'sh',
    '-c',
    `set -e; ${setup.join('; ')}`,
  ]);
}

/** argv prefix that runs a command inside a node (its network and mount namespaces). */
export function nodeExecPrefix(netns: string, mountFile: string): string[] {
  return ['nsenter', `--net=/run/netns/${netns}`, `--mount=${mountFile}`, '--'];
}

export function podExecPrefix(netns: string): string[] {
  return ['nsenter', `--net=/run/netns/${netns}`, '--'];
}

export async function netnsPids(runner: Runner, netns: string): Promise<number[]> {
  if (!existsSync(`/run/netns/${netns}`)) return [];
  const res = await runner.run(['ip', 'netns', 'pids', netns], { allowFailure: true });
  return res.stdout
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
}

export async function deleteNetns(runner: Runner, netns: string): Promise<void> {
  if (existsSync(`/run/netns/${netns}`)) {
    await runner.run(['ip', 'netns', 'del', netns], { allowFailure: true });
  }
}

export async function releaseMountNamespace(runner: Runner, mountFile: string): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  if (mountinfo.split('\n').some((l) => l.split(' ')[4] === mountFile)) {
    await runner.run(['umount', mountFile], { allowFailure: true });
  }
}

export async function listNetns(runner: Runner): Promise<string[]> {
  const res = await runner.run(['ip', '-j', 'netns', 'list'], { allowFailure: true });
  if (!res.stdout.trim()) return [];
  return (JSON.parse(res.stdout) as { name: string }[]).map((n) => n.name);
}

export async function listLinks(runner: Runner): Promise<string[]> {
  const res = await runner.run(['ip', '-j', 'link', 'show']);
  return (JSON.parse(res.stdout) as { ifname: string }[]).map((l) => l.ifname);
}

export async function listMountPoints(): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  return mountinfo
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => Boolean(m));
}
