// The progress of `lab up` as a user sees it: in a log, one plain line per phase
// start, note and end with the phase's duration; on a terminal, a live line with a
// spinner and an elapsed timer that becomes the end line.
import test from 'ava';
import { formatSeconds, LabPhases, ProgressDisplay } from './progress.ts';

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function fakeOut(isTTY: boolean) {
  const writes: string[] = [];
  return { isTTY, writes, write: (text: string) => writes.push(text) };
}

/** A terminal's screen after the writes: \r returns to the line start, ESC[K clears it. */
function screen(writes: string[]): string[] {
  const lines = [''];
  for (const ch of writes.join('').replaceAll('\x1b[K', '\u0001')) {
    if (ch === '\n') lines.push('');
    else if (ch === '\r') lines[lines.length - 1] = '';
    else if (ch === '\u0001') lines[lines.length - 1] = '';
    else lines[lines.length - 1] += ch;
  }
  return lines;
}

function runLab(display: ProgressDisplay, c: ReturnType<typeof clock>, tick: () => void) {
  const phases = new LabPhases(display.write, 'lab t', c.now);
  phases.start('control plane: etcd and kube-apiserver');
  c.advance(2500);
  tick();
  phases.done('ready');
  phases.start('nodes: 2 network namespaces');
  phases.note('node t-n1 at 198.18.0.2');
  c.advance(1200);
  tick();
  phases.note('node t-n2 at 198.18.0.3');
  phases.done();
}

test('formatSeconds: one decimal', (t) => {
  t.is(formatSeconds(9_849), '9.8 s');
  t.is(formatSeconds(95_000), '95.0 s');
  t.is(formatSeconds(-3), '0.0 s');
});

test('not a terminal: plain lines, each phase ending with its duration', (t) => {
  const c = clock();
  const out = fakeOut(false);
  const display = new ProgressDisplay(out, {
    now: c.now,
    setInterval: () => t.fail('no timer off a terminal'),
  });
  runLab(display, c, () => {});
  t.deepEqual(out.writes, [
    'lab t: control plane: etcd and kube-apiserver ...\n',
    'lab t: control plane: etcd and kube-apiserver ... ready in 2.5 s\n',
    'lab t: nodes: 2 network namespaces ...\n',
    'lab t: node t-n1 at 198.18.0.2\n',
    'lab t: node t-n2 at 198.18.0.3\n',
    'lab t: nodes: 2 network namespaces ... done in 1.2 s\n',
  ]);
  t.false(out.writes.join('').includes('\r'), 'no carriage returns in a log');
});

test('a terminal: a live line with spinner and timer, replaced by the end line', (t) => {
  const c = clock();
  const out = fakeOut(true);
  let tick: (() => void) | null = null;
  let cleared = 0;
  const display = new ProgressDisplay(out, {
    now: c.now,
    setInterval: (fn) => {
      tick = fn;
      return 'timer';
    },
    clearInterval: (h) => {
      t.is(h, 'timer');
      cleared++;
      tick = null;
    },
  });
  const phases = new LabPhases(display.write, 'lab t', c.now);
  phases.start('agents: the wiremesh agent on 3 nodes');
  c.advance(12_300);
  if (!tick) return t.fail('no timer started');
  (tick as () => void)();
  t.deepEqual(screen(out.writes), ['lab t: agents: the wiremesh agent on 3 nodes ... / 12 s']);
  phases.done('ready');
  t.is(cleared, 1);
  t.deepEqual(screen(out.writes), [
    'lab t: agents: the wiremesh agent on 3 nodes ... ready in 12.3 s',
    '',
  ]);
});

test('a terminal: notes go above the live line, and the screen ends as the log does', (t) => {
  const c = clock();
  const out = fakeOut(true);
  let tick = () => {};
  const display = new ProgressDisplay(out, {
    now: c.now,
    setInterval: (fn) => {
      tick = fn;
      return 1;
    },
    clearInterval: () => {},
  });
  runLab(display, c, () => tick());
  t.deepEqual(screen(out.writes), [
    'lab t: control plane: etcd and kube-apiserver ... ready in 2.5 s',
    'lab t: node t-n1 at 198.18.0.2',
    'lab t: node t-n2 at 198.18.0.3',
    'lab t: nodes: 2 network namespaces ... done in 1.2 s',
    '',
  ]);
});

test('a terminal: close() keeps the text of a phase cut short (a failure)', (t) => {
  const out = fakeOut(true);
  const display = new ProgressDisplay(out, { setInterval: () => 1, clearInterval: () => {} });
  display.write('lab t: pods: 6 wired through cnitool ...', 'start');
  display.close();
  t.deepEqual(screen(out.writes), ['lab t: pods: 6 wired through cnitool ...', '']);
});
