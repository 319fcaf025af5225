import test from 'ava';
import { firstWith, steadyFrom, type ProbeResult } from './enforcement.ts';

/** Probes every 5 ms from t=0, outcomes as a string of '+' (answered) and '-'. */
function probes(pattern: string): ProbeResult[] {
  return [...pattern].map((c, i) => ({ t: i * 5, ok: c === '+' }));
}

test('a clean change: first and steady are the same probe', (t) => {
  const p = probes('++++' + '-'.repeat(60));
  t.is(firstWith(p, 0, false), 20);
  t.is(steadyFrom(p, 0, false, 1000, 250), 20);
});

test('a stray old outcome after the first new one moves steady past it', (t) => {
  const p = probes('++--+' + '-'.repeat(60));
  t.is(firstWith(p, 0, false), 10);
  t.is(steadyFrom(p, 0, false, 1000, 250), 25);
});

test('steady waits until settleMs of new outcomes are known', (t) => {
  const p = probes('++' + '-'.repeat(60));
  t.is(steadyFrom(p, 0, false, 200, 250), null, 'only 190 ms of drops known');
  t.is(steadyFrom(p, 0, false, 300, 250), 10);
});

test('probes sent before the change do not count, nor an unchanged verdict', (t) => {
  const p = probes('--++' + '-'.repeat(60));
  t.is(firstWith(p, 10, false), 20);
  t.is(steadyFrom(p, 10, false, 1000, 250), 20);
  t.is(steadyFrom(probes('+'.repeat(80)), 0, false, 1000, 250), null);
  t.is(firstWith(probes('+'.repeat(80)), 0, false), null);
});

test('results arriving out of order are sorted by send time', (t) => {
  const p = probes('++' + '-'.repeat(60)).reverse();
  t.is(steadyFrom(p, 0, false, 1000, 250), 10);
});
