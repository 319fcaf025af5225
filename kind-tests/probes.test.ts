// How the fault suites count lost pings: a request still in flight when ping is
// stopped is not a loss, a request unanswered before a later reply is, and so are the
// trailing requests once replies had stopped for longer than the wait.
import test from 'ava';
import { pingLossAtStop } from './probes.ts';

/** ping -D output: a reply line per answered sequence number, then the SIGINT summary. */
function pingOutput(startS: number, answered: number[], sent: number): string {
  const lines = answered.map(
    (seq) =>
      `[${(startS + seq * 0.05).toFixed(6)}] 64 bytes from 100.64.1.2: icmp_seq=${seq} ttl=62 time=0.412 ms`,
  );
  return [
    'PING 100.64.1.2 (100.64.1.2) 56(84) bytes of data.',
    ...lines,
    '',
    '--- 100.64.1.2 ping statistics ---',
    `${sent} packets transmitted, ${answered.length} received, 0% packet loss, time 1000ms`,
    '',
  ].join('\n');
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('the request in flight at the stop is not lost', (t) => {
  const out = pingOutput(1000, range(1, 20), 21);
  const stoppedAt = (1000 + 20 * 0.05) * 1000 + 30;
  t.deepEqual(pingLossAtStop(out, stoppedAt), { sent: 21, received: 20, lost: 0, inFlight: 1 });
});

test('a request unanswered before a later reply is lost', (t) => {
  const answered = range(1, 20).filter((s) => s !== 7);
  const out = pingOutput(1000, answered, 20);
  const stoppedAt = (1000 + 20 * 0.05) * 1000 + 30;
  t.deepEqual(pingLossAtStop(out, stoppedAt), { sent: 20, received: 19, lost: 1, inFlight: 0 });
});

test('trailing requests are lost once replies stopped for longer than the wait', (t) => {
  const out = pingOutput(1000, range(1, 10), 60);
  const stoppedAt = (1000 + 60 * 0.05) * 1000;
  t.deepEqual(pingLossAtStop(out, stoppedAt), { sent: 60, received: 10, lost: 50, inFlight: 0 });
});

test('no reply at all: everything sent is lost', (t) => {
  const out = pingOutput(1000, [], 15);
  t.deepEqual(pingLossAtStop(out, 1_001_000), { sent: 15, received: 0, lost: 15, inFlight: 0 });
});
