// Kernel tier: the table driver and NftCli against real nftables (nft 1.0.6) inside
// throwaway network namespaces, entered with `ip netns exec`. Each test makes its own
// namespaces and removes them in teardown, also when it fails. Traffic only between two
// namespaces of this test (veth, 198.18.252.0/24).
import test, { type ExecutionContext } from 'ava';
import { PrefixRunner, defaultRunner as runner } from '../sys/index.ts';
import { sampleTable } from './fixtures.ts';
import { requireNft, throwawayNetns } from './testing.ts';
import {
  NftApplyError,
  NftCli,
  TableDriver,
  checkTable,
  compareShape,
  type NftTable,
} from './index.ts';

const tag = process.pid % 100000;

test.before(() => requireNft('nftables/nft.netns.test.ts'));

/** A fresh namespace with lo up, deleted when the test ends. */
async function netns(t: ExecutionContext): Promise<string> {
  const name = await throwawayNetns(t, `wmnft-${tag}`);
  await inNs(name, ['ip', 'link', 'set', 'lo', 'up']);
  return name;
}

function inNs(ns: string, argv: string[], allowFailure = false) {
  return runner.run(['ip', 'netns', 'exec', ns, ...argv], { allowFailure });
}

function nftIn(ns: string): NftCli {
  return new NftCli(new PrefixRunner(runner, ['ip', 'netns', 'exec', ns]));
}

test('a full apply shows up in nft list, with every kind of object', async (t) => {
  const ns = await netns(t);
  const nft = nftIn(ns);
  t.is(await nft.listTable(), null);
  const driver = new TableDriver(nft);
  t.is((await driver.apply(sampleTable())).mode, 'full');
  const observed = await nft.listTable();
  t.deepEqual(compareShape(checkTable(sampleTable()), observed), []);
  const set = (name: string) => observed?.sets.find((s) => s.name === name)?.elements;
  t.deepEqual(set('ns-prod-v4'), ['100.64.0.0/26', '100.64.1.7']);
  t.deepEqual(set('web-ports'), ['80', '8000-8080']);
  t.deepEqual(set('iface-port'), ['wiremesh.wg . 53']);
  t.deepEqual(observed?.chains.find((c) => c.name === 'forward')?.base, {
    type: 'filter',
    hook: 'forward',
    priority: 0,
    policy: 'accept',
  });
  const map = observed?.maps.find((m) => m.name === 'to-pod');
  t.deepEqual(map?.verdicts.slice().sort(), ['drop', 'goto pol-db', 'jump pol-web']);
  const text = (await inNs(ns, ['nft', 'list', 'chain', 'inet', 'wiremesh', 'pol-web'])).stdout;
  t.regex(text, /ip saddr @ns-prod-v4 tcp dport @web-ports accept/);
  t.deepEqual(await driver.verify(), { inSync: true, differences: [] });
});

test('incremental changes (elements, verdicts, chains added, rewritten, removed) are accepted by the kernel', async (t) => {
  const ns = await netns(t);
  const nft = nftIn(ns);
  const driver = new TableDriver(nft);
  await driver.apply(sampleTable());

  const next = sampleTable();
  next.sets[0]!.elements = ['100.64.0.0/25', '100.64.2.9']; // overlaps the /26 it replaces
  next.maps[0]!.elements = {
    '100.64.0.5': 'jump pol-api',
    '100.64.0.6': 'drop',
    '100.64.0.8': 'accept',
  };
  next.chains[2]!.rules = ['ip saddr @ns-prod-v4 tcp dport @web-ports accept', 'jump pol-api'];
  next.chains = next.chains.filter((c) => c.name !== 'pol-db');
  next.chains.push({ name: 'pol-api', rules: ['tcp dport 8443 accept'] });
  next.sets = next.sets.filter((s) => s.name !== 'pod-svc' && s.name !== 'pod-ifaces');
  const report = await driver.apply(next);
  t.is(report.mode, 'incremental');
  const observed = await nft.listTable();
  t.deepEqual(compareShape(checkTable(next), observed), []);
  t.deepEqual(observed?.sets.find((s) => s.name === 'ns-prod-v4')?.elements, [
    '100.64.0.0/25',
    '100.64.2.9',
  ]);
  t.is(
    observed?.chains.find((c) => c.name === 'pol-db'),
    undefined,
  );
});

test('a failing transaction leaves the previous ruleset in the kernel; the next apply is full', async (t) => {
  const ns = await netns(t);
  const nft = nftIn(ns);
  const driver = new TableDriver(nft);
  await driver.apply(sampleTable());
  const before = await nft.listTable();

  // Valid nft syntax, refused by nft: the element is not an address. The other change
  // in the same transaction (a new element in another set) must not take effect either.
  const bad = sampleTable();
  bad.sets[0]!.elements.push('100.64.0.300');
  bad.sets[2]!.elements.push('22');
  const error = await t.throwsAsync(driver.apply(bad), { instanceOf: NftApplyError });
  t.is(error.mode, 'incremental');
  t.regex(error.nftMessage, /100\.64\.0\.300/);
  t.deepEqual(await nft.listTable(), before);

  // A jump to a missing chain, sent past the driver's checks straight to nft.
  await t.throwsAsync(
    nft.apply([
      { kind: 'add-elements', set: 'web-ports', elements: ['22'] },
      { kind: 'add-rule', chain: 'forward', rule: 'jump pol-missing' },
    ]),
    { message: /Could not process rule: No such file or directory/ },
  );
  t.deepEqual(await nft.listTable(), before);

  const good = sampleTable();
  good.sets[2]!.elements.push('22');
  const report = await driver.apply(good);
  t.is(report.mode, 'full');
  t.is(report.reason, 'previous incremental apply failed');
  t.deepEqual(compareShape(checkTable(good), await nft.listTable()), []);
});

test('a table deleted by hand is found by verify and repaired', async (t) => {
  const ns = await netns(t);
  const nft = nftIn(ns);
  const driver = new TableDriver(nft);
  await driver.apply(sampleTable());
  await inNs(ns, ['nft', 'delete', 'table', 'inet', 'wiremesh']);
  const report = await driver.verify({ repair: true });
  t.false(report.inSync);
  t.deepEqual(report.differences, ['table inet wiremesh is missing']);
  t.is(report.repaired?.mode, 'full');
  t.deepEqual(compareShape(checkTable(sampleTable()), await nft.listTable()), []);

  await inNs(ns, ['nft', 'add', 'rule', 'inet', 'wiremesh', 'pol-web', 'accept']);
  t.deepEqual((await driver.verify()).differences, ["chain 'pol-web': 3 rules, expected 2"]);
  t.is((await driver.apply(sampleTable())).mode, 'full');
  t.deepEqual((await driver.verify()).differences, []);

  await driver.delete();
  t.is(await nft.listTable(), null);
  await t.notThrowsAsync(driver.delete());
});

test('a drop rule stops a ping; removing it incrementally lets it through', async (t) => {
  const a = await netns(t);
  const b = await netns(t);
  await runner.run([
    'ip',
    '-n',
    a,
    'link',
    'add',
    'veth0',
    'type',
    'veth',
    'peer',
    'name',
    'veth0',
    'netns',
    b,
  ]);
  for (const [ns, addr] of [
    [a, '198.18.252.1/24'],
    [b, '198.18.252.2/24'],
  ] as const) {
    await inNs(ns, ['ip', 'addr', 'add', addr, 'dev', 'veth0']);
    await inNs(ns, ['ip', 'link', 'set', 'veth0', 'up']);
  }
  const ping = async () =>
    (await inNs(a, ['ping', '-c', '1', '-W', '1', '198.18.252.2'], true)).code === 0;
  t.true(await ping(), 'ping works before any table');

  const driver = new TableDriver(nftIn(b));
  const table = (blocked: string[], rules: string[]): NftTable => ({
    sets: [{ name: 'blocked', type: 'ipv4_addr', flags: ['interval'], elements: blocked }],
    maps: [],
    chains: [
      {
        name: 'input',
        base: { type: 'filter', hook: 'input', priority: 0, policy: 'accept' },
        rules,
      },
    ],
  });
  const dropRule = ['ip saddr @blocked icmp type echo-request drop'];
  t.is((await driver.apply(table(['198.18.252.0/30'], dropRule))).mode, 'full');
  t.false(await ping(), 'the drop rule with the sender in the set stops the ping');

  t.deepEqual(await driver.apply(table([], dropRule)), { mode: 'incremental', operations: 1 });
  t.true(await ping(), 'removing the element lets it through');

  t.is((await driver.apply(table(['198.18.252.1'], dropRule))).mode, 'incremental');
  t.false(await ping(), 'adding the element back stops it again');

  t.is((await driver.apply(table(['198.18.252.1'], []))).mode, 'incremental');
  t.true(await ping(), 'removing the rule lets it through');
});
