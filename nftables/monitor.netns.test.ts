import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { defaultRunner, requireRoot } from '../sys/index.ts';
import { NftTableMonitor, isTableDeletion } from './monitor.ts';

test('the deletion line of the agent table, and no other, counts', (t) => {
  t.true(isTableDeletion('delete table inet wiremesh'));
  t.false(isTableDeletion('delete table inet other'));
  t.false(isTableDeletion('add table inet wiremesh'));
  t.false(isTableDeletion('delete chain inet wiremesh policy-forward'));
});

test.serial('a deleted table is reported at once; a monitor that dies is restarted', async (t) => {
  requireRoot('the nftables monitor test (network namespaces)');
  const ns = `wmtmon${process.pid}`;
  await defaultRunner.run(['ip', 'netns', 'add', ns]);
  const nft = (script: string) =>
    defaultRunner.run(['ip', 'netns', 'exec', ns, 'nft', '-f', '-'], { input: script });
  let deleted = 0;
  const errors: string[] = [];
  const monitor = new NftTableMonitor({
    prefix: ['ip', 'netns', 'exec', ns],
    onDeleted: () => deleted++,
    onError: (e) => errors.push(e.message),
  });
  t.teardown(async () => {
    monitor.stop();
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  });
  await monitor.start();
  await sleep(300);
  await nft('add table inet wiremesh\nadd table inet other\ndelete table inet other\n');
  await sleep(300);
  t.is(deleted, 0, 'adding tables and deleting another table is not a deletion of ours');
  await nft('delete table inet wiremesh\n');
  for (let i = 0; i < 50 && deleted === 0; i++) await sleep(100);
  t.is(deleted, 1);
  t.deepEqual(errors, []);

  // nft killed: whatever happened meanwhile is reported as a possible deletion, and
  // a new monitor sees the next real one.
  const first = monitor.pid;
  if (first === undefined) return t.fail('no nft running');
  process.kill(first, 'SIGKILL');
  for (let i = 0; i < 50 && deleted < 2; i++) await sleep(100);
  t.is(deleted, 2);
  t.is(errors.length, 1);
  for (let i = 0; i < 50 && (monitor.pid === undefined || monitor.pid === first); i++)
    await sleep(100);
  t.not(monitor.pid, undefined);
  await sleep(300);
  await nft('add table inet wiremesh\ndelete table inet wiremesh\n');
  for (let i = 0; i < 50 && deleted < 3; i++) await sleep(100);
  t.is(deleted, 3);
});
