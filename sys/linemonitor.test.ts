import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { LineMonitor } from './linemonitor.ts';

test('lines and stderr are handed on; a process that dies is reported and started again', async (t) => {
  const lines: string[] = [];
  const stderr: string[] = [];
  const exits: string[] = [];
  const monitor = new LineMonitor({
    name: 'test monitor',
    argv: ['sh', '-c', 'echo one; echo two; echo lost >&2; sleep 0.2; exit 3'],
    onLine: (l) => lines.push(l),
    onStderr: (s) => stderr.push(s),
    onExit: (why) => exits.push(why),
  });
  t.teardown(() => monitor.stop());
  await monitor.start();
  t.true(monitor.running);
  for (let i = 0; i < 100 && lines.length < 4; i++) await sleep(20);
  t.deepEqual(lines.slice(0, 4), ['one', 'two', 'one', 'two'], 'started again after it died');
  t.deepEqual(stderr.slice(0, 1), ['lost']);
  t.is(exits[0], 'test monitor exited (3): lost');
  monitor.stop();
  const seen = exits.length;
  await sleep(700);
  t.is(exits.length, seen, 'a stopped monitor is not reported nor restarted');
  t.false(monitor.running);
});

test('a command that cannot start is reported and retried, and start() still resolves', async (t) => {
  const exits: string[] = [];
  const monitor = new LineMonitor({
    name: 'missing',
    argv: ['/nonexistent/wiremesh-monitor'],
    onLine: () => {},
    onStderr: () => {},
    onExit: (why) => exits.push(why),
  });
  t.teardown(() => monitor.stop());
  await monitor.start();
  t.regex(exits[0] ?? '', /^cannot start \/nonexistent\/wiremesh-monitor: .*ENOENT/);
  t.false(monitor.running);
});
