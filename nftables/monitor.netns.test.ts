import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultRunner, requireRoot } from '../sys/index.ts';
import { NftTableMonitor } from './monitor.ts';

async function until(what: () => boolean): Promise<void> {
  for (let i = 0; i < 50 && !what(); i++) await sleep(100);
}

test.serial('changes by others are reported at once, the agent’s own are not', async (t) => {
  requireRoot('the nftables monitor test (network namespaces)');
  const ns = `wmtmon${process.pid}`;
  await defaultRunner.run(['ip', 'netns', 'add', ns]);
  const changes: string[] = [];
  const errors: string[] = [];
  const monitor = new NftTableMonitor({
    prefix: ['ip', 'netns', 'exec', ns],
    onChange: (r) => changes.push(r),
    onError: (e) => errors.push(e.message),
  });
  t.teardown(async () => {
    monitor.stop();
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  });
  // `ip netns exec` execs nft: the process id the runner sees is nft's.
  const own = (script: string) =>
    defaultRunner.run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], {
      input: script,
      onSpawn: (pid) => monitor.ownProcess(pid),
    });
  const stranger = (script: string) =>
    defaultRunner.run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], { input: script });
  await monitor.start();
  await sleep(300);

  await own('add table inet wiremesh\nadd chain inet wiremesh a\n');
  await until(() => monitor.attributing);
  t.true(monitor.attributing, 'the kernel names the agent’s own nft as the changer');
  t.true(monitor.fullVerifyDue(), 'the first resync reads the table back');
  await own('add chain inet wiremesh b\ndelete table inet wiremesh\nadd table inet wiremesh\n');
  await stranger('add table inet other\nadd chain inet other c\ndelete table inet other\n');
  await sleep(300);
  t.deepEqual(changes, [], 'own transactions and other tables are no change');
  t.false(monitor.fullVerifyDue(), 'no resync needs to read the table back');

  await stranger('add chain inet wiremesh intruder\n');
  await until(() => changes.length > 0);
  t.regex(changes[0] ?? '', /^nftables table changed by process \d+ \(nft\)$/);
  t.true(monitor.fullVerifyDue());
  await stranger('delete table inet wiremesh\n');
  await until(() => changes.length > 1);
  t.regex(changes[1] ?? '', /^nftables table deleted by process \d+ \(nft\)$/);
  t.deepEqual(errors, []);

  // nft killed: whatever happened meanwhile counts as a change, and a new monitor
  // sees the next one.
  const first = monitor.pid;
  if (first === undefined) return t.fail('no nft running');
  process.kill(first, 'SIGKILL');
  await until(() => changes.length > 2);
  t.is(changes[2], 'nftables monitor restarted; changes meanwhile unseen');
  t.is(errors.length, 1);
  t.true(monitor.fullVerifyDue());
  await until(() => monitor.pid !== undefined && monitor.pid !== first);
  t.not(monitor.pid, undefined);
  await sleep(300);
  await stranger('add table inet wiremesh\n');
  await until(() => changes.length > 3);
  t.regex(changes[3] ?? '', /^nftables table changed by process \d+/);
});
