// `wiremesh graph [--kubeconfig FILE] [-o dot|svg] [--metrics-port 9825]`: the mesh
// as a picture (explain/graph.ts). The agents' facts come from their metrics
// endpoints on the nodes' InternalIPs (3 s each); an agent that does not answer is
// marked on its node. Remote clusters' nodes are read with the kubeconfig in each
// RemoteCluster's Secret, as the agents read them (5 s each). SVG through
// Graphviz's `dot` (Debian's graphviz).
import { parseArgs } from 'node:util';
import { kubeClient } from '../kube/index.ts';
import { defaultRunner } from '../sys/index.ts';
import {
  handshakeAges,
  loadRemoteClusters,
  loadSnapshot,
  planGraph,
  renderDot,
  type AgentFacts,
} from '../explain/index.ts';
import { defaultKubeconfig } from './explain.ts';

const USAGE = 'usage: wiremesh graph [--kubeconfig FILE] [-o dot|svg] [--metrics-port 9825]';

export async function runGraph(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      kubeconfig: { type: 'string' },
      output: { type: 'string', short: 'o', default: 'dot' },
      'metrics-port': { type: 'string', default: '9825' },
    },
  });
  if (values.output !== 'dot' && values.output !== 'svg') throw new Error(USAGE);
  const kube = kubeClient(defaultKubeconfig(values.kubeconfig));
  const [snapshot, remotes] = await Promise.all([
    loadSnapshot(kube),
    loadRemoteClusters(kube).catch((e: unknown) => {
      process.stderr.write(
        `wiremesh graph: remote clusters left out: ${e instanceof Error ? e.message : String(e)}\n`,
      );
      return [];
    }),
  ]);
  const agents = new Map<string, AgentFacts | null>();
  await Promise.all(
    snapshot.nodes.map(async (n) => {
      const ip = n.internalIPs[0];
      const host = ip?.includes(':') ? `[${ip}]` : ip;
      try {
        if (!host) throw new Error('no InternalIP');
        const res = await fetch(`http://${host}:${values['metrics-port']}/metrics`, {
          signal: AbortSignal.timeout(3000),
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        agents.set(n.name, { handshakeAge: handshakeAges(await res.text()) });
      } catch {
        agents.set(n.name, null);
      }
    }),
  );
  const dot = renderDot(planGraph(snapshot, agents, remotes));
  if (values.output === 'dot') {
    process.stdout.write(dot);
    return 0;
  }
  process.stdout.write(await renderSvg(dot));
  return 0;
}

/** SVG of DOT text through Graphviz's `dot`. */
export async function renderSvg(dot: string): Promise<string> {
  try {
    return (await defaultRunner.run(['dot', '-Tsvg'], { input: dot, timeoutMs: 30_000 })).stdout;
  } catch (e) {
    throw new Error(`dot -Tsvg failed (is Graphviz installed? apt-get install graphviz)`, {
      cause: e,
    });
  }
}
