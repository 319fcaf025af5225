// `npm run bench -- SCENARIO [--repeats N]`: runs one scenario (or `all`), printing
// one JSON line per figure and then a table.
import { parseArgs } from 'node:util';
import { jsonLine, renderTable, type Figure } from './harness.ts';
import { scenarios } from './scenarios.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { repeats: { type: 'string', default: '20' } },
});
const name = positionals[0];
if (!name || (name !== 'all' && !(name in scenarios))) {
  process.stderr.write(
    `usage: npm run bench -- SCENARIO|all [--repeats N]\nscenarios:\n` +
      Object.entries(scenarios)
        .map(([k, s]) => `  ${k.padEnd(16)}${s.description}\n`)
        .join(''),
  );
  process.exit(2);
}
const repeats = Number(values.repeats);
if (!Number.isInteger(repeats) || repeats < 1) {
  process.stderr.write(`--repeats takes a positive whole number\n`);
  process.exit(2);
}
const figures: Figure[] = [];
for (const [key, scenario] of Object.entries(scenarios)) {
  if (name !== 'all' && key !== name) continue;
  for (const f of await scenario.run({ repeats })) {
    process.stdout.write(jsonLine(f) + '\n');
    figures.push(f);
  }
}
process.stdout.write('\n' + renderTable(figures));
