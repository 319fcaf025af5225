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
// CNI latency benchmark (cni-latency): the wiremesh plugin (the Go relay in
// /opt/cni/bin and the agent behind its socket) against the reference bridge +
// host-local plugins, on the same lab node, in one run, both driven as a container
// runtime drives them. A runtime (containerd, through libcni) runs inside the node
// and forks each plugin of the network's list from a goroutine, with CNI_COMMAND/
// CNI_CONTAINERID/CNI_NETNS/CNI_IFNAME/CNI_PATH/CNI_ARGS in the environment and the
// plugin's configuration on stdin (its list entry plus `name` and `cniVersion`, and
// the previous result, or on DEL the cached result, as `prevResult`). So does
// wiremesh-cnirun (bench/cnirun, a static Go program): it is started once inside
// the lab node, takes one JSON request per line and times each exec itself. Neither
// nsenter nor the Node.js event loop sits between its clock and the plugin; an
// earlier version of this bench started every call from Node through nsenter, and at
// 20 in flight it measured mostly the machine starting 40 processes from one event
// loop (bench/cni-latency.md).
//
// A round gives every ADD a fresh pod network namespace (made on the host before the
// clock starts), then DELs them all, then removes the namespaces. Rounds run at
// concurrency 1 (a few ADDs one after another, then the DELs) and at concurrency 20
// (20 ADDs in flight at once, then 20 DELs), and wiremesh and reference rounds
// alternate (A B, then B A) so drift in machine load hits both. Correctness is
// checked as it goes: every ADD result carries an address, the addresses of
// attachments alive together are distinct, every DEL exits 0. Anything but the
// harness's output goes to stderr: the load average, the floors under every call
// (fork/exec of a trivial static binary and VERSION of each plugin, one at a time
// and 20 at once, from the same driver), the old harness's floor (nsenter from Node,
// 20 at once) for comparison, and the agent's own account of each request.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { figureOf, median, percentile, type Figure } from './harness.ts';
import { Lab } from '../lab/index.ts';
import { nodePrivateDir } from '../lab/plan.ts';
import { parseCniResultIPs } from '../lab/cni.ts';
import { defaultRunner, systemEnv, toolPath, type Runner } from '../sys/index.ts';

const BENCH = 'cni-latency';
const CONCURRENCY = 20;
/** ADDs per concurrency-1 round (all alive together, so their addresses must differ). */
const SERIAL_ROUND = 5;
const REF_NETWORK = 'refbridge';
const REF_SUBNET = '100.65.0.0/16';
const DEBIAN_CNI_DIR = '/usr/lib/cni';
const POD_NAMESPACE = 'bench';
/** The driver's own limit per plugin exec is 60 s; a request waits a little longer. */
const REQUEST_TIMEOUT_MS = 5 * 60_000;

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

interface Pod {
  containerID: string;
  pod: string;
  netns: string;
}

interface Attachment extends Pod {
  result: Record<string, unknown>;
  ips: string[];
}

interface RoundTimes {
  add: number[];
  del: number[];
  /** Wall time from the first ADD started to the last ADD finished (the driver's clock). */
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

/** One item of a driver request: an attachment's whole chain, or one exec. */
interface DriverCall {
  ms: number;
  execs: number[];
  ok: boolean;
  error?: string;
  result?: Record<string, unknown>;
}

interface DriverReply {
  id: number;
  calls?: DriverCall[];
  wallMs: number;
  error?: string;
}

type DriverRequest =
  | {
      op: 'add' | 'del';
      concurrency: number;
      network: { cniPath: string; conflist: Conflist };
      attachments: {
        containerID: string;
        netns: string;
        ifname: string;
        args: string;
        result?: Record<string, unknown>;
      }[];
    }
  | {
      op: 'exec';
      concurrency: number;
      count: number;
      argv: string[];
      env?: Record<string, string>;
      stdin?: string;
    };

/**
 * wiremesh-cnirun, started once inside a lab node (through the lab's exec prefix,
 * which execs it: nsenter is not left between us and it). Requests go one at a time.
 */
class InNodeDriver {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;
  private nextId = 1;
  private stderr = '';
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.child = child;
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    child.stderr.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-4000);
    });
  }

  static async start(prefix: readonly string[]): Promise<InNodeDriver> {
    const binary = toolPath('wiremesh-cnirun');
    if (!existsSync(binary))
      throw new Error(`${binary} is missing: run 'make deps' (hack/build-tools.sh) to build it`);
    const argv = [...prefix, binary];
    // The plugins get the driver's environment plus CNI_*: PATH only, as before.
    const child = spawn(argv[0] ?? '', argv.slice(1), {
      env: { PATH: systemEnv().PATH },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.on('error', () => {});
    const driver = new InNodeDriver(child);
    const first = await driver.readLine().catch(() => undefined);
    if (first !== '{"ready":true}') {
      child.kill('SIGKILL');
      throw new Error(`wiremesh-cnirun did not start: ${first ?? 'no output'} ${driver.stderr}`);
    }
    return driver;
  }

  private async readLine(): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`wiremesh-cnirun: no answer in ${REQUEST_TIMEOUT_MS} ms`)),
        REQUEST_TIMEOUT_MS,
      );
    });
    try {
      const next = await Promise.race([this.lines.next(), timeout]);
      return next.done ? undefined : next.value;
    } finally {
      clearTimeout(timer);
    }
  }

  request(req: DriverRequest): Promise<DriverReply> {
    const run = async (): Promise<DriverReply> => {
      const id = this.nextId++;
      this.child.stdin.write(JSON.stringify({ id, ...req }) + '\n');
      const line = await this.readLine();
      if (line === undefined)
        throw new Error(`wiremesh-cnirun exited (${this.child.exitCode}): ${this.stderr}`);
      const reply = JSON.parse(line) as DriverReply;
      if (reply.error !== undefined || reply.id !== id || !reply.calls)
        throw new Error(`wiremesh-cnirun, request ${id} (${req.op}): ${reply.error ?? line}`);
      return reply;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Close its stdin and wait for it to exit; kill it after a few seconds. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** Runs the plugins of one network through the in-node driver; pod namespaces on the host. */
class CniDriver {
  private readonly driver: InNodeDriver;
  private readonly host: Runner;
  private seq = 0;

  constructor(driver: InNodeDriver, host: Runner) {
    this.driver = driver;
    this.host = host;
  }

  private network(s: Subject) {
    return { cniPath: s.cniPath, conflist: s.conflist };
  }

  private attachment(p: Pod, result?: Record<string, unknown>) {
    return {
      containerID: p.containerID,
      netns: `/run/netns/${p.netns}`,
      ifname: 'eth0',
      args: `IgnoreUnknown=1;K8S_POD_NAMESPACE=${POD_NAMESPACE};K8S_POD_NAME=${p.pod};K8S_POD_INFRA_CONTAINER_ID=${p.containerID}`,
      ...(result ? { result } : {}),
    };
  }

  /** ADD for every pod, `concurrency` in flight; each ADD's time and result. */
  async add(
    s: Subject,
    pods: readonly Pod[],
    concurrency: number,
  ): Promise<{ attachments: Attachment[]; ms: number[]; wallMs: number }> {
    const reply = await this.driver.request({
      op: 'add',
      concurrency,
      network: this.network(s),
      attachments: pods.map((p) => this.attachment(p)),
    });
    const calls = reply.calls ?? [];
    const attachments = pods.map((p, i): Attachment => {
      const c = calls[i];
      if (!c?.ok)
        throw new Error(`${s.label}: ADD for ${p.pod} failed: ${c?.error ?? 'no answer'}`);
      const result = c.result ?? {};
      return { ...p, result, ips: parseCniResultIPs(JSON.stringify(result)) };
    });
    return { attachments, ms: calls.map((c) => c.ms), wallMs: reply.wallMs };
  }

  /** DEL for every attachment (the cached result as prevResult), `concurrency` in flight. */
  async del(
    s: Subject,
    attachments: readonly Attachment[],
    concurrency: number,
  ): Promise<number[]> {
    const reply = await this.driver.request({
      op: 'del',
      concurrency,
      network: this.network(s),
      attachments: attachments.map((a) => this.attachment(a, a.result)),
    });
    const calls = reply.calls ?? [];
    attachments.forEach((a, i) => {
      const c = calls[i];
      if (!c?.ok)
        throw new Error(`${s.label}: DEL for ${a.pod} failed: ${c?.error ?? 'no answer'}`);
    });
    return calls.map((c) => c.ms);
  }

  /** `count` execs of argv, `concurrency` at once: the floors. */
  async exec(
    argv: string[],
    count: number,
    concurrency: number,
    extra: { env?: Record<string, string>; stdin?: string } = {},
  ): Promise<number[]> {
    const reply = await this.driver.request({ op: 'exec', concurrency, count, argv, ...extra });
    const calls = reply.calls ?? [];
    const bad = calls.find((c) => !c.ok);
    if (bad) throw new Error(`${argv.join(' ')} failed: ${bad.error ?? ''}`);
    return calls.map((c) => c.ms);
  }

  /** A pod sandbox to be: a fresh network namespace on the host (untimed). */
  newPod(labName: string, s: Subject): Pod {
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

/** One round: `count` ADDs (one at a time, or all in flight at once), then their DELs alike. */
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
    const concurrency = parallel ? count : 1;
    const added = await driver.add(s, pods, concurrency);
    checkAddresses(s, added.attachments);
    const del = await driver.del(s, added.attachments, concurrency);
    return { add: added.ms, del, addWallMs: added.wallMs };
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

/** The 1-, 5- and 15-minute load averages: other engineers share these cores. */
async function loadAverage(): Promise<string> {
  return (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
}

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
  let inNode: InNodeDriver | undefined;
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

    inNode = await InNodeDriver.start(lab.execPrefix({ node: node.name }));
    const driver = new CniDriver(inNode, defaultRunner);
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

    // The floors, from the same driver: what a runtime pays to fork/exec a trivial
    // static binary (the driver itself, `true`: a Go program like the plugins), and
    // VERSION of each plugin (process start; for the relay, plus its round trip to
    // the agent), one at a time and 20 at once.
    const staticTrue = [toolPath('wiremesh-cnirun'), 'true'];
    const version = (s: Subject) => ({
      argv: [join(s.cniPath, s.conflist.plugins[0]?.type ?? '')],
      extra: {
        env: { CNI_COMMAND: 'VERSION' },
        stdin: JSON.stringify({ cniVersion: s.conflist.cniVersion }),
      },
    });
    const floors = {
      true1: [] as number[],
      trueN: [] as number[],
      relay1: [] as number[],
      relayN: [] as number[],
      bridge1: [] as number[],
      bridgeN: [] as number[],
      // The old harness's floor: nsenter into the node + `true`, 20 at once from Node.
      nsenterN: [] as number[],
    };
    const loads: string[] = [await loadAverage()];

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
      floors.true1.push(...(await driver.exec(staticTrue, SERIAL_ROUND, 1)));
      floors.trueN.push(...(await driver.exec(staticTrue, CONCURRENCY, CONCURRENCY)));
      const rv = version(wiremesh);
      const bv = version(reference);
      floors.relay1.push(...(await driver.exec(rv.argv, SERIAL_ROUND, 1, rv.extra)));
      floors.relayN.push(...(await driver.exec(rv.argv, CONCURRENCY, CONCURRENCY, rv.extra)));
      floors.bridge1.push(...(await driver.exec(bv.argv, SERIAL_ROUND, 1, bv.extra)));
      floors.bridgeN.push(...(await driver.exec(bv.argv, CONCURRENCY, CONCURRENCY, bv.extra)));
      floors.nsenterN.push(
        ...(await Promise.all(
          Array.from({ length: CONCURRENCY }, () =>
            timed(() => lab.execInNode(node.name, ['true'])).then(([, ms]) => ms),
          ),
        )),
      );
      loads.push(await loadAverage());
      say(
        `repeat ${i + 1}/${repeats} (${((performance.now() - started) / 1000).toFixed(0)} s, load ${loads.at(-1)})`,
      );
    }

    const w = got.wiremesh;
    const r = got.reference;
    say(`load average (1, 5, 15 min) at start and after each repeat: ${loads.join(' | ')}`);
    say(
      `floor: exec of a static binary ('wiremesh-cnirun true'), 1 at a time: ${fmt(floors.true1)}`,
    );
    say(`floor: exec of a static binary, ${CONCURRENCY} at once: ${fmt(floors.trueN)}`);
    say(
      `VERSION through the wiremesh relay (relay start + agent round trip), 1 at a time: ${fmt(floors.relay1)}`,
    );
    say(`VERSION through the wiremesh relay, ${CONCURRENCY} at once: ${fmt(floors.relayN)}`);
    say(
      `VERSION of the reference bridge plugin (process start), 1 at a time: ${fmt(floors.bridge1)}`,
    );
    say(`VERSION of the reference bridge plugin, ${CONCURRENCY} at once: ${fmt(floors.bridgeN)}`);
    say(
      `the old harness's floor, nsenter into the node + 'true' from Node.js, ${CONCURRENCY} at once: ${fmt(floors.nsenterN)}`,
    );
    say(
      `wiremesh ADD, 1 in flight: runtime-seen ${fmt(w.add1)}; agent-side ${fmt(agentSide.add1)}`,
    );
    say(
      `wiremesh DEL, 1 in flight: runtime-seen ${fmt(w.del1)}; agent-side ${fmt(agentSide.del1)}`,
    );
    say(
      `wiremesh ADD, ${CONCURRENCY} in flight: runtime-seen ${fmt(w.addN)}; agent-side ${fmt(agentSide.addN)}`,
    );
    say(
      `wiremesh DEL, ${CONCURRENCY} in flight: runtime-seen ${fmt(w.delN)}; agent-side ${fmt(agentSide.delN)}`,
    );
    say(`reference ADD: 1 in flight ${fmt(r.add1)}; ${CONCURRENCY} in flight ${fmt(r.addN)}`);
    say(`reference DEL: 1 in flight ${fmt(r.del1)}; ${CONCURRENCY} in flight ${fmt(r.delN)}`);

    const p99 = (name: string, a: readonly number[], b?: readonly number[]): Figure => ({
      ...figureOf(BENCH, name, 'ms', [percentile(a, 99)], b ? [percentile(b, 99)] : undefined),
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
      // The floor under every call, for reading the p99s: no plugin can do better.
      figureOf(BENCH, 'floor: exec of a static binary p50, 1 in flight', 'ms', floors.true1),
      p99(`floor: exec of a static binary p99, ${CONCURRENCY} in flight`, floors.trueN),
    );
    return figures;
  } finally {
    await inNode?.stop();
    await lab.down();
  }
}
