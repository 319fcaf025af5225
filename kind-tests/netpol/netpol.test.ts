// Unit tests of the netpol suite's model, truth tables and failure report: what a
// reader of a failing case sees must be right before any cluster is involved.
import test from 'ava';
import { coveringCidr, containerPorts, modelPods, placePods, ALL_PORT_PROTOCOLS } from './model.ts';
import { TruthTable, matchesPattern, renderComparison } from './truth-table.ts';
import { mismatchReport, type RoundResult } from './harness.ts';
import { parseProbeResults } from './prober.ts';

const keys = modelPods().map((p) => p.key);

test('the model is upstream: 9 pods x/a .. z/c, named ports for 80/81 over TCP, UDP, SCTP', (t) => {
  t.deepEqual(keys, ['x/a', 'x/b', 'x/c', 'y/a', 'y/b', 'y/c', 'z/a', 'z/b', 'z/c']);
  t.deepEqual(
    containerPorts().map((p) => `${p.name} ${p.containerPort}/${p.protocol}`),
    [
      'serve-80-tcp 80/TCP',
      'serve-81-tcp 81/TCP',
      'serve-80-udp 80/UDP',
      'serve-81-udp 81/UDP',
      'serve-80-sctp 80/SCTP',
      'serve-81-sctp 81/SCTP',
    ],
  );
  t.is(ALL_PORT_PROTOCOLS.length, 6);
  t.true(
    containerPorts().every((p) => (p.name ?? '').length <= 15),
    'IANA_SVC_NAME limit',
  );
});

test('pods spread round-robin, so each namespace has pods on every node', (t) => {
  const placed = placePods(modelPods(), ['n1', 'n2', 'n3']);
  t.deepEqual(
    ['x/a', 'x/b', 'x/c', 'y/a'].map((k) => placed.get(k)),
    ['n1', 'n2', 'n3', 'n1'],
  );
});

test('coveringCidr is the smallest prefix holding every address', (t) => {
  t.is(coveringCidr(['100.64.0.1']), '100.64.0.1/32');
  t.is(coveringCidr(['100.64.0.1', '100.64.0.2']), '100.64.0.0/30');
  t.is(coveringCidr(['100.64.0.5', '100.64.1.70', '100.64.0.200']), '100.64.0.0/23');
  t.is(coveringCidr(['1.0.0.0', '255.0.0.0']), '0.0.0.0/0');
  t.is(coveringCidr(['2001:db8:64::1']), '2001:db8:64::1/128');
  t.is(coveringCidr(['2001:db8:64::1', '2001:db8:64::2']), '2001:db8:64::/126');
  t.is(coveringCidr(['2001:db8:64::40', '2001:db8:64:0:1::80']), '2001:db8:64::/79');
  t.is(coveringCidr(['2001:db8::', '8000::']), '::/0');
  t.throws(() => coveringCidr(['100.64.0.1', 'fd00::1']), { message: /mixed families/ });
  t.throws(() => coveringCidr(['1.2.3']), { message: /not an IPv4/ });
  t.throws(() => coveringCidr(['fd00::1::2']), { message: /not an IPv6/ });
});

test('patterns pick pods, namespaces or everything', (t) => {
  t.true(matchesPattern('x/a', '*'));
  t.true(matchesPattern('x/a', 'x'));
  t.true(matchesPattern('x/a', 'x/*'));
  t.true(matchesPattern('x/a', '*/a'));
  t.false(matchesPattern('x/a', 'y'));
  t.false(matchesPattern('x/a', 'x/b'));
});

test('expectations build the table a case means; loopback stays connected', (t) => {
  const table = new TruthTable(keys, true)
    .expectAllIngress('x', false)
    .expectPeer('y/b', 'x/a', true)
    .allowLoopback();
  t.false(table.get('y/a', 'x/a'));
  t.true(table.get('y/b', 'x/a'));
  t.false(table.get('x/b', 'x/a'));
  t.true(table.get('x/a', 'x/a'));
  t.true(table.get('x/a', 'y/a'));
  t.throws(() => table.expectPeer('w', '*', false), { message: /matches no cell/ });
});

test('the failure report shows expected, observed, the differing cells and their probes', (t) => {
  const small = ['x/a', 'x/b'];
  const want = new TruthTable(small, true).expectAllIngress('x/a', false).allowLoopback();
  const seen = new TruthTable(small, true);
  t.deepEqual(want.diff(seen), [{ from: 'x/b', to: 'x/a', expected: false, observed: true }]);
  t.is(renderComparison(want, seen), ['-    x/a  x/b', 'x/a  .    .', 'x/b  X    .'].join('\n'));
  const round: RoundResult = {
    observed: new Map([['TCP/80', seen]]),
    probes: new Map([
      [
        'TCP/80',
        new Map([
          [
            'x/b>x/a',
            { proto: 'TCP', ip: '100.64.0.1', port: 80, result: 'reachable', answer: 'x/a', ms: 2 },
          ],
        ]),
      ],
    ]),
    ms: 5,
  };
  const report = mismatchReport('deny x/a', new Map([['TCP/80', want]]), round, 3, 20_000);
  t.snapshot(report);
  t.regex(
    report,
    /x\/b -> x\/a TCP\/80: expected blocked, observed reachable, answered by x\/a, 2 ms/,
  );
  t.true(report.includes(`expected:\n${want.render()}\nobserved:\n${seen.render()}`));
});

test('prober output must answer the targets it was given', (t) => {
  const target = { proto: 'UDP' as const, ip: '100.64.0.9', port: 81 };
  const ok = JSON.stringify([{ ...target, result: 'timeout', ms: 1000 }]);
  t.is(parseProbeResults(ok, [target])[0]?.result, 'timeout');
  t.throws(() => parseProbeResults('[]', [target]), { message: /0 results for 1 targets/ });
  t.throws(() => parseProbeResults(ok, [{ ...target, port: 80 }]), { message: /does not answer/ });
  t.throws(() => parseProbeResults('oops', [target]), { message: /no JSON/ });
});
