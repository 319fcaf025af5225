import test from 'ava';
import { oncePerTurn } from './watch.ts';

test('oncePerTurn: a turn of calls runs the function once, with the last argument; a later turn again', async (t) => {
  const runs: number[] = [];
  const f = oncePerTurn((n: number) => runs.push(n));
  for (let i = 1; i <= 5000; i++) f(i);
  t.deepEqual(runs, [], 'not before the turn ends');
  await Promise.resolve();
  t.deepEqual(runs, [5000]);
  f(1);
  f(2);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(runs, [5000, 2]);
});

test('oncePerTurn: it runs before work the same turn queued after it (a pass scheduled by the same event)', async (t) => {
  const order: string[] = [];
  const f = oncePerTurn(() => order.push('observed'));
  f(undefined);
  queueMicrotask(() => order.push('pass'));
  f(undefined);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(order, ['observed', 'pass']);
});
