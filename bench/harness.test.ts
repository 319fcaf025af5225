import test from 'ava';
import {
  median,
  percentile,
  figureOf,
  jsonLine,
  renderTable,
  measure,
  compare,
} from './harness.ts';

test('median and percentile', (t) => {
  t.is(median([3, 1, 2]), 2);
  t.is(median([4, 1, 2, 3]), 2.5);
  t.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 99), 10);
  t.is(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50), 5);
  t.throws(() => median([]), { message: /no samples/ });
  t.throws(() => percentile([1], 101), { message: /out of range/ });
});

test('a figure carries the medians and the ratio to its baseline, as one JSON line', (t) => {
  const f = figureOf('b', 'f', 'ms', [10, 30, 20], [5, 10, 15]);
  t.deepEqual(JSON.parse(jsonLine(f)), {
    bench: 'b',
    figure: 'f',
    value: 20,
    unit: 'ms',
    baseline: 10,
    ratio: 2,
    repeats: 3,
  });
  t.is(figureOf('b', 'f', 'ms', [1]).ratio, null);
});

test('measure times each repeat with the injected clock, after the warm-up', async (t) => {
  let clock = 0;
  let calls = 0;
  const samples = await measure(
    async () => {
      calls++;
      clock += calls;
    },
    { repeats: 3, warmup: 2, now: () => clock },
  );
  t.is(calls, 5);
  t.deepEqual(samples, [3, 4, 5]);
});

test('compare interleaves subject and baseline runs', async (t) => {
  const order: string[] = [];
  let clock = 0;
  const f = await compare(
    'b',
    'f',
    'ms',
    async () => {
      order.push('a');
      clock += 4;
    },
    async () => {
      order.push('b');
      clock += 2;
    },
    { repeats: 3, warmup: 0, now: () => clock },
  );
  t.deepEqual(order, ['a', 'b', 'a', 'b', 'a', 'b']);
  t.is(f.ratio, 2);
});

test('the table lists every figure', (t) => {
  const table = renderTable([figureOf('lab-exec', 'exec', 'ms', [4], [2])]);
  t.regex(table, /lab-exec\s+exec\s+4 ms\s+2 ms\s+2x/);
});
