// Measures the table driver in a throwaway network namespace (root): a full replace of a
// table with 1,000 chains and 10,000 set elements (plus a 1,000-entry verdict map), an
// incremental one-element change of that table, a verify (list and compare), and as the
// baseline one nft transaction that changes nothing (`add table inet wiremesh`). Medians over repeats, the
// bench format's JSON lines (bench/harness.ts), so bench/ can register it as a scenario.
//
//   node nftables/bench.ts [--repeats N]
import { parseArgs } from 'node:util';
import { PrefixRunner, defaultRunner as runner, requireRoot } from '../sys/index.ts';
import { NftCli } from './client.ts';
import { TableDriver } from './driver.ts';
import { largeTable } from './fixtures.ts';
import { fullReplaceOps, renderScript } from './ops.ts';
import { checkTable } from './table.ts';

export interface NftFigure {
  bench: string;
  figure: string;
  value: number;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  repeats: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

export async function benchNftTable(
  repeats: number,
  chains = 1000,
  elements = 10_000,
): Promise<NftFigure[]> {
  requireRoot('nftables/bench.ts');
  const ns = `wmnft-bench-${process.pid % 100000}`;
  await runner.run(['ip', 'netns', 'add', ns]);
  try {
    const inNs = new PrefixRunner(runner, ['ip', 'netns', 'exec', ns]);
    const table = largeTable(chains, elements);
    const script = renderScript(fullReplaceOps(checkTable(table)));
    const base: number[] = [];
    const full: number[] = [];
    const incr: number[] = [];
    const render: number[] = [];
    const verify: number[] = [];
    const operations = { full: 0, incremental: 0 };
    for (let i = 0; i < repeats; i++) {
      base.push(
        await time(() => inNs.run(['nft', '-f', '-'], { input: 'add table inet wiremesh\n' })),
      );
      render.push(await time(async () => renderScript(fullReplaceOps(checkTable(table)))));
      // A fresh driver each round: its first apply is a full replace of the existing table,
      // its second the increment.
      const fresh = new TableDriver(new NftCli(inNs));
      full.push(
        await time(async () => {
          const r = await fresh.apply(table);
          operations.full = r.operations;
          if (r.mode !== 'full') throw new Error(`expected a full apply, got ${r.mode}`);
        }),
      );
      let check = { inSync: false, differences: ['not run'] };
      verify.push(
        await time(async () => {
          check = await fresh.verify();
        }),
      );
      if (!check.inSync)
        throw new Error(`full replace not in the kernel: ${check.differences.join('; ')}`);
      const changed = largeTable(chains, elements);
      changed.sets[0]?.elements.push('100.127.0.1');
      incr.push(
        await time(async () => {
          const r = await fresh.apply(changed);
          operations.incremental = r.operations;
          if (r.mode !== 'incremental')
            throw new Error(`expected an incremental apply, got ${r.mode}`);
        }),
      );
    }
    const b = median(base);
    const fig = (figure: string, xs: number[], unit = 'ms'): NftFigure => ({
      bench: 'nftables',
      figure,
      value: Math.round(median(xs) * 10) / 10,
      unit,
      baseline: Math.round(b * 10) / 10,
      ratio: Math.round((median(xs) / b) * 10) / 10,
      repeats,
    });
    const what = `${chains} chains, ${elements} elements`;
    return [
      fig(
        `full replace (${what}, ${operations.full} ops, ${Math.round(script.length / 1024)} KiB)`,
        full,
      ),
      fig(`incremental one-element change (${operations.incremental} op)`, incr),
      fig(`verify: nft -j list table, parsed and compared (${what})`, verify),
      fig(`render + check full script in-process (${what})`, render),
    ];
  } finally {
    await runner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { repeats: { type: 'string', default: '5' } } });
  for (const f of await benchNftTable(Number(values.repeats)))
    process.stdout.write(`${JSON.stringify(f)}\n`);
}
