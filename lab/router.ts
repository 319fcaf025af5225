// The top-of-rack router of a lab of two subnets: a network namespace on the lab's
// bridge with an address on each /25, forwarding between them, and a BIRD 2 of its
// own (AS LAB_ROUTER_AS) peering over eBGP with every node, as a data centre's router
// peers with Calico's nodes. It installs what it learns into its kernel, so pod
// addresses are routed natively between the subnets. The nodes' side is the agents'
// business (a BGPPeer object per subnet); this file only plays the router.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Runner } from '../sys/index.ts';
import type { LabPlan, NodePlan, RouterPlan } from './plan.ts';
import { startDaemon, type ProcRecord } from './procs.ts';

/** The router's BIRD configuration: a session with every node, everything learned installed. */
export function routerBirdConfig(
  router: RouterPlan,
  nodes: readonly NodePlan[],
  nodeAS: number,
): string {
  const [low] = router.addresses.map((a) => a.split('/')[0] ?? '');
  const lines = [
    `router id ${low};`,
    'protocol device { scan time 2; }',
    // Learned pod blocks into the kernel; nothing of the kernel's goes out.
    'protocol kernel {',
    '  ipv4 { import none; export where source = RTS_BGP; };',
    '  merge paths on;',
    '}',
    'template bgp wm_node {',
    `  local as ${router.asNumber};`,
    '  hold time 9; keepalive time 3; connect retry time 5;',
    // The nodes share one AS: what one node announced goes to the others with the
    // router as next hop. Said outright: both /25s are on the router's one interface,
    // so BIRD would otherwise pass on a node's own address as a third-party next hop
    // to nodes of the other subnet, where it is not on-link and the route is dropped.
    '  ipv4 { import filter { if net.len > 0 then accept; reject; }; export where source = RTS_BGP; next hop self; };',
    '}',
  ];
  for (const n of nodes) {
    // The router's address on the node's own subnet: the node's BGPPeer names it.
    const local = n.crossSubnet?.via ?? low;
    lines.push(
      `protocol bgp ${n.name.replace(/[^A-Za-z0-9]/g, '_')} from wm_node {`,
      `  local ${local} as ${router.asNumber};`,
      `  neighbor ${n.underlayIP} as ${nodeAS};`,
      '}',
    );
  }
  return `${lines.join('\n')}\n`;
}

export interface RunningRouter {
  proc: ProcRecord;
  socket: string;
}

/** Creates the router's namespace on the bridge and starts its BIRD. */
export async function startRouter(
  runner: Runner,
  plan: LabPlan,
  nodeAS: number,
  logDir: string,
): Promise<RunningRouter> {
  const router = plan.router;
  if (!router) throw new Error(`lab ${plan.name} has one subnet: no router`);
  const inRouter = (argv: string[]) => runner.run(['ip', 'netns', 'exec', router.netns, ...argv]);
  await runner.run(['ip', 'netns', 'add', router.netns]);
  await runner.run([
    'ip',
    'link',
    'add',
    router.hostVeth,
    'type',
    'veth',
    'peer',
    'name',
    'eth0',
    'netns',
    router.netns,
  ]);
  await runner.run(['ip', 'link', 'set', router.hostVeth, 'master', plan.bridge, 'up']);
  await inRouter(['ip', 'link', 'set', 'lo', 'up']);
  for (const a of router.addresses) await inRouter(['ip', 'addr', 'add', a, 'dev', 'eth0']);
  await inRouter(['ip', 'link', 'set', 'eth0', 'up']);
  await inRouter(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  // Between the two /25s on one link the kernel would tell the nodes to go direct.
  await inRouter(['sysctl', '-qw', 'net.ipv4.conf.all.send_redirects=0']);
  await inRouter(['sysctl', '-qw', 'net.ipv4.conf.eth0.send_redirects=0']);

  const dir = join(plan.runDir, 'router');
  await mkdir(dir, { recursive: true });
  const config = join(dir, 'bird.conf');
  const socket = join(dir, 'bird.ctl');
  await writeFile(config, routerBirdConfig(router, plan.nodes, nodeAS));
  const proc = startDaemon(
    'router-bird',
    ['ip', 'netns', 'exec', router.netns, 'bird', '-f', '-c', config, '-s', socket],
    join(logDir, 'router-bird.log'),
  );
  return { proc, socket };
}

/** The router's kernel routes (its table as `ip -j route` lists it). */
export async function routerRoutes(
  runner: Runner,
  router: RouterPlan,
): Promise<{ dst: string; gateway?: string; protocol?: string }[]> {
  const res = await runner.run(['ip', 'netns', 'exec', router.netns, 'ip', '-j', 'route']);
  return JSON.parse(res.stdout || '[]') as { dst: string; gateway?: string; protocol?: string }[];
}
