// Uninstall, end to end: a 2-node lab with agents (host encryption on, so policy
// routing exists too) and a pod per node; the agent on one node is stopped, as
// deleting the DaemonSet does, and `wiremesh cleanup --pods` runs inside that node.
// Afterwards nothing of wiremesh is left there (links, routes, rules, the nftables
// table, files, processes), the other node is untouched, and a second run removes
// nothing. What is left is read with plain ip / nft / ls, not with the cleanup's
// own observation code, so a blind spot in it fails this test.
// Lab-only: it stops the lab's agent process and runs cleanup inside a lab node;
// on kind the same steps are deleting the DaemonSet and `kubectl debug` on a node.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Lab } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { eventually } from './probes.ts';
import { netnsPids } from '../lab/nodes.ts';
import { defaultRunner } from '../sys/index.ts';

const CLI_MAIN = new URL('../cli/main.ts', import.meta.url).pathname;

let driver: LabDriver | undefined;
let lab: Lab;

test.before(async () => {
  driver = await LabDriver.fresh({ name: 'uninst', nodes: 2, podsPerNode: 1, agents: true });
  lab = driver.lab;
});

test.after.always(async () => {
  if (driver) await driver.close();
});

function names(): [string, string] {
  const [a, b] = lab.plan.nodes.map((n) => n.name);
  if (!a || !b) throw new Error('need 2 nodes');
  return [a, b];
}

async function sh(node: string, argv: string[]): Promise<string> {
  return (await lab.execInNode(node, argv, { allowFailure: true })).stdout;
}

/** Processes in a node's network namespace, with their command lines. */
async function nodeProcesses(node: string): Promise<{ pid: number; cmdline: string }[]> {
  const pids = await netnsPids(defaultRunner, lab.node(node).netns);
  return pids.flatMap((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      return [{ pid, cmdline: argv.join(' ') }];
    } catch {
      return [];
    }
  });
}

/** Everything of wiremesh found on a node, one line each; [] when none. */
async function wiremeshOnNode(node: string): Promise<string[]> {
  const found: string[] = [];
  const links = JSON.parse((await sh(node, ['ip', '-j', 'link', 'show'])) || '[]') as {
    ifname: string;
  }[];
  for (const l of links)
    if (/^wiremesh\.|^wm[0-9a-f]{11}$|^wmprobe/.test(l.ifname)) found.push(`link ${l.ifname}`);
  for (const family of ['-4', '-6']) {
    for (const proto of ['251', '252', '253']) {
      const routes = (
        await sh(node, ['ip', family, 'route', 'show', 'table', 'all', 'proto', proto])
      ).trim();
      if (routes) found.push(`routes proto ${proto} (${family}): ${routes.replace(/\n/g, '; ')}`);
    }
    for (const rule of (await sh(node, ['ip', family, 'rule', 'show'])).split('\n')) {
      if (/^518[23]:|lookup 5182[56]\b/.test(rule.trim())) found.push(`rule ${rule.trim()}`);
    }
  }
  if (/table inet wiremesh\b/.test(await sh(node, ['nft', 'list', 'tables'])))
    found.push('nftables table inet wiremesh');
  for (const path of [
    '/etc/cni/net.d/10-wiremesh.conflist',
    '/opt/cni/bin/wiremesh',
    '/run/wireguard/wiremesh.wg.sock',
  ]) {
    if ((await lab.execInNode(node, ['test', '-e', path], { allowFailure: true })).code === 0)
      found.push(`file ${path}`);
  }
  // The lab's node directories are mount points: emptied is as good as removed there.
  for (const dir of ['/var/lib/wiremesh', '/run/wiremesh']) {
    const res = await lab.execInNode(node, ['ls', '-A', dir], { allowFailure: true });
    if (res.code === 0 && res.stdout.trim())
      found.push(`files in ${dir}: ${res.stdout.trim().replace(/\n/g, ' ')}`);
  }
  // Node.js names its main thread MainThread: match the command line, not comm.
  for (const p of await nodeProcesses(node)) {
    if (/^\S*\/?wireguard-go /.test(p.cmdline)) found.push(`process wireguard-go (pid ${p.pid})`);
    else if (/cli\/main\.ts agent\b/.test(p.cmdline)) found.push(`process agent (pid ${p.pid})`);
    else if (/^\S*\/wiremesh-[a-z]+/.test(p.cmdline))
      found.push(`process ${p.cmdline.split(' ')[0]} (pid ${p.pid})`);
  }
  return found;
}

async function cleanup(node: string, ...args: string[]) {
  const res = await lab.execInNode(
    node,
    [process.execPath, '--disable-warning=ExperimentalWarning', CLI_MAIN, 'cleanup', ...args],
    { allowFailure: true, timeoutMs: 60_000 },
  );
  return res;
}

test.serial(
  'wiremesh cleanup leaves nothing of wiremesh on a node whose agent is gone',
  async (t) => {
    const [a, b] = names();
    // Host encryption on both nodes: the policy rule and the host route table exist too.
    for (const n of [a, b]) {
      await lab.stopAgent(n);
      await lab.startAgent(n, ['--host-encryption']);
    }
    for (const n of [a, b]) await lab.waitAgentReady(n);
    await eventually(`${a} to have its host-encryption rule and routes`, async () => {
      const rules = await sh(a, ['ip', '-4', 'rule', 'show']);
      const routes = await sh(a, ['ip', 'route', 'show', 'table', 'all', 'proto', '251']);
      return /^5182:/m.test(rules) && routes.includes('table 51825');
    });
    // The policy table, as the agent's network-policy engine keeps it.
    if (!/inet wiremesh/.test(await sh(a, ['nft', 'list', 'tables'])))
      await lab.execInNode(a, ['nft', 'add', 'table', 'inet', 'wiremesh']);

    const before = await wiremeshOnNode(a);
    t.log(`before: ${before.join(' | ')}`);
    for (const want of [
      /^link wiremesh\.wg$/,
      /^link wm[0-9a-f]{11}$/,
      /^routes proto 251/,
      /^routes proto 252/,
      /^rule 5182:/,
      /^nftables table/,
      /^file \/etc\/cni\/net\.d\/10-wiremesh\.conflist$/,
      /^file \/opt\/cni\/bin\/wiremesh$/,
      /^files in \/var\/lib\/wiremesh: .*private\.key/,
      /^process wireguard-go/,
      /^process agent/,
    ])
      t.true(
        before.some((l) => want.test(l)),
        `before cleanup, ${a} has ${want.source} (the test must see it to prove its removal)`,
      );

    // Refused while the agent runs: it would put everything back.
    const refused = await cleanup(a, '--pods');
    t.is(refused.code, 1);
    t.regex(refused.stderr, /agent is still running on this node/);

    await lab.stopAgent(a); // what deleting the DaemonSet does to the node's agent
    const res = await cleanup(a, '--pods', '-o', 'json');
    t.is(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout) as {
      removed: string[];
      kept: string[];
      failed: string[];
    };
    t.log(`removed: ${report.removed.join(' | ')}`);
    t.deepEqual(report.failed, []);
    t.deepEqual(report.kept, []);
    t.true(report.removed.some((l) => /^process wireguard-go \(pid \d+\)/.test(l)));
    t.true(report.removed.includes('nftables table inet wiremesh'));

    t.deepEqual(await wiremeshOnNode(a), [], `nothing of wiremesh is left on ${a}`);

    // The other node is untouched: its agent, wireguard-go and tunnel are still there.
    const other = await wiremeshOnNode(b);
    t.true(other.includes('link wiremesh.wg'), `${b} keeps its tunnel`);
    t.true(
      other.some((l) => l.startsWith('process wireguard-go')),
      `${b} keeps its wireguard-go`,
    );
    await lab.waitAgentReady(b);

    // Idempotent: a second run finds nothing and says so.
    const again = await cleanup(a, '--pods');
    t.is(again.code, 0, again.stderr);
    t.is(again.stdout.trim(), 'nothing of wiremesh on this node');
  },
);

test.serial(
  'without --pods, pod interfaces stay and the report says how to remove them',
  async (t) => {
    const [, b] = names();
    await lab.stopAgent(b);
    const res = await cleanup(b, '-o', 'json');
    t.is(res.code, 0, res.stderr);
    const report = JSON.parse(res.stdout) as { kept: string[]; failed: string[] };
    t.deepEqual(report.failed, []);
    t.regex(report.kept.join('\n'), /1 pod interface\(s\) \(wm[0-9a-f]{11}\).*pass --pods/);
    const left = await wiremeshOnNode(b);
    t.true(left.some((l) => /^link wm[0-9a-f]{11}$/.test(l)));
    t.deepEqual(
      left.filter((l) => !/^link wm[0-9a-f]{11}$|^routes proto 252/.test(l)),
      [],
      'only the pod interfaces and their routes are left',
    );
  },
);
