// `wiremesh cleanup`: removes from a node everything wiremesh put there, once the
// agent is gone (the DaemonSet deleted). Shaped as the rest of wiremesh: `observeNode`
// reads what exists (links, routes and rules by their wiremesh markers, the nftables
// table, the wireguard-go serving wiremesh.wg, files), `planCleanup` decides what to
// remove (pure), and `applyCleanup` removes it, idempotently: what is already gone is
// not an error, so a second run removes nothing and says so.
//
// What is wiremesh's is recognised by the names and numbers fixed in DESIGN.md:
// devices wiremesh.wg / .vxlan / .ipip; pod veths `wm` + 11 hex (only with `pods`:
// removing them cuts the pods still running on the node); routes of protocol 251 (the
// mesh) and 252 (pods); rules at priority 5182 or looking up table 51825; the table
// `inet wiremesh`; the wireguard-go whose UAPI socket is wiremesh.wg's (found through
// the socket's inode, so no other process is ever signalled); and the files below.
import { existsSync } from 'node:fs';
import { lstat, readFile, readdir, readlink, realpath, rm, rmdir } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Runner } from '../sys/index.ts';

// The names are the owners' constants, imported file by file: the cleanup loads no engine.
import {
  WIREGUARD_DEVICE,
  ROUTE_PROTOCOL as MESH_ROUTE_PROTOCOL,
  HOST_RULE_PRIORITY,
  HOST_ROUTE_TABLE,
} from '../agent/annotations.ts';
import { POD_ROUTE_PROTOCOL } from '../cni/podnet.ts';
import { NFT_FAMILY, NFT_TABLE } from '../nftables/model.ts';

export const WIREMESH_DEVICES = [WIREGUARD_DEVICE, 'wiremesh.vxlan', 'wiremesh.ipip'] as const;
/** The throwaway links of the agent's availability probes (`wmprobe.wg`, `wmprobe12345`). */
export const PROBE_LINK = /^wmprobe/;
/**
 * The encapsulation paths' markers (tunnels/constants.ts, landing alongside): their
 * routes carry protocol 253, an encrypted pool's rules sit at 5183 looking up 51826.
 */
export const ENCAP_ROUTE_PROTOCOL = 253;
export const ENCRYPT_RULE_PRIORITY = 5183;
export const ENCRYPT_ROUTE_TABLE = 51826;
/** Routes wiremesh owns, by protocol; pod routes only go with `pods`. */
export const NODE_ROUTE_PROTOCOLS = [MESH_ROUTE_PROTOCOL, ENCAP_ROUTE_PROTOCOL] as const;
export const RULE_PRIORITIES: readonly number[] = [HOST_RULE_PRIORITY, ENCRYPT_RULE_PRIORITY];
export const RULE_TABLES: readonly string[] = [HOST_ROUTE_TABLE, ENCRYPT_ROUTE_TABLE].map(String);
/** Host ends of pod veths: `wm` + 11 hex of sha1("<container id>.<ifname>"), or of "<namespace>.<pod>" before (cni/podnet.ts). */
export const POD_VETH = /^wm[0-9a-f]{11}$/;
/** wireguard-go's UAPI socket for wiremesh.wg ends so, under /run or /var/run. */
export const WG_SOCKET_SUFFIX = `/wireguard/${WIREGUARD_DEVICE}.sock`;

export interface CleanupPaths {
  stateDir: string;
  runDir: string;
  cniConfDir: string;
  cniBinDir: string;
  wireguardRunDir: string;
}

export const DEFAULT_CLEANUP_PATHS: CleanupPaths = {
  stateDir: '/var/lib/wiremesh',
  runDir: '/run/wiremesh',
  cniConfDir: '/etc/cni/net.d',
  cniBinDir: '/opt/cni/bin',
  wireguardRunDir: '/run/wireguard',
};

/** The files and directories of wiremesh on a node. Never the shared directories themselves. */
export function wiremeshPaths(p: CleanupPaths): string[] {
  const paths = [
    join(p.cniConfDir, '10-wiremesh.conflist'),
    join(p.cniBinDir, 'wiremesh'),
    join(p.wireguardRunDir, 'wiremesh.wg.sock'),
    p.runDir,
    p.stateDir,
  ];
  // /var/run is /run on current systems; on others it is a directory of its own.
  if (p.runDir.startsWith('/run/')) paths.push(`/var${p.runDir}`);
  if (p.wireguardRunDir.startsWith('/run/'))
    paths.push(join(`/var${p.wireguardRunDir}`, 'wiremesh.wg.sock'));
  return [...new Set(paths)];
}

export interface ObservedRoute {
  family: 4 | 6;
  dst: string;
  table: string;
  protocol: number;
  dev?: string;
}

export interface ObservedRule {
  family: 4 | 6;
  priority: number;
  table: string;
}

export interface ObservedProcess {
  pid: number;
  comm: string;
}

export interface NodeObservation {
  links: string[];
  routes: ObservedRoute[];
  rules: ObservedRule[];
  nftTable: boolean;
  wireguardGo: ObservedProcess[];
  /** The wiremesh paths that exist. */
  paths: string[];
  /** The agent answers on its socket: cleaning up under it would be undone. */
  agentRunning: boolean;
}

export type CleanupAction =
  | { kind: 'kill'; pid: number; comm: string }
  | { kind: 'link'; name: string }
  | { kind: 'route'; route: ObservedRoute }
  | { kind: 'rule'; rule: ObservedRule }
  | { kind: 'nft-table' }
  | { kind: 'path'; path: string };

export interface CleanupPlan {
  actions: CleanupAction[];
  /** What stays, and why (e.g. pod interfaces without `pods`). */
  kept: string[];
}

export interface CleanupOptions {
  /** Also remove pod interfaces and their routes (pods on the node lose their network). */
  pods: boolean;
}

export function describeAction(a: CleanupAction): string {
  switch (a.kind) {
    case 'kill':
      return `process ${a.comm} (pid ${a.pid}) serving wiremesh.wg`;
    case 'link':
      return `link ${a.name}`;
    case 'route':
      return `route ${a.route.dst}${a.route.dev ? ` dev ${a.route.dev}` : ''} table ${a.route.table} proto ${a.route.protocol} (IPv${a.route.family})`;
    case 'rule':
      return `rule priority ${a.rule.priority} lookup ${a.rule.table} (IPv${a.rule.family})`;
    case 'nft-table':
      return `nftables table ${NFT_FAMILY} ${NFT_TABLE}`;
    case 'path':
      return `path ${a.path}`;
  }
}

/**
 * What to remove, in an order that works: wireguard-go first (its device goes with it),
 * then links (their routes go with them), what routes and rules remain, the nftables
 * table, and the files last (the relay and conflist: no new pod is wired meanwhile).
 */
export function planCleanup(obs: NodeObservation, opts: CleanupOptions): CleanupPlan {
  const actions: CleanupAction[] = [];
  const kept: string[] = [];
  for (const p of obs.wireguardGo) actions.push({ kind: 'kill', pid: p.pid, comm: p.comm });
  const podLinks = obs.links.filter((l) => POD_VETH.test(l)).sort();
  for (const name of WIREMESH_DEVICES)
    if (obs.links.includes(name)) actions.push({ kind: 'link', name });
  for (const name of obs.links.filter((l) => PROBE_LINK.test(l)).sort())
    actions.push({ kind: 'link', name });
  if (opts.pods) for (const name of podLinks) actions.push({ kind: 'link', name });
  else if (podLinks.length)
    kept.push(
      `${podLinks.length} pod interface(s) (${podLinks.join(', ')}) and their routes: pass --pods to remove them (pods on this node lose their network)`,
    );
  const goneLinks = new Set(actions.flatMap((a) => (a.kind === 'link' ? [a.name] : [])));
  for (const route of obs.routes) {
    if (route.dev && goneLinks.has(route.dev)) continue; // removed with its link
    const ours =
      (NODE_ROUTE_PROTOCOLS as readonly number[]).includes(route.protocol) ||
      (route.protocol === POD_ROUTE_PROTOCOL && opts.pods);
    if (ours) actions.push({ kind: 'route', route });
  }
  for (const rule of obs.rules) {
    if (RULE_PRIORITIES.includes(rule.priority) || RULE_TABLES.includes(rule.table))
      actions.push({ kind: 'rule', rule });
  }
  if (obs.nftTable) actions.push({ kind: 'nft-table' });
  for (const path of obs.paths) actions.push({ kind: 'path', path });
  return { actions, kept };
}

// --- parsing what the kernel reports ---------------------------------------------

/** Link names from `ip -j link show`. */
export function parseLinks(json: string): string[] {
  return (JSON.parse(json || '[]') as { ifname: string }[]).map((l) => l.ifname);
}

/** Routes from `ip -j -F route show table all proto P`; the main table when none is named. */
export function parseRoutes(json: string, family: 4 | 6, protocol: number): ObservedRoute[] {
  return (JSON.parse(json || '[]') as { dst: string; dev?: string; table?: string }[]).map((r) => ({
    family,
    dst: r.dst,
    table: r.table ?? 'main',
    protocol,
    ...(r.dev ? { dev: r.dev } : {}),
  }));
}

/** Rules from `ip -j -F rule show`. */
export function parseRules(json: string, family: 4 | 6): ObservedRule[] {
  return (JSON.parse(json || '[]') as { priority: number; table?: string }[]).map((r) => ({
    family,
    priority: r.priority,
    table: r.table ?? '',
  }));
}

/** Inodes of the listening unix sockets bound to a path ending in `suffix` (/proc/net/unix). */
export function socketInodes(procNetUnix: string, suffix: string): number[] {
  const inodes: number[] = [];
  for (const line of procNetUnix.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const path = f[7];
    if (path?.endsWith(suffix) && f[6]) inodes.push(Number(f[6]));
  }
  return inodes;
}

// --- observing and applying ----------------------------------------------------------

export interface CleanupEnv {
  runner: Runner;
  paths: CleanupPaths;
  /** Where /proc is (tests point it elsewhere). */
  proc?: string;
}

/** The processes holding a socket of `inodes` open (scans /proc/PID/fd). */
async function socketOwners(proc: string, inodes: number[]): Promise<ObservedProcess[]> {
  if (!inodes.length) return [];
  const wanted = new Set(inodes.map((i) => `socket:[${i}]`));
  const owners: ObservedProcess[] = [];
  for (const entry of await readdir(proc)) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const fds = await readdir(join(proc, entry, 'fd')).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(join(proc, entry, 'fd', fd)).catch(() => '');
      if (!wanted.has(target)) continue;
      const comm = (await readFile(join(proc, entry, 'comm'), 'utf8').catch(() => '?')).trim();
      owners.push({ pid: Number(entry), comm });
      break;
    }
  }
  return owners;
}

function socketAnswers(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const conn = createConnection({ path });
    const done = (ok: boolean) => {
      conn.destroy();
      resolve(ok);
    };
    conn.setTimeout(1000, () => done(false));
    conn.once('connect', () => done(true));
    conn.once('error', () => done(false));
  });
}

async function nftTableExists(runner: Runner): Promise<boolean> {
  const res = await runner.run(['nft', 'list', 'table', NFT_FAMILY, NFT_TABLE], {
    allowFailure: true,
  });
  if (res.code === 0) return true;
  if (/No such file or directory|does not exist/i.test(res.stderr)) return false;
  throw new Error(`nft list table ${NFT_FAMILY} ${NFT_TABLE}: ${res.stderr.trim()}`);
}

export async function observeNode(env: CleanupEnv): Promise<NodeObservation> {
  const { runner } = env;
  const proc = env.proc ?? '/proc';
  const links = parseLinks((await runner.run(['ip', '-j', 'link', 'show'])).stdout);
  const routes: ObservedRoute[] = [];
  const rules: ObservedRule[] = [];
  for (const family of [4, 6] as const) {
    for (const protocol of [...NODE_ROUTE_PROTOCOLS, POD_ROUTE_PROTOCOL]) {
      const res = await runner.run(
        ['ip', '-j', `-${family}`, 'route', 'show', 'table', 'all', 'proto', String(protocol)],
        { allowFailure: true },
      );
      // A kernel without IPv6 answers with an error: nothing of that family exists.
      if (res.code === 0) routes.push(...parseRoutes(res.stdout, family, protocol));
    }
    const res = await runner.run(['ip', '-j', `-${family}`, 'rule', 'show'], {
      allowFailure: true,
    });
    if (res.code === 0) rules.push(...parseRules(res.stdout, family));
  }
  // /proc/net/unix lists the sockets of our own network namespace only, so a
  // wireguard-go of another namespace (another lab node) is never matched.
  const unix = await readFile(join(proc, 'net', 'unix'), 'utf8').catch(() => '');
  const wireguardGo = await socketOwners(proc, socketInodes(unix, WG_SOCKET_SUFFIX));
  const paths: string[] = [];
  const seen = new Set<string>();
  const mounts = await mountPoints(proc);
  for (const p of wiremeshPaths(env.paths)) {
    // /var/run/wiremesh and /run/wiremesh are one directory where /var/run links to /run.
    const real = join(await realpath(dirname(p)).catch(() => dirname(p)), basename(p));
    if (seen.has(real)) continue;
    seen.add(real);
    const st = await lstat(p).catch(() => null);
    if (!st) continue;
    // An empty mount point (a hostPath in a container, a lab node's private directory)
    // holds nothing of ours and cannot be removed: it is not reported again and again.
    if (st.isDirectory() && mounts.has(p) && (await readdir(p)).length === 0) continue;
    paths.push(p);
  }
  return {
    links,
    routes,
    rules,
    nftTable: await nftTableExists(runner),
    wireguardGo,
    paths,
    agentRunning: await socketAnswers(join(env.paths.runDir, 'agent.sock')),
  };
}

/** Mount points of our mount namespace (field 5 of /proc/self/mountinfo, octal escapes decoded). */
async function mountPoints(proc: string): Promise<Set<string>> {
  const info = await readFile(join(proc, 'self', 'mountinfo'), 'utf8').catch(() => '');
  return new Set(
    info
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((m): m is string => !!m)
      .map((m) => m.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))),
  );
}

function isGone(e: unknown): boolean {
  const text = `${(e as Error).message} ${(e as { stderr?: string }).stderr ?? ''}`;
  return /Cannot find device|does not exist|No such process|No such file or directory|ESRCH|ENOENT/i.test(
    text,
  );
}

async function waitGone(proc: string, pid: number, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 50) {
    if (!existsSync(join(proc, String(pid)))) return true;
    await sleep(50);
  }
  return !existsSync(join(proc, String(pid)));
}

/** Remove a path; a mount point (a hostPath in a container, a lab node's private dir) is emptied. */
async function removePath(path: string): Promise<string> {
  try {
    await rm(path, { recursive: true, force: true });
    return 'removed';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
    for (const entry of await readdir(path))
      await rm(join(path, entry), { recursive: true, force: true });
    await rmdir(path).catch(() => {});
    return existsSync(path) ? 'emptied (a mount point, left in place)' : 'removed';
  }
}

export interface CleanupResult {
  /** One line per thing removed. */
  removed: string[];
  kept: string[];
  /** Things that could not be removed, with the reason. */
  failed: string[];
}

export async function applyCleanup(env: CleanupEnv, plan: CleanupPlan): Promise<CleanupResult> {
  const { runner } = env;
  const proc = env.proc ?? '/proc';
  const removed: string[] = [];
  const failed: string[] = [];
  for (const action of plan.actions) {
    const what = describeAction(action);
    try {
      let note = '';
      switch (action.kind) {
        case 'kill':
          process.kill(action.pid, 'SIGTERM');
          if (!(await waitGone(proc, action.pid, 5000))) {
            process.kill(action.pid, 'SIGKILL');
            note = ' (killed after ignoring SIGTERM)';
            await waitGone(proc, action.pid, 2000);
          }
          break;
        case 'link':
          await runner.run(['ip', 'link', 'del', 'dev', action.name]);
          break;
        case 'route': {
          const r = action.route;
          await runner.run([
            'ip',
            `-${r.family}`,
            'route',
            'del',
            r.dst,
            ...(r.dev ? ['dev', r.dev] : []),
            'table',
            r.table,
            'proto',
            String(r.protocol),
          ]);
          break;
        }
        case 'rule':
          await runner.run([
            'ip',
            `-${action.rule.family}`,
            'rule',
            'del',
            'priority',
            String(action.rule.priority),
            ...(action.rule.table ? ['table', action.rule.table] : []),
          ]);
          break;
        case 'nft-table':
          await runner.run(['nft', 'delete', 'table', NFT_FAMILY, NFT_TABLE]);
          break;
        case 'path': {
          const how = await removePath(action.path);
          if (how !== 'removed') note = ` ${how}`;
          break;
        }
      }
      removed.push(`${what}${note}`);
    } catch (e) {
      // Gone meanwhile (wiremesh.wg goes with its wireguard-go): that is what we wanted.
      if (isGone(e)) removed.push(`${what} (gone already)`);
      else failed.push(`${what}: ${(e as Error).message}`);
    }
  }
  return { removed, kept: plan.kept, failed };
}
