// `wiremesh explain [--kubeconfig FILE] [-o text|json] SRC DST [PORT/PROTO]`: the path
// and the policy verdict of one flow, from the API (explain/).
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { kubeClient } from '../kube/index.ts';
import {
  explainFlow,
  loadSnapshot,
  parsePortProtocol,
  renderExplanation,
} from '../explain/index.ts';

const USAGE = 'usage: wiremesh explain [--kubeconfig FILE] [-o text|json] SRC DST [PORT/PROTO]';

export function defaultKubeconfig(given: string | undefined): string | undefined {
  const home = `${process.env.HOME ?? '/root'}/.kube/config`;
  return given ?? process.env.KUBECONFIG ?? (existsSync(home) ? home : undefined);
}

export async function runExplain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      kubeconfig: { type: 'string' },
      output: { type: 'string', short: 'o', default: 'text' },
    },
  });
  const [from, to, portProto, ...extra] = positionals;
  if (!from || !to || extra.length > 0) throw new Error(USAGE);
  if (values.output !== 'text' && values.output !== 'json') throw new Error(USAGE);
  const kube = kubeClient(defaultKubeconfig(values.kubeconfig));
  const snapshot = await loadSnapshot(kube);
  const e = explainFlow(snapshot, { from, to, ...parsePortProtocol(portProto) });
  process.stdout.write(
    values.output === 'json' ? JSON.stringify(e, null, 2) + '\n' : renderExplanation(e),
  );
  return 0;
}
