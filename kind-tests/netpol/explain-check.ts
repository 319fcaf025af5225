// The netpol suite's check of `wiremesh explain`: after a case's probes matched,
// explain every cell of the round that matched (every pod to every other pod, on
// every port/protocol and family the case probed) from the objects in the API, and
// compare its verdict with what the probes observed; a drop must name the policy
// that decided it. The same code as the command (explain/), against the live cluster.
import { explainFlow, loadSnapshot, PolicyCompiler } from '../../explain/index.ts';
import { addressOf, type NetpolHarness } from './harness.ts';
import { familyPortKey, type PortProtocol } from './model.ts';
import type { TruthTable } from './truth-table.ts';

export interface ExplainCheck {
  cells: number;
  /** Cells where explain's verdict differs from the probes', or a drop names no policy. */
  mismatches: string[];
}

export async function checkExplain(
  h: NetpolHarness,
  on: readonly PortProtocol[],
  observed: ReadonlyMap<string, TruthTable>,
): Promise<ExplainCheck> {
  const snapshot = await loadSnapshot(h.api);
  const compiler = new PolicyCompiler(snapshot);
  const mismatches: string[] = [];
  let cells = 0;
  for (const f of h.families) {
    for (const pp of on) {
      const key = familyPortKey(f, pp);
      const table = observed.get(key);
      if (!table) throw new Error(`no observed table ${key}`);
      for (const from of h.pods) {
        for (const to of h.pods) {
          if (from === to) continue;
          cells++;
          const e = explainFlow(
            snapshot,
            {
              from: `${from.realNamespace}/${from.name}`,
              to: addressOf(to, f),
              protocol: pp.protocol,
              port: pp.port,
            },
            compiler,
          );
          const probed = table.get(from.key, to.key);
          const cell = `${from.key} -> ${to.key} ${key}`;
          if ((e.verdict === 'allow') !== probed) {
            mismatches.push(
              `${cell}: probes ${probed ? 'connected' : 'blocked'}, explain ${e.verdict} ` +
                `(egress: ${e.egress.text}; ingress: ${e.ingress.text}; path: ${e.path.text})`,
            );
          } else if (e.verdict === 'drop') {
            const decided = [e.egress, e.ingress].find((d) => d.verdict === 'drop');
            if (!decided?.origin) mismatches.push(`${cell}: dropped, but explain names no policy`);
          }
        }
      }
    }
  }
  return { cells, mismatches };
}
