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
  serveHealth,
  getHealth,
  callAgent,
  jsonLogger,
  EXTERNAL_BIRD,
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
): Promise<{
  config: AgentConfig;
  logLevel: LogLevel;
  metricsAddress: string | null;
  healthAddress: string | null;
}> {
  const { values } = parseArgs({
    args: argv,
    options: {
      'node-name': { type: 'string', default: env.NODE_NAME },
      kubeconfig: { type: 'string', default: env.KUBECONFIG },
      'config-dir': { type: 'string' },
      'state-dir': { type: 'string', default: '/var/lib/wiremesh' },
      'run-dir': { type: 'string', default: '/run/wiremesh' },
      'wireguard-go': { type: 'string', default: env.WIREMESH_WIREGUARD_GO },
      bird: { type: 'string' },
      // The settings: no defaults here, so an absent flag leaves the config's value.
      'listen-port': { type: 'string' },
      'tunnel-cidr': { type: 'string' },
      resync: { type: 'string' },
      wireguard: { type: 'string' },
      'key-rotation-period': { type: 'string' },
      'log-level': { type: 'string' },
      'host-encryption': { type: 'boolean' },
      'metrics-address': { type: 'string' },
      'health-address': { type: 'string' },
      'default-pool-cidr': { type: 'string' },
      'bgp-as': { type: 'string' },
      'bgp-node-mesh': { type: 'string' },
      'bgp-hold-time': { type: 'string' },
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
  const { logLevel, metricsAddress, healthAddress, ...agentSettings } = settings;
  const config: AgentConfig = {
    ...defaultAgentConfig(nodeName),
    ...agentSettings,
    kubeconfig: values.kubeconfig,
    stateDir: values['state-dir'],
    runDir: values['run-dir'],
    wireguardGo: values['wireguard-go'],
    bird: values.bird,
  };
  if (config.bird !== undefined && config.bird !== EXTERNAL_BIRD)
    throw new Error(
      `--bird takes only '${EXTERNAL_BIRD}' (BIRD run by the wiremesh-wireguard pod)`,
    );
  return { config, logLevel, metricsAddress, healthAddress };
}

export async function runAgent(argv: string[]): Promise<number> {
  const { config, logLevel, metricsAddress, healthAddress } = await agentOptions(argv);
  const log = jsonLogger({ node: config.nodeName }, logLevel);
  const agent = new Agent(config, log);
  const server = await serveAgentApi(agent, `${config.runDir}/agent.sock`);
  // Health first: the kubelet's liveness probe must find the agent alive while it
  // waits for its first lists, which can take long when the apiserver is away.
  const health =
    healthAddress === null
      ? null
      : await serveRetrying('health', healthAddress, log, (listen) => serveHealth(agent, listen));
  // Observing starts before the agent, so its first passes and CNI requests count;
  // the metrics module (and prom-client) loads only when metrics are on.
  const metrics = metricsAddress === null ? null : await startMetrics(agent, metricsAddress, log);
  await agent.start();
  log.info('agent running', {
    socket: `${config.runDir}/agent.sock`,
    metrics: metricsAddress,
    health: healthAddress,
  });
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
  health?.close();
  await agent.stop();
  return 0;
}

/**
 * Serve an HTTP endpoint of the agent on a host network address. A port that
 * cannot be bound (taken by another host-network process) is logged and retried
 * every 10 s: the node's pod networking matters more than its metrics or probes,
 * so the agent runs on without them meanwhile.
 */
async function serveRetrying(
  what: 'health' | 'metrics',
  address: string,
  log: Logger,
  listen: (at: { host: string; port: number }) => Promise<Server>,
): Promise<{ close: () => void }> {
  const at = parseListenAddress(address);
  if (!at) throw new Error(`${what}-address '${address}' is not an address`);
  let http: Server | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;
  const serve = async () => {
    try {
      http = await listen(at);
      log.info(`serving ${what}`, { address });
    } catch (e) {
      log.error(`${what} endpoint unavailable; retrying in 10 s`, {
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
    },
  };
}

/** Observe the agent and serve /metrics. */
async function startMetrics(
  agent: Agent,
  address: string,
  log: Logger,
): Promise<{ close: () => void }> {
  const { observeAgent, serveMetrics } = await import('../agent/metrics.ts');
  const observed = observeAgent(agent);
  const served = await serveRetrying('metrics', address, log, (listen) =>
    serveMetrics(observed.metrics, listen, log),
  );
  return {
    close: () => {
      served.close();
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

/**
 * `wiremesh health [--ready] [--address IP:PORT]`: exit 0 when the local agent is
 * alive (with --ready: has applied its dataplane), as the kubelet's probes see it.
 * The checks are the agent's health endpoints'; by default they are asked through
 * the agent's socket, which answers whatever health-address is; --address asks the
 * HTTP endpoint itself, as the probes do.
 */
export async function runHealth(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ready: { type: 'boolean', default: false },
      socket: { type: 'string', default: DEFAULT_SOCKET },
      address: { type: 'string' },
    },
  });
  const path = values.ready ? '/readyz' : '/healthz';
  let target: { host: string; port: number } | { socketPath: string } = {
    socketPath: values.socket,
  };
  if (values.address !== undefined) {
    const at = parseListenAddress(values.address);
    if (!at) throw new Error(`--address takes IP:PORT, not '${values.address}'`);
    target = at;
  }
  const { code, body } = await getHealth(target, path);
  const ok = code === 200;
  const what = values.ready ? (ok ? 'ready' : 'not ready') : ok ? 'alive' : 'not alive';
  (ok ? process.stdout : process.stderr).write(`${what}: ${body.reason ?? `HTTP ${code}`}\n`);
  return ok ? 0 : 1;
}
