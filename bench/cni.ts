// CNI latency benchmark (cni-latency): the wiremesh plugin (the Go relay in
// /opt/cni/bin and the agent behind its socket) against the reference bridge +
// host-local plugins, on the same lab node, in one run, both driven the same way:
// as a container runtime does it (libcni), by executing each plugin of the
// network's conflist with CNI_COMMAND/CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/
// CNI_PATH/CNI_ARGS in the environment and the plugin's configuration on stdin
// (its conflist entry plus `name` and `cniVersion`, and on DEL the cached result
// as `prevResult`). Each call enters the node's namespaces through nsenter and is
// timed whole, so the nsenter cost is in both subjects.
//
// A round gives every ADD a fresh pod network namespace (made before the clock
// starts), then DELs them all (each DEL timed on its own), then removes the
// namespaces. Rounds run at concurrency 1 (a few ADDs one after another, then
// the DELs) and at concurrency 20 (20 ADDs in flight at once, then 20 DELs), and
// wiremesh and reference rounds alternate (A B, then B A) so drift in machine
// load hits both. Correctness is checked as it goes: every ADD result carries an
// address, the addresses of attachments alive together are distinct, every DEL
// exits 0. Anything but the harness's output goes to stderr, with the floors under
// every call (nsenter + `true`, and VERSION of each plugin, one at a time and 20 at
// once: what the machine needs to start the processes, before any plugin work) and
// the agent's own account of each request. bench/cni-latency.md has a breakdown.
import { existsSync } from 'node:fs';
import { readFile, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { figureOf, median, percentile, type Figure } from './harness.ts';
import { Lab } from '../lab/index.ts';
import { nodePrivateDir } from '../lab/plan.ts';
import { parseCniResultIPs } from '../lab/cni.ts';
import { defaultRunner, systemEnv, type Runner } from '../sys/index.ts';

const BENCH = 'cni-latency';
const CONCURRENCY = 20;
/** ADDs per concurrency-1 round (all alive together, so their addresses must differ). */
const SERIAL_ROUND = 5;
const REF_NETWORK = 'refbridge';
const REF_SUBNET = '100.65.0.0/16';
const DEBIAN_CNI_DIR = '/usr/lib/cni';
const POD_NAMESPACE = 'bench';
const CALL_TIMEOUT_MS = 60_000;

interface Conflist {
  cniVersion: string;
  name: string;
  plugins: ({ type: string } & Record<string, unknown>)[];
}

interface Subject {
  label: 'wiremesh' | 'reference';
  /** CNI_PATH: where plugins are found by their type. */
  cniPath: string;
  conflist: Conflist;
}

interface Attachment {
  containerID: string;
  pod: string;
  netns: string;
  result: Record<string, unknown>;
  ips: string[];
}

interface RoundTimes {
  add: number[];
  del: number[];
  /** Wall time from the first ADD started to the last ADD finished. */
  addWallMs: number;
}

function refConflist(): Conflist {
  return {
    cniVersion: '1.0.0',
    name: REF_NETWORK,
    plugins: [
      {
        type: 'bridge',
        bridge: 'refbr0',
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: REF_SUBNET }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
    ],
  };
}

/** Runs the plugins of one network inside a lab node the way libcni does. */
class CniDriver {
  private readonly node: Runner;
  private readonly host: Runner;
  private seq = 0;

  constructor(node: Runner, host: Runner) {
    this.node = node;
    this.host = host;
  }

  private env(
    s: Subject,
    command: string,
    a: Pick<Attachment, 'containerID' | 'pod' | 'netns'>,
  ): NodeJS.ProcessEnv {
    return {
      PATH: systemEnv().PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: a.containerID,
      CNI_NETNS: `/run/netns/${a.netns}`,
      CNI_IFNAME: 'eth0',
      CNI_PATH: s.cniPath,
      CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${POD_NAMESPACE};K8S_POD_NAME=${a.pod};K8S_POD_INFRA_CONTAINER_ID=${a.containerID}`,
    };
  }

  private pluginConf(
    s: Subject,
    plugin: Conflist['plugins'][number],
    prevResult?: Record<string, unknown>,
  ): string {
    return JSON.stringify({
      ...plugin,
      name: s.conflist.name,
      cniVersion: s.conflist.cniVersion,
      ...(prevResult ? { prevResult } : {}),
    });
  }

  private binary(s: Subject, type: string): string {
    return join(s.cniPath.split(':')[0] ?? '/opt/cni/bin', type);
  }

  /** One plugin execution; a non-zero exit is an error carrying the plugin's CNI error. */
  private async exec(
    s: Subject,
    command: 'ADD' | 'DEL',
    plugin: Conflist['plugins'][number],
    a: Pick<Attachment, 'containerID' | 'pod' | 'netns'>,
    prevResult?: Record<string, unknown>,
  ): Promise<string> {
    const res = await this.node.run([this.binary(s, plugin.type)], {
      input: this.pluginConf(s, plugin, prevResult),
      env: this.env(s, command, a),
      timeoutMs: CALL_TIMEOUT_MS,
      allowFailure: true,
    });
    if (res.code !== 0) {
      throw new Error(
        `${s.label}: ${command} by plugin ${plugin.type} for ${a.pod} exited ${res.code}: ${(res.stdout + res.stderr).trim().slice(0, 500)}`,
      );
    }
    return res.stdout;
  }

  /** ADD through the whole list, each plugin getting the previous one's result. */
  async add(s: Subject, a: Pick<Attachment, 'containerID' | 'pod' | 'netns'>): Promise<Attachment> {
    let prev: Record<string, unknown> | undefined;
    for (const plugin of s.conflist.plugins) {
      const out = await this.exec(s, 'ADD', plugin, a, prev);
      prev = JSON.parse(out) as Record<string, unknown>;
    }
    const result = prev ?? {};
    return { ...a, result, ips: parseCniResultIPs(JSON.stringify(result)) };
  }

  /** DEL through the list in reverse, each plugin getting the cached result as prevResult. */
  async del(s: Subject, a: Attachment): Promise<void> {
    for (const plugin of [...s.conflist.plugins].reverse())
      await this.exec(s, 'DEL', plugin, a, a.result);
  }

  /** A pod sandbox to be: a fresh network namespace on the host (untimed). */
  newPod(labName: string, s: Subject): Pick<Attachment, 'containerID' | 'pod' | 'netns'> {
    const n = this.seq++;
    const tag = s.label === 'wiremesh' ? 'w' : 'r';
    return {
      containerID: randomBytes(32).toString('hex'),
      pod: `bench-${tag}${n}`,
      netns: `wmp-${labName}-${POD_NAMESPACE}-${tag}${n}`,
    };
  }

  async makeNetns(names: readonly string[]): Promise<void> {
    await Promise.all(names.map((n) => this.host.run(['ip', 'netns', 'add', n])));
  }

  async removeNetns(names: readonly string[]): Promise<void> {
    await Promise.all(
      names.map((n) => this.host.run(['ip', 'netns', 'del', n], { allowFailure: true })),
    );
  }
}

function checkAddresses(s: Subject, attachments: readonly Attachment[]): void {
  const seen = new Map<string, string>();
  for (const a of attachments) {
    if (a.ips.length === 0)
      throw new Error(
        `${s.label}: ADD for ${a.pod} returned no address: ${JSON.stringify(a.result)}`,
      );
    for (const ip of a.ips) {
      const other = seen.get(ip);
      if (other)
        throw new Error(`${s.label}: ${ip} given to both ${other} and ${a.pod}, alive together`);
      seen.set(ip, a.pod);
    }
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await fn();
  return [value, performance.now() - start];
}

/** One round: `count` ADDs (`concurrency` 1 or all at once), then their DELs the same way. */
async function round(
  driver: CniDriver,
  labName: string,
  s: Subject,
  count: number,
  parallel: boolean,
): Promise<RoundTimes> {
  const pods = Array.from({ length: count }, () => driver.newPod(labName, s));
  const names = pods.map((p) => p.netns);
  await driver.makeNetns(names);
  try {
    const attachments: Attachment[] = [];
    const add: number[] = [];
    const addStart = performance.now();
    const addOne = async (p: (typeof pods)[number]) => {
      const [a, ms] = await timed(() => driver.add(s, p));
      attachments.push(a);
      add.push(ms);
    };
    if (parallel) await Promise.all(pods.map(addOne));
    else for (const p of pods) await addOne(p);
    const addWallMs = performance.now() - addStart;
    checkAddresses(s, attachments);
    const del: number[] = [];
    const delOne = async (a: Attachment) => {
      const [, ms] = await timed(() => driver.del(s, a));
      del.push(ms);
    };
    if (parallel) await Promise.all(attachments.map(delOne));
    else for (const a of attachments) await delOne(a);
    return { add, del, addWallMs };
  } finally {
    await driver.removeNetns(names);
  }
}

interface Samples {
  add1: number[];
  del1: number[];
  addN: number[];
  delN: number[];
  allocsPerSec: number[];
}

const emptySamples = (): Samples => ({ add1: [], del1: [], addN: [], delN: [], allocsPerSec: [] });

/** The agent's own account of each CNI request: `"msg":"CNI request"` lines, with ms. */
async function agentCniLines(
  log: string,
  from: number,
): Promise<{ lines: { command: string; ms: number }[]; end: number }> {
  const fh = await open(log, 'r');
  try {
    const { size } = await fh.stat();
    const buf = Buffer.alloc(Math.max(0, size - from));
    await fh.read(buf, 0, buf.length, from);
    const lines: { command: string; ms: number }[] = [];
    for (const line of buf.toString().split('\n')) {
      if (!line.includes('"CNI request"')) continue;
      try {
        const rec = JSON.parse(line) as { msg?: string; command?: string; ms?: number };
        if (rec.msg === 'CNI request' && typeof rec.ms === 'number')
          lines.push({ command: rec.command ?? '', ms: rec.ms });
      } catch {
        /* a partial line at the end */
      }
    }
    return { lines, end: size };
  } catch {
    return { lines: [], end: from };
  } finally {
    await fh.close();
  }
}

const fmt = (xs: readonly number[]) =>
  xs.length ? `p50 ${median(xs).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms` : 'n/a';

export async function benchCniLatency(repeats: number): Promise<Figure[]> {
  const say = (line: string) => process.stderr.write(`${BENCH}: ${line}\n`);
  const lab = await Lab.up({
    name: 'cnilat',
    nodes: 1,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
    progress: say,
  });
  try {
    const node = lab.plan.nodes[0];
    if (!node) throw new Error('the lab has no node');
    const confDir = nodePrivateDir(lab.plan, node, '/etc/cni/net.d');
    const wiremesh: Subject = {
      label: 'wiremesh',
      cniPath: '/opt/cni/bin',
      conflist: JSON.parse(
        await readFile(join(confDir, '10-wiremesh.conflist'), 'utf8'),
      ) as Conflist,
    };
    // The reference: Debian's containernetworking-plugins when installed (the
    // node's mount namespace sees the host's /usr), else the lab's own build.
    const debian = existsSync(join(DEBIAN_CNI_DIR, 'bridge'))
      ? await defaultRunner
          .run(['dpkg-query', '-W', '-f', '${Version}', 'containernetworking-plugins'], {
            allowFailure: true,
          })
          .then((r) => (r.code === 0 ? r.stdout.trim() : 'unknown version'))
      : null;
    const reference: Subject = {
      label: 'reference',
      cniPath: debian !== null ? DEBIAN_CNI_DIR : '/opt/cni/bin',
      conflist: refConflist(),
    };
    await writeFile(
      join(confDir, '20-refbridge.conflist'),
      JSON.stringify(reference.conflist, null, 2) + '\n',
    );
    say(
      debian !== null
        ? `reference: Debian containernetworking-plugins ${debian} (${DEBIAN_CNI_DIR}/bridge + host-local)`
        : `reference: the lab's containernetworking/plugins build (/opt/cni/bin/bridge + host-local); 'apt-get install containernetworking-plugins' to use Debian's`,
    );

    const driver = new CniDriver(lab.nodeRunner(node.name), defaultRunner);
    const subjects = [wiremesh, reference];
    // Warm-up, untimed: the agent claims its first IPAM block, the bridge plugin
    // makes refbr0, page caches fill.
    for (const s of subjects) {
      await round(driver, lab.plan.name, s, 2, false);
      await round(driver, lab.plan.name, s, CONCURRENCY, true);
    }

    const agentLog = lab.state.procs.find((p) => p.name === lab.agentProcName(node.name))?.log;
    let logMark = agentLog ? (await agentCniLines(agentLog, 0)).end : 0;
    const agentSide = {
      add1: [] as number[],
      del1: [] as number[],
      addN: [] as number[],
      delN: [] as number[],
    };
    const agentSince = async () => {
      if (!agentLog) return [];
      const { lines, end } = await agentCniLines(agentLog, logMark);
      logMark = end;
      return lines;
    };

    // What every call pays before any plugin work: nsenter + a process in the node,
    // and the relay's round trip to the agent for the cheapest request (VERSION).
    const floor: number[] = [];
    const relayVersion: number[] = [];
    const bridgeVersion: number[] = [];
    // The same, 20 at once: the floor under any ADD at 20 in flight on this machine
    // (20 nsenters and 20 plugin processes competing for the cores).
    const floorN: number[] = [];
    const relayVersionN: number[] = [];
    const bridgeVersionN: number[] = [];
    const atOnce = async (into: number[], call: () => Promise<unknown>) => {
      const times = await Promise.all(
        Array.from({ length: CONCURRENCY }, () => timed(call).then(([, ms]) => ms)),
      );
      into.push(...times);
    };
    const versionCall = (s: Subject) =>
      timed(() =>
        lab.nodeRunner(node.name).run([join(s.cniPath, s.conflist.plugins[0]?.type ?? '')], {
          input: JSON.stringify({ cniVersion: s.conflist.cniVersion }),
          env: { PATH: systemEnv().PATH, CNI_COMMAND: 'VERSION' },
        }),
      );

    const got = { wiremesh: emptySamples(), reference: emptySamples() };
    const started = performance.now();
    for (let i = 0; i < repeats; i++) {
      const order = i % 2 === 0 ? subjects : [...subjects].reverse();
      for (const s of order) {
        const g = got[s.label];
        const r1 = await round(driver, lab.plan.name, s, SERIAL_ROUND, false);
        g.add1.push(...r1.add);
        g.del1.push(...r1.del);
        if (s === wiremesh)
          for (const l of await agentSince()) {
            if (l.command === 'ADD') agentSide.add1.push(l.ms);
            if (l.command === 'DEL') agentSide.del1.push(l.ms);
          }
      }
      for (const s of order) {
        const g = got[s.label];
        const rN = await round(driver, lab.plan.name, s, CONCURRENCY, true);
        g.addN.push(...rN.add);
        g.delN.push(...rN.del);
        g.allocsPerSec.push(CONCURRENCY / (rN.addWallMs / 1000));
        if (s === wiremesh)
          for (const l of await agentSince()) {
            if (l.command === 'ADD') agentSide.addN.push(l.ms);
            if (l.command === 'DEL') agentSide.delN.push(l.ms);
          }
      }
      floor.push((await timed(() => lab.execInNode(node.name, ['true'])))[1]);
      relayVersion.push((await versionCall(wiremesh))[1]);
      bridgeVersion.push((await versionCall(reference))[1]);
      await atOnce(floorN, () => lab.execInNode(node.name, ['true']));
      await atOnce(relayVersionN, () => versionCall(wiremesh));
      await atOnce(bridgeVersionN, () => versionCall(reference));
      say(`repeat ${i + 1}/${repeats} (${((performance.now() - started) / 1000).toFixed(0)} s)`);
    }

    const w = got.wiremesh;
    const r = got.reference;
    say(`nsenter into the node + exec 'true': ${fmt(floor)}`);
    say(
      `VERSION through the wiremesh relay (relay start + agent round trip): ${fmt(relayVersion)}`,
    );
    say(`VERSION of the reference bridge plugin (process start): ${fmt(bridgeVersion)}`);
    say(`${CONCURRENCY} at once: nsenter + 'true' ${fmt(floorN)}`);
    say(`${CONCURRENCY} at once: VERSION through the wiremesh relay ${fmt(relayVersionN)}`);
    say(`${CONCURRENCY} at once: VERSION of the reference bridge plugin ${fmt(bridgeVersionN)}`);
    say(`wiremesh ADD, 1 in flight: end to end ${fmt(w.add1)}; agent-side ${fmt(agentSide.add1)}`);
    say(`wiremesh DEL, 1 in flight: end to end ${fmt(w.del1)}; agent-side ${fmt(agentSide.del1)}`);
    say(
      `wiremesh ADD, ${CONCURRENCY} in flight: end to end ${fmt(w.addN)}; agent-side ${fmt(agentSide.addN)}`,
    );
    say(
      `wiremesh DEL, ${CONCURRENCY} in flight: end to end ${fmt(w.delN)}; agent-side ${fmt(agentSide.delN)}`,
    );

    const p99 = (name: string, a: readonly number[], b: readonly number[]): Figure => ({
      ...figureOf(BENCH, name, 'ms', [percentile(a, 99)], [percentile(b, 99)]),
      repeats: a.length,
    });
    const figures: Figure[] = [];
    for (const [n, add, del, refAdd, refDel] of [
      [1, w.add1, w.del1, r.add1, r.del1],
      [CONCURRENCY, w.addN, w.delN, r.addN, r.delN],
    ] as const) {
      figures.push(
        figureOf(BENCH, `ADD p50, ${n} in flight`, 'ms', add, refAdd),
        p99(`ADD p99, ${n} in flight`, add, refAdd),
        figureOf(BENCH, `DEL p50, ${n} in flight`, 'ms', del, refDel),
        p99(`DEL p99, ${n} in flight`, del, refDel),
      );
    }
    figures.push(
      figureOf(
        BENCH,
        `allocations per second, ${CONCURRENCY} in flight`,
        'ADD/s',
        w.allocsPerSec,
        r.allocsPerSec,
      ),
    );
    return figures;
  } finally {
    await lab.down();
  }
}
