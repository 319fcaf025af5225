// Two labs side by side (multi-cluster tests): `lab connect A B` lets the nodes of
// lab A reach the underlay of lab B and back, and nothing else.
//
// Each lab keeps its own bridge and /24 (lab/plan.ts), so neither lab's address plan
// or nodes change. The host routes between the two bridges only:
// - each node gets one route, to the other lab's /24 via its own bridge's gateway
//   (the host); nodes still have no default route;
// - IPv4 forwarding is switched on for the two bridges alone
//   (net.ipv4.conf.<bridge>.forwarding; the host's ip_forward stays as it is), so
//   only packets arriving on them are forwarded;
// - an nftables table of its own (inet wml-connect-A-B, forward hook) accepts
//   bridge A <-> bridge B and drops every other forwarded packet that enters or
//   leaves either bridge, so no packet of a lab reaches anything outside the labs,
//   even if something in a node adds a default route.
// A lab connects to one other lab at a time. The connection is recorded in both
// labs' run directories; `disconnectLabs` undoes all of it, and `Lab.down` calls it.
import { readFile, writeFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Runner } from '../sys/index.ts';
import { planLab, type LabPlan } from './plan.ts';

const RECORD = 'connected-to.json';

interface ConnectionRecord {
  name: string;
  index: number;
  nodeCount: number;
}

export interface UnderlayConnection {
  /** nftables table (family inet) that owns the forwarding rules. */
  table: string;
  bridges: [string, string];
  /** Routes to add in node namespaces: `ip route replace dst via gateway dev eth0`. */
  routes: { netns: string; dst: string; via: string }[];
  /** The ruleset, for `nft -f -`. */
  ruleset: string;
}

const underlayOf = (p: LabPlan) => `${p.gatewayIP.replace(/\.1$/, '.0')}/${p.prefixLength}`;

/** What connecting two labs means, as data (no I/O). */
export function planUnderlayConnection(one: LabPlan, two: LabPlan): UnderlayConnection {
  if (one.name === two.name) throw new Error(`cannot connect lab ${one.name} to itself`);
  const [a, b] = one.name < two.name ? [one, two] : [two, one];
  const table = `wml-connect-${a.name}-${b.name}`;
  const routes = [
    ...a.nodes.map((n) => ({ netns: n.netns, dst: underlayOf(b), via: a.gatewayIP })),
    ...b.nodes.map((n) => ({ netns: n.netns, dst: underlayOf(a), via: b.gatewayIP })),
  ];
  const ruleset = [
    `table inet ${table} {`,
    '  chain forward {',
    '    type filter hook forward priority filter - 10; policy accept;',
    `    iifname "${a.bridge}" oifname "${b.bridge}" ip saddr ${underlayOf(a)} ip daddr ${underlayOf(b)} accept`,
    `    iifname "${b.bridge}" oifname "${a.bridge}" ip saddr ${underlayOf(b)} ip daddr ${underlayOf(a)} accept`,
    // With br_netfilter (bridge-nf-call-iptables=1) packets bridged inside one lab
    // pass this hook too, as iif = oif = its bridge: they stay in the lab.
    `    iifname "${a.bridge}" oifname "${a.bridge}" accept`,
    `    iifname "${b.bridge}" oifname "${b.bridge}" accept`,
    `    iifname { "${a.bridge}", "${b.bridge}" } drop`,
    `    oifname { "${a.bridge}", "${b.bridge}" } drop`,
    '  }',
    '}',
    '',
  ].join('\n');
  return { table, bridges: [a.bridge, b.bridge], routes, ruleset };
}

async function readRecord(plan: LabPlan): Promise<ConnectionRecord | null> {
  try {
    return JSON.parse(await readFile(join(plan.runDir, RECORD), 'utf8')) as ConnectionRecord;
  } catch {
    return null;
  }
}

const recordOf = (p: LabPlan): ConnectionRecord => ({
  name: p.name,
  index: p.index,
  nodeCount: p.nodes.length,
});

async function setForwarding(runner: Runner, bridge: string, on: boolean): Promise<void> {
  if (!existsSync(`/proc/sys/net/ipv4/conf/${bridge}`)) return;
  await runner.run(['sysctl', '-qw', `net.ipv4.conf.${bridge}.forwarding=${on ? 1 : 0}`]);
}

/** Connect two running labs' underlays (idempotent). */
export async function connectLabs(
  runner: Runner,
  one: LabPlan,
  two: LabPlan,
): Promise<UnderlayConnection> {
  for (const [p, other] of [
    [one, two],
    [two, one],
  ] as const) {
    const existing = await readRecord(p);
    if (existing && existing.name !== other.name) {
      throw new Error(
        `lab ${p.name} is already connected to lab ${existing.name}; run 'wiremesh lab disconnect ${p.name} ${existing.name}' first`,
      );
    }
    if (!existsSync(`/proc/sys/net/ipv4/conf/${p.bridge}`))
      throw new Error(`lab ${p.name} has no bridge ${p.bridge}: is it up?`);
  }
  const conn = planUnderlayConnection(one, two);
  // Record first, so a failure half-way is still undone by disconnect or down.
  await writeFile(join(one.runDir, RECORD), JSON.stringify(recordOf(two)));
  await writeFile(join(two.runDir, RECORD), JSON.stringify(recordOf(one)));
  await runner.run(['nft', 'delete', 'table', 'inet', conn.table], { allowFailure: true });
  await runner.run(['nft', '-f', '-'], { input: conn.ruleset });
  for (const bridge of conn.bridges) await setForwarding(runner, bridge, true);
  for (const r of conn.routes) {
    await runner.run([
      'nsenter',
      `--net=/run/netns/${r.netns}`,
      '--',
      'ip',
      'route',
      'replace',
      r.dst,
      'via',
      r.via,
      'dev',
      'eth0',
    ]);
  }
  return conn;
}

/** Undo connectLabs: routes, forwarding, the table and the records. Safe on a half-removed lab and twice. */
export async function disconnectLabs(runner: Runner, one: LabPlan, two: LabPlan): Promise<void> {
  const conn = planUnderlayConnection(one, two);
  for (const r of conn.routes) {
    if (!existsSync(`/run/netns/${r.netns}`)) continue;
    await runner.run(
      ['nsenter', `--net=/run/netns/${r.netns}`, '--', 'ip', 'route', 'del', r.dst, 'via', r.via],
      { allowFailure: true },
    );
  }
  for (const bridge of conn.bridges) await setForwarding(runner, bridge, false);
  await runner.run(['nft', 'delete', 'table', 'inet', conn.table], { allowFailure: true });
  for (const p of [one, two]) {
    const rec = await readRecord(p);
    if (rec && rec.name === (p === one ? two : one).name)
      await rm(join(p.runDir, RECORD), { force: true });
  }
}

/** For `Lab.down`: undo this lab's connection, if it has one. */
export async function disconnectLab(runner: Runner, plan: LabPlan): Promise<void> {
  const rec = await readRecord(plan);
  if (!rec) return;
  await disconnectLabs(runner, plan, planLab(rec.name, rec.index, rec.nodeCount));
}
