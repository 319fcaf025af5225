import test from 'ava';
import {
  NftTableMonitor,
  isTableDeletion,
  parseGeneration,
  stderrWorthAVerify,
  touchesTable,
} from './monitor.ts';

test('the deletion line of the agent table, and no other, counts', (t) => {
  t.true(isTableDeletion('delete table inet wiremesh'));
  t.false(isTableDeletion('delete table inet other'));
  t.false(isTableDeletion('add table inet wiremesh'));
  t.false(isTableDeletion('delete chain inet wiremesh policy-forward'));
});

test('event lines about the table and what is in it are told from others', (t) => {
  t.true(touchesTable('add table inet wiremesh'));
  t.true(touchesTable('add rule inet wiremesh pol-a ip saddr @pa-1 accept'));
  t.true(touchesTable('delete element inet wiremesh pod-in { 10.0.0.1 }'));
  t.true(touchesTable('add map inet wiremesh dispatch { type ipv4_addr : verdict; }'));
  t.false(touchesTable('add table inet wiremesh2'));
  t.false(touchesTable('add rule ip filter INPUT accept'));
  t.false(touchesTable('add table inet other'));
  t.false(touchesTable('# new generation 5 by process 1 (inet wiremesh)'));
});

test('the end of a transaction carries its generation and process', (t) => {
  t.deepEqual(parseGeneration('# new generation 42 by process 1234 (nft)'), {
    generation: 42,
    pid: 1234,
    comm: 'nft',
  });
  t.deepEqual(parseGeneration('# new generation 7'), { generation: 7 });
  t.is(parseGeneration('add table inet wiremesh'), null);
});

function monitor() {
  let now = 0;
  const changes: string[] = [];
  const m = new NftTableMonitor({
    onChange: (r) => changes.push(r),
    fullVerifyEveryMs: 60_000,
    now: () => now,
  });
  // A monitor that runs (no process here): `attributing` also asks for a running nft.
  Object.assign(m, { process: { running: true } });
  return { m, changes, advance: (ms: number) => (now += ms) };
}

test('before one of its own transactions is recognised, every resync reads the table back', (t) => {
  const { m, changes } = monitor();
  t.true(m.fullVerifyDue());
  t.true(m.fullVerifyDue(), 'process ids not proven to match: no trust');
  // A transaction of an unknown process before attribution: counted, not reported
  // (it may be the agent's own, in another PID namespace).
  m.line('add rule inet wiremesh pol-a accept');
  m.line('# new generation 3 by process 99 (nft)');
  t.deepEqual(changes, []);
  // A deletion is reported at once even then.
  m.line('delete table inet wiremesh');
  t.deepEqual(changes, ['nftables table deleted']);
  t.false(m.attributing);
});

test('own transactions are not changes; anyone else touching the table is, at once', (t) => {
  const { m, changes, advance } = monitor();
  m.ownProcess(10);
  m.line('add table inet wiremesh');
  m.line('add element inet wiremesh pod-in { 10.0.0.1 }');
  m.line('# new generation 2 by process 10 (nft)');
  t.true(m.attributing);
  t.deepEqual(changes, []);
  t.true(m.fullVerifyDue(), 'the first resync after start reads the table');
  advance(10_000);
  t.false(m.fullVerifyDue(), 'nobody else changed it since');

  // Another table's transaction, even by a stranger: nothing.
  m.line('add rule ip filter INPUT accept');
  m.line('# new generation 3 by process 55 (iptables-nft)');
  advance(10_000);
  t.false(m.fullVerifyDue());

  m.line('delete rule inet wiremesh pol-a handle 7');
  m.line('# new generation 4 by process 77 (nft)');
  t.deepEqual(changes, ['nftables table changed by process 77 (nft)']);
  t.true(m.fullVerifyDue());
  t.false(m.fullVerifyDue());

  // A deletion by someone else is reported once, with who did it.
  m.line('delete table inet wiremesh');
  m.line('# new generation 5 by process 78 (nft)');
  t.is(changes.at(-1), 'nftables table deleted by process 78 (nft)');
  t.is(changes.length, 2);
  t.true(m.fullVerifyDue());

  // The agent's own full replace (delete and recreate) is no change.
  m.ownProcess(11);
  m.line('delete table inet wiremesh');
  m.line('add table inet wiremesh');
  m.line('# new generation 6 by process 11 (nft)');
  t.is(changes.length, 2);
  t.false(m.fullVerifyDue());
});

test('a full read is due at the latest after fullVerifyEveryMs', (t) => {
  const { m, advance } = monitor();
  m.ownProcess(10);
  m.line('add table inet wiremesh');
  m.line('# new generation 2 by process 10 (nft)');
  t.true(m.fullVerifyDue());
  advance(59_000);
  t.false(m.fullVerifyDue());
  advance(1_000);
  t.true(m.fullVerifyDue());
});

test('only the last 64 own process ids are remembered', (t) => {
  const { m, changes } = monitor();
  for (let pid = 1; pid <= 65; pid++) m.ownProcess(pid);
  m.line('add table inet wiremesh');
  m.line('# new generation 2 by process 65 (nft)');
  t.true(m.attributing);
  m.line('add rule inet wiremesh pol-a accept');
  m.line('# new generation 3 by process 1 (nft)');
  t.deepEqual(changes, ['nftables table changed by process 1 (nft)']);
});

test("nft's notes on iptables-nft rules it cannot print are no sign of change; anything else is", (t) => {
  // As seen on a kubeadm node: kube-proxy's and portmap's rules, made by iptables-nft.
  t.is(stderrWorthAVerify('XT match comment not found\nXT match multiport not found'), '');
  t.is(stderrWorthAVerify('XT target MASQUERADE not found'), '');
  t.is(
    stderrWorthAVerify('XT target DNAT not found\nnetlink: Error: ENOBUFS, events lost'),
    'netlink: Error: ENOBUFS, events lost',
  );
  t.is(stderrWorthAVerify('Error: something else'), 'Error: something else');
});
