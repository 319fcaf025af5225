// `wiremesh lab ...`: bring a lab cluster up, show it, run commands in it, tear it down.
import { parseArgs } from 'node:util';
import { spawn } from 'node:child_process';
import {
  Lab,
  parseCniChoice,
  connectLabs,
  disconnectLabs,
  validateIpFamily,
  type LabStatus,
} from '../lab/index.ts';
import { defaultRunner, systemEnv } from '../sys/index.ts';
import { LabPhases, ProgressDisplay } from '../lab/progress.ts';
import { renderNodeStatus as renderStatus } from './status.ts';
import { startCapture } from '../kind-tests/probes.ts';
import { Cluster } from '../lab/cluster.ts';
import { allLabNames } from '../lab/registry.ts';
import { realLabDemo, renderClusterStatus, execInRealNode } from './lab-real.ts';

function intFlag(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new Error(`--${name} takes a whole number, not '${value}'`);
  return Number(value);
}

export function renderLabStatus(s: LabStatus): string {
  const lines = [
    `lab ${s.name}: kube-apiserver ${s.apiserver}, underlay ${s.underlay}, CNI ${s.cni}`,
    `kubeconfig: ${s.kubeconfig}`,
    '',
    'NODE'.padEnd(20) + 'UNDERLAY IP'.padEnd(16) + 'NETNS',
    ...s.nodes.map((n) => n.name.padEnd(20) + n.underlayIP.padEnd(16) + n.netns),
  ];
  if (s.pods.length) {
    lines.push('', 'POD'.padEnd(32) + 'NODE'.padEnd(20) + 'IPS');
    for (const p of s.pods)
      lines.push(`${p.namespace}/${p.name}`.padEnd(32) + p.node.padEnd(20) + p.ips.join(','));
  }
  lines.push('', 'PROCESS'.padEnd(24) + 'PID'.padEnd(10) + 'STATE');
  for (const p of s.processes)
    lines.push(
      p.name.padEnd(24) +
        String(p.pid).padEnd(10) +
        (p.running ? 'running' : `exited (log ${p.log})`),
    );
  return lines.join('\n') + '\n';
}

/** Ping every other node's tunnel address from the first node, then show its WireGuard peers. */
async function meshDemo(lab: Lab): Promise<string> {
  const [first, ...others] = lab.plan.nodes;
  if (!first) return '';
  const statusOf = (node: string) => lab.agentStatus(node);
  const lines = ['', `encrypted node-to-node traffic, from ${first.name} through wiremesh.wg:`];
  for (const node of others) {
    const ip = (await statusOf(node.name)).wireguard.tunnelAddress;
    if (!ip) continue;
    const res = await lab.execInNode(first.name, ['ping', '-c', '2', '-i', '0.2', '-W', '2', ip], {
      allowFailure: true,
    });
    const summary = /(\d+) received/.exec(res.stdout)?.[1] ?? '0';
    lines.push(`  ping ${node.name} at ${ip}: ${summary}/2 replies`);
  }
  // The pods' ping first: once it has crossed, the node has planned the other nodes'
  // blocks, so the pools' STATE is known rather than '-' (no remote block yet).
  const pods = await podDemo(lab);
  lines.push('', renderStatus(await statusOf(first.name)), ...pods);
  return lines.join('\n');
}

/**
 * A ping between pods on two nodes, to each of the target's addresses (IPv4, IPv6
 * or both), while the underlay bridge is captured over both families (less the
 * control plane's traffic and IPv6 neighbour discovery).
 */
async function podDemo(lab: Lab): Promise<string[]> {
  const [a, b] = lab.plan.nodes;
  const from = lab.state.pods.find((p) => p.node === a?.name);
  const to = lab.state.pods.find((p) => p.node === b?.name);
  if (!from || !to || !to.ips[0] || lab.state.cni !== 'wiremesh') return [];
  const capture = await startCapture(
    [],
    lab.plan.bridge,
    `(ip or (ip6 and not (icmp6 and ip6[40] >= 130 and ip6[40] <= 143))) and not host ${lab.plan.gatewayIP} and not host ${lab.plan.gatewayIP6}`,
    `/tmp/wiremesh-demo-${process.pid}.pcap`,
  );
  let replies = 0;
  for (const ip of to.ips) {
    const res = await lab.execInPod(from.name, ['ping', '-c', '3', '-i', '0.2', '-W', '2', ip], {
      allowFailure: true,
    });
    replies += Number(/(\d+) received/.exec(res.stdout)?.[1] ?? '0');
  }
  const { lines } = await capture.stop();
  const wireguard = lines.filter((l) => /\.51825[ :].*UDP|UDP.*\.51825/.test(l)).length;
  const podIPs = [...from.ips, ...to.ips];
  const leaked = lines.filter((l) => podIPs.some((ip) => l.includes(ip))).length;
  return [
    `encrypted pod-to-pod traffic: ${from.name} (${from.ips.join(',')}) -> ${to.name} (${to.ips.join(',')}): ${replies}/${3 * to.ips.length} replies`,
    `  underlay capture on ${lab.plan.bridge}: ${lines.length} packets between nodes, ${wireguard} of them WireGuard (UDP 51825), ${leaked} showing a pod address`,
    '',
  ];
}

export async function runLabCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  const dashdash = rest.indexOf('--');
  const flagArgs = dashdash >= 0 ? rest.slice(0, dashdash) : rest;
  const command = dashdash >= 0 ? rest.slice(dashdash + 1) : [];
  const { values, positionals } = parseArgs({
    args: flagArgs,
    allowPositionals: true,
    options: {
      name: { type: 'string', default: 'lab' },
      nodes: { type: 'string' },
      'pods-per-node': { type: 'string' },
      pool: { type: 'string' },
      'ip-family': { type: 'string' },
      subnets: { type: 'string' },
      cni: { type: 'string' },
      output: { type: 'string', short: 'o' },
      'keep-on-failure': { type: 'boolean', default: false },
      process: { type: 'boolean', default: false },
      agents: { type: 'boolean', default: true },
    },
    allowNegative: true,
  });
  const name = values.name;
  const real =
    verb === 'up'
      ? !values.process
      : ['status', 'exec', 'down'].includes(verb ?? '') && Cluster.exists(name);
  if (real) return runRealLabCommand(verb, name, values, positionals, command);
  switch (verb) {
    case 'up': {
      const started = Date.now();
      const display = new ProgressDisplay({
        write: (text: string) => process.stderr.write(text),
        isTTY: process.stderr.isTTY && process.env.TERM !== 'dumb',
      });
      const lab = await Lab.up({
        name,
        nodes: intFlag(values.nodes, 'nodes', 3),
        podsPerNode: intFlag(values['pods-per-node'], 'pods-per-node', 2),
        ...(values.cni ? { cni: parseCniChoice(values.cni) } : {}),
        ...(values.pool ? { pool: values.pool } : {}),
        ...(values['ip-family'] ? { ipFamily: validateIpFamily(values['ip-family']) } : {}),
        ...(values.subnets ? { subnets: intFlag(values.subnets, 'subnets', 1) } : {}),
        keepOnFailure: values['keep-on-failure'],
        agents: values.agents,
        progress: display.write,
      }).catch((e: unknown) => {
        display.close();
        throw e;
      });
      let demo = '';
      if (lab.state.agents) {
        const phases = new LabPhases(display.write, `lab ${name}`);
        phases.start('encryption check: pings through wiremesh.wg, the underlay captured');
        demo = await meshDemo(lab).catch((e: unknown) => {
          display.close();
          throw e;
        });
        phases.done();
      }
      process.stdout.write(renderLabStatus(lab.status()));
      process.stdout.write(demo);
      process.stdout.write(
        `\nlab ${name} is up (${((Date.now() - started) / 1000).toFixed(1)} s).\n` +
          `  kubectl:   KUBECONFIG=${lab.state.kubeconfig} kubectl get nodes -o wide\n` +
          `  a command: ./bin/wiremesh lab exec --name ${name} ${lab.plan.nodes[0]?.name ?? 'NODE'} -- ip addr\n` +
          `  tear down: ./bin/wiremesh lab down --name ${name}\n`,
      );
      return 0;
    }
    case 'status': {
      const lab = await Lab.load(name);
      const status = lab.status();
      if (values.output === 'json') process.stdout.write(JSON.stringify(status, null, 2) + '\n');
      else if (values.output === undefined) process.stdout.write(renderLabStatus(status));
      else throw new Error(`unknown output format '${values.output}': use -o json`);
      return 0;
    }
    case 'exec': {
      const target = positionals[0];
      if (!target || command.length === 0)
        throw new Error('usage: wiremesh lab exec [--name lab] NODE[/POD] -- COMMAND...');
      const lab = await Lab.load(name);
      const [node, pod] = target.split('/');
      let prefix: string[];
      if (pod) {
        const p = lab.pod(pod);
        if (p.node !== lab.node(node ?? '').name)
          throw new Error(`pod ${pod} runs on ${p.node}, not ${node}`);
        prefix = lab.execPrefix({ pod });
      } else {
        prefix = lab.execPrefix({ node: node ?? '' });
      }
      // Keep the caller's working directory (entering a mount namespace resets it to /).
      const [file, ...args] = [
        prefix[0] ?? 'nsenter',
        `--wd=${process.cwd()}`,
        ...prefix.slice(1),
        ...command,
      ];
      return await new Promise<number>((resolve, reject) => {
        // The system's PATH: run from npm, node_modules/.bin would come first and its
        // unrelated `nft` would shadow nftables'.
        const child = spawn(file ?? '', args, { stdio: 'inherit', env: systemEnv() });
        child.on('error', reject);
        child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
      });
    }
    case 'down': {
      const lab = await Lab.load(name).catch(() => undefined);
      if (!lab) {
        process.stderr.write(`lab ${name}: not running, nothing to do\n`);
        return 0;
      }
      await lab.down();
      process.stderr.write(`lab ${name}: removed\n`);
      return 0;
    }
    case 'list': {
      for (const l of await allLabNames()) process.stdout.write(`${l}\n`);
      return 0;
    }
    case 'connect':
    case 'disconnect': {
      const [a, b] = positionals;
      if (!a || !b || positionals.length !== 2)
        throw new Error(`usage: wiremesh lab ${verb} LAB_A LAB_B`);
      const [one, two] = [await Lab.load(a), await Lab.load(b)];
      if (verb === 'disconnect') {
        await disconnectLabs(defaultRunner, one.plan, two.plan);
        process.stderr.write(`labs ${a} and ${b}: disconnected\n`);
        return 0;
      }
      const conn = await connectLabs(defaultRunner, one.plan, two.plan);
      process.stderr.write(
        `labs ${a} and ${b}: underlays connected (${conn.routes.length} node routes, forwarding between ${conn.bridges.join(' and ')} only, table inet ${conn.table}); 'lab down' of either undoes it\n`,
      );
      return 0;
    }
    default:
      throw new Error(
        `unknown lab command '${verb ?? ''}': use up, status, exec, down, list, connect or disconnect`,
      );
  }
}

/** The real-node lab's verbs (the default kind of lab; `--process` picks the other). */
async function runRealLabCommand(
  verb: string | undefined,
  name: string,
  values: {
    nodes?: string;
    'pods-per-node'?: string;
    cni?: string;
    pool?: string;
    'ip-family'?: string;
    subnets?: string;
    output?: string;
    'keep-on-failure'?: boolean;
    agents?: boolean;
  },
  positionals: string[],
  command: string[],
): Promise<number> {
  switch (verb) {
    case 'up': {
      for (const flag of ['cni', 'pool', 'ip-family', 'subnets'] as const)
        if (values[flag] !== undefined)
          throw new Error(`--${flag} is a setting of the process lab: add --process`);
      const started = Date.now();
      const display = new ProgressDisplay({
        write: (text: string) => process.stderr.write(text),
        isTTY: process.stderr.isTTY && process.env.TERM !== 'dumb',
      });
      try {
        const cluster = await Cluster.up({
          name,
          nodes: intFlag(values.nodes, 'nodes', 3),
          install: values.agents !== false,
          keepOnFailure: values['keep-on-failure'] ?? false,
          progress: display.write,
        });
        const demo = await realLabDemo(
          cluster,
          values.agents === false ? 0 : intFlag(values['pods-per-node'], 'pods-per-node', 2),
          display.write,
        );
        display.close();
        process.stdout.write(renderClusterStatus(cluster));
        process.stdout.write(demo + '\n');
        process.stdout.write(
          `\nlab ${name} is up (${((Date.now() - started) / 1000).toFixed(1)} s).\n` +
            `  kubectl:   KUBECONFIG=${cluster.state.kubeconfig} kubectl get pods -A -o wide\n` +
            `  a command: ./bin/wiremesh lab exec --name ${name} ${cluster.plan.nodes[0]?.name ?? 'NODE'} -- ip addr\n` +
            `  tear down: ./bin/wiremesh lab down --name ${name}\n`,
        );
        return 0;
      } catch (e) {
        display.close();
        throw e;
      }
    }
    case 'status': {
      const cluster = await Cluster.load(name);
      if (values.output === 'json')
        process.stdout.write(JSON.stringify(cluster.state, null, 2) + '\n');
      else if (values.output === undefined) process.stdout.write(renderClusterStatus(cluster));
      else throw new Error(`unknown output format '${values.output}': use -o json`);
      return 0;
    }
    case 'exec': {
      const target = positionals[0];
      if (!target || target.includes('/') || command.length === 0)
        throw new Error(
          'usage: wiremesh lab exec [--name lab] NODE -- COMMAND... (a pod of a real-node lab: kubectl exec)',
        );
      return execInRealNode(await Cluster.load(name), target, command);
    }
    case 'down': {
      const problems = await (await Cluster.load(name)).down();
      for (const p of problems) process.stderr.write(`lab ${name}: ${p}\n`);
      process.stderr.write(`lab ${name}: removed\n`);
      return problems.length ? 1 : 0;
    }
    default:
      throw new Error(
        `unknown command '${verb ?? ''}' for a real-node lab: use up, status, exec or down`,
      );
  }
}
