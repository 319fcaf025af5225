// `wiremesh agent`, `wiremesh status`, `wiremesh rotate-key`, `wiremesh plan`.
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import type { Server } from 'node:http';
import type { V1Node } from '@kubernetes/client-node';
import { kubeClient } from '../kube/index.ts';
import {
  Agent,
  defaultAgentConfig,
  serveAgentApi,
  callAgent,
  jsonLogger,
  meshNodeFromK8s,
  planMesh,
  ANNOTATION_PUBLIC_KEY,
  type AgentConfig,
  type Logger,
} from '../agent/index.ts';
import { parsePublicKey } from '../crypto/index.ts';
import { ipamBlockFromK8s, IPAM_GROUP, IPAM_VERSION, IPAMBLOCK_PLURAL } from '../ipam/index.ts';
import {
  SETTING_KEYS,
  dirSource,
  flagSource,
  readSettingsDir,
  resolveAgentSettings,
  parseListenAddress,
  type LogLevel,
} from '../install/settings.ts';

const DEFAULT_SOCKET = '/run/wiremesh/agent.sock';

/**
 * The agent's options from its flags and, with --config-dir, the settings directory
 * (the mounted wiremesh-config ConfigMap): defaults < settings < flags.
 */
export async function agentOptions(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ config: AgentConfig; logLevel: LogLevel; metricsAddress: string | null }> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'node-name': { type: 'string', default: env.NODE_NAME },
      kubeconfig: { type: 'string', default: env.KUBECONFIG },
      'config-dir': { type: 'string' },
      'state-dir': { type: 'string', default: '/var/lib/wiremesh' },
      'run-dir': { type: 'string', default: '/run/wiremesh' },
      'wireguard-go': { type: 'string', default: env.WIREMESH_WIREGUARD_GO },
      // The settings: no defaults here, so an absent flag leaves the config's value.
      'listen-port': { type: 'string' },
      'tunnel-cidr': { type: 'string' },
      resync: { type: 'string' },
      wireguard: { type: 'string' },
      'key-rotation-period': { type: 'string' },
      'log-level': { type: 'string' },
      'host-encryption': { type: 'boolean' },
      'metrics-address': { type: 'string' },
    },
  });
  const nodeName = values['node-name'];
  if (!nodeName) throw new Error('the agent needs --node-name (or NODE_NAME)');
  const dir = values['config-dir'];
  const flags: Record<string, string | boolean | undefined> = {};
  for (const key of SETTING_KEYS) flags[key] = values[key];
  const settings = resolveAgentSettings([
    ...(dir ? [dirSource(dir, await readSettingsDir(dir))] : []),
    flagSource(flags),
  ]);
  const { logLevel, metricsAddress, ...agentSettings } = settings;
  const config: AgentConfig = {
    ...defaultAgentConfig(nodeName),
    ...agentSettings,
    kubeconfig: values.kubeconfig,
    stateDir: values['state-dir'],
    runDir: values['run-dir'],
    wireguardGo: values['wireguard-go'],
  };
  return { config, logLevel, metricsAddress };
}

export async function runAgent(argv: string[]): Promise<number> {
  const { config, logLevel, metricsAddress } = await agentOptions(argv);
  const log = jsonLogger({ node: config.nodeName }, logLevel);
  const agent = new Agent(config, log);
  const server = await serveAgentApi(agent, `${config.runDir}/agent.sock`);
  // Observing starts before the agent, so its first passes and CNI requests count;
  // the metrics module (and prom-client) loads only when metrics are on.
  const metrics = metricsAddress === null ? null : await startMetrics(agent, metricsAddress, log);
  await agent.start();
  log.info('agent running', { socket: `${config.runDir}/agent.sock`, metrics: metricsAddress });
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      log.info('stopping; the dataplane stays in place', { signal: sig });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  server.close();
  metrics?.close();
  await agent.stop();
  return 0;
}

/**
 * Observe the agent and serve /metrics. A port that cannot be bound (taken by
 * another host-network process) is logged and retried every 10 s: the node's pod
 * networking matters more than its metrics, so the agent runs on without them.
 */
async function startMetrics(
  agent: Agent,
  address: string,
  log: Logger,
): Promise<{ close: () => void }> {
  const { observeAgent, serveMetrics } = await import('../agent/metrics.ts');
  const listen = parseListenAddress(address);
  if (!listen) throw new Error(`metrics-address '${address}' is not an address`);
  const observed = observeAgent(agent);
  let http: Server | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  const serve = async () => {
    try {
      http = await serveMetrics(observed.metrics, listen, log);
      log.info('serving metrics', { address });
    } catch (e) {
      log.error('metrics endpoint unavailable; retrying in 10 s', {
        error: (e as Error).message,
      });
      if (!closed) retry = setTimeout(() => void serve(), 10_000);
    }
  };
  await serve();
  return {
    close: () => {
      closed = true;
      if (retry) clearTimeout(retry);
      http?.close();
      observed.close();
    },
  };
}

export async function runRotateKey(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { socket: { type: 'string', default: DEFAULT_SOCKET } },
  });
  const res = (await callAgent(values.socket, 'POST', '/rotate-key')) as { publicKey: string };
  process.stdout.write(`new public key ${res.publicKey}; peers follow through the node watch\n`);
  return 0;
}

/**
 * `wiremesh plan --node NAME`: the WireGuard mesh the agent on NAME would program (peers,
 * AllowedIPs from the IPAM blocks, routes), from the API alone, through the agent's own
 * planner. Per-pool paths, policy and remote clusters need the node's kernel and are
 * in `wiremesh status` on the node.
 */
export async function runPlan(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      node: { type: 'string' },
      kubeconfig: { type: 'string', default: process.env.KUBECONFIG },
      'tunnel-cidr': { type: 'string' },
      'host-mtu': { type: 'string', default: '1500' },
    },
  });
  if (!values.node) throw new Error('usage: wiremesh plan --node NAME [--kubeconfig FILE]');
  const home = `${process.env.HOME ?? '/root'}/.kube/config`;
  const kube = kubeClient(values.kubeconfig ?? (existsSync(home) ? home : undefined));
  const list = await kube.request<{ items: V1Node[] }>('GET', '/api/v1/nodes');
  const nodes = list.items.map(meshNodeFromK8s);
  const self = nodes.find((n) => n.name === values.node);
  if (!self) throw new Error(`no Node named ${values.node}`);
  const key = parsePublicKey(self.publicKey ?? '');
  if (!key.ok)
    throw new Error(
      `node ${values.node} has no valid ${ANNOTATION_PUBLIC_KEY} yet (${key.reason})`,
    );
  const defaults = defaultAgentConfig(values.node);
  // The pod blocks each node holds, validated as the agent validates them: a peer's
  // AllowedIPs are its blocks.
  const rawBlocks = await kube.request<{ items: unknown[] }>(
    'GET',
    `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPAMBLOCK_PLURAL}`,
  );
  const blocks = new Map<string, string[]>();
  for (const raw of rawBlocks.items) {
    const { block } = ipamBlockFromK8s(raw);
    if (block) blocks.set(block.node, [...(blocks.get(block.node) ?? []), block.cidr]);
  }
  const plan = planMesh({
    self: values.node,
    selfPublicKey: key.key,
    nodes,
    blocks,
    settings: {
      listenPort: defaults.listenPort,
      tunnelCIDR: values['tunnel-cidr'] ?? defaults.tunnelCIDR,
      hostMtu: Number(values['host-mtu']),
      underlayFamily: self.internalIPs[0]?.includes(':') ? 6 : 4,
    },
  });
  process.stdout.write(JSON.stringify(plan, null, 2) + '\n');
  return 0;
}

/** `wiremesh health [--ready]`: exit 0 when the local agent answers (and, with --ready, has synced and reconciled). */
export async function runHealth(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ready: { type: 'boolean', default: false },
      socket: { type: 'string', default: DEFAULT_SOCKET },
    },
  });
  await callAgent(values.socket, 'GET', values.ready ? '/readyz' : '/healthz');
  return 0;
}
