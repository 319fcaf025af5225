// For bgp/bird.netns.test.ts: the namespaces, wiring, BIRD daemons, plans and polling
// the kernel-tier test needs, and the hand-written configuration of its top-of-rack
// router. The router is not a wiremesh node, so it gets no BirdPlan: it speaks eBGP
// (AS 65000) to every node, passes every route on (next hop self, as eBGP does),
// installs the nodes' blocks so it forwards between the subnets, and announces four
// prefixes of its own the nodes must treat differently: one inside the plaintext pool
// (to be installed) and three never to be (an encrypted pool's, a default route and
// a node subnet). Everything started here is ended by cleanup(), by its own handle.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultRunner as runner, systemEnv } from '../sys/index.ts';
import { BirdDaemon } from './daemon.ts';
import type { BgpNeighbor, BirdPlan } from './plan.ts';

export const BIRD = '/usr/sbin/bird';
export const BIRDC = '/usr/sbin/birdc';

export interface Node {
  name: string;
  netns: string;
  /** Underlay address, also the BGP source address and router id. */
  ip: string;
  /** The router's address on this node's subnet, if it has one. */
  gw?: string;
  block: string;
  /** An address of the block, on the node's lo. */
  podIP: string;
}

export interface KernelRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
}

export const ROUTER_ANNOUNCES = [
  '10.250.200.0/24',
  '10.250.201.0/24',
  '10.251.0.0/24',
  '0.0.0.0/0',
  '198.18.252.128/25',
];

export function routerConfig(routerId: string, nodes: Node[]): string {
  return [
    'log stderr all;',
    `router id ${routerId};`,
    'protocol device {}',
    'protocol kernel { ipv4 { import none; export where source = RTS_BGP; }; }',
    'protocol static {',
    '  ipv4;',
    ...ROUTER_ANNOUNCES.map((p) => `  route ${p} blackhole;`),
    '}',
    'template bgp node {',
    '  local as 65000;',
    '  graceful restart off;',
    '  hold time 9; keepalive time 3; connect retry time 2;',
    '  ipv4 { import all; export all; };',
    '}',
    ...nodes.map((n) => `protocol bgp node_${n.name} from node { neighbor ${n.ip} as 64512; }`),
    '',
  ].join('\n');
}

export const METRIC = 1024;

/** A test node's plan: its block in the 10.250.0.0/16 pool, fast timers. */
export function plan(n: Node, neighbors: BgpNeighbor[], extra: Partial<BirdPlan> = {}): BirdPlan {
  return {
    routerId: n.ip,
    localAS: 64512,
    localAddress: n.ip,
    announce: [n.block],
    accept: ['10.250.0.0/16'],
    neverAccept: ['10.251.0.0/16'],
    neighbors,
    kernelMetric: METRIC,
    holdTime: 9,
    keepaliveTime: 3,
    connectRetryTime: 2,
    errorWaitTime: [1, 10],
    ...extra,
  };
}
export const tor = (gw = ''): BgpNeighbor => ({
  name: 'tor',
  address: gw,
  as: 65000,
  role: 'external',
});
export const peer = (n: Node, role: BgpNeighbor['role'] = 'mesh'): BgpNeighbor => ({
  name: `node_${n.name}`,
  address: n.ip,
  as: 64512,
  role,
});

export class Lab {
  dir = '';
  readonly logs: string[] = [];
  private readonly namespaces: string[] = [];
  private readonly daemons = new Map<string, BirdDaemon>();
  private readonly routers: ChildProcess[] = [];

  /** Creates the namespaces (refusing ones that exist) and a scratch directory. */
  async setUp(prefix: string, namespaces: string[]): Promise<void> {
    for (const ns of namespaces) {
      if (existsSync(`/run/netns/${ns}`)) throw new Error(`netns ${ns} already exists`);
    }
    this.dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
    for (const ns of namespaces) {
      await runner.run(['ip', 'netns', 'add', ns]);
      this.namespaces.push(ns);
      await this.exec(ns, ['ip', 'link', 'set', 'lo', 'up']);
    }
  }

  exec(netns: string, argv: string[], allowFailure = false) {
    return runner.run(['ip', 'netns', 'exec', netns, ...argv], { allowFailure });
  }

  /** A veth between two namespaces, up on both ends. */
  async wire(ns1: string, if1: string, ns2: string, if2: string): Promise<void> {
    await runner.run(
      ['ip', '-n', ns1, 'link', 'add', if1, 'type', 'veth'].concat([
        'peer',
        'name',
        if2,
        'netns',
        ns2,
      ]),
    );
    await this.exec(ns1, ['ip', 'link', 'set', if1, 'up']);
    await this.exec(ns2, ['ip', 'link', 'set', if2, 'up']);
  }

  /** Starts a hand-configured BIRD (the router) in a namespace. */
  async startRouter(netns: string, config: string): Promise<void> {
    const conf = join(this.dir, `${netns}.conf`);
    await writeFile(conf, config);
    const argv = [
      'ip',
      'netns',
      'exec',
      netns,
      BIRD,
      '-f',
      '-c',
      conf,
      '-s',
      join(this.dir, `${netns}.ctl`),
    ];
    const child = spawn(argv[0] ?? 'ip', argv.slice(1), {
      env: systemEnv(),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (b: Buffer) => this.logs.push(`router: ${b.toString().trim()}`));
    this.routers.push(child);
  }

  /** The node's BirdDaemon, made on first use, its files in the scratch directory. */
  daemon(node: Node): BirdDaemon {
    let d = this.daemons.get(node.name);
    if (!d) {
      d = new BirdDaemon({
        configPath: join(this.dir, `${node.name}.conf`),
        socketPath: join(this.dir, `${node.name}.ctl`),
        pidPath: join(this.dir, `${node.name}.pid`),
        netns: node.netns,
        log: (l) => this.logs.push(`${node.name}: ${l}`),
      });
      this.daemons.set(node.name, d);
    }
    return d;
  }

  /** The routes BIRD installed in the node's main table (proto bird). */
  async birdRoutes(node: Node): Promise<KernelRoute[]> {
    const res = await runner.run([
      'ip',
      '-4',
      '-j',
      '-n',
      node.netns,
      'route',
      'show',
      'proto',
      'bird',
    ]);
    return JSON.parse(res.stdout || '[]') as KernelRoute[];
  }

  async established(node: Node, count: number): Promise<true | undefined> {
    const s = await this.daemon(node).sessions();
    return s.length === count && s.every((p) => p.info === 'Established') ? true : undefined;
  }

  /** Polls until probe returns something, or fails naming what and BIRD's recent log. */
  async waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${ms} ms waiting for ${what}\n${this.logs.slice(-30).join('\n')}`,
        );
      await sleep(100);
    }
  }

  async cleanup(): Promise<void> {
    for (const d of this.daemons.values()) await d.stop().catch(() => {});
    for (const child of this.routers) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    for (const ns of this.namespaces) {
      if (existsSync(`/run/netns/${ns}`))
        await runner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
    }
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
