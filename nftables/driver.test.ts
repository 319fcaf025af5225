// The table driver against FakeNft: full replace first, increments afterwards, nothing
// when nothing changed, a failed transaction keeps the previous ruleset and forces a full
// replace, drift found by verify is repaired by a full replace.
import test from 'ava';
import { sampleTable } from './fixtures.ts';
import { FakeNft, NftApplyError, TableDriver, checkTable, type NftTable } from './index.ts';

function setup(): { nft: FakeNft; driver: TableDriver } {
  const nft = new FakeNft();
  return { nft, driver: new TableDriver(nft) };
}

function changed(): NftTable {
  const table = sampleTable();
  table.sets[0]!.elements.push('100.64.3.3');
  table.maps[0]!.elements['100.64.0.6'] = 'jump pol-web';
  return table;
}

test('the first apply replaces the whole table in one transaction', async (t) => {
  const { nft, driver } = setup();
  const report = await driver.apply(sampleTable());
  t.is(report.mode, 'full');
  t.is(report.reason, 'first apply');
  t.is(nft.applied.length, 1);
  t.is(report.operations, nft.applied[0]!.length);
  t.deepEqual(
    nft.applied[0]!.slice(0, 3).map((op) => op.kind),
    ['add-table', 'delete-table', 'add-table'],
  );
  t.deepEqual(nft.table(), checkTable(sampleTable()));
});

test('the first apply also replaces a table left by an earlier agent', async (t) => {
  const { nft, driver } = setup();
  nft.byHand([{ kind: 'add-table' }, { kind: 'add-chain', chain: 'stale' }]);
  await driver.apply(sampleTable());
  t.deepEqual(nft.table(), checkTable(sampleTable()));
});

test('afterwards only the difference is applied, and the result is the desired table', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  const report = await driver.apply(changed());
  t.deepEqual(report, { mode: 'incremental', operations: 3 });
  t.deepEqual(
    nft.applied[1]!.map((op) => op.kind),
    ['add-elements', 'delete-map-elements', 'add-map-elements'],
  );
  t.deepEqual(nft.table(), checkTable(changed()));
});

test('chains added, rewritten and removed incrementally end in the desired table', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  const next = sampleTable();
  next.chains = next.chains.filter((c) => c.name !== 'pol-db');
  delete next.maps[0]!.elements['100.64.0.7'];
  next.chains.push({ name: 'pol-api', rules: ['ip6 saddr @ns-prod-v6 drop'] });
  next.chains[2]!.rules = ['jump pol-api'];
  next.sets = next.sets.filter((s) => s.name !== 'pod-svc' && s.name !== 'pod-ifaces');
  const report = await driver.apply(next);
  t.is(report.mode, 'incremental');
  t.deepEqual(nft.table(), checkTable(next));
});

test('applying the same table again runs no transaction', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  t.deepEqual(await driver.apply(sampleTable()), { mode: 'unchanged', operations: 0 });
  t.is(nft.transactions.length, 1);
});

test('a failed transaction keeps the previous table and state, and the next apply is full', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  nft.failNext();
  const error = await t.throwsAsync(driver.apply(changed()), { instanceOf: NftApplyError });
  t.is(error.mode, 'incremental');
  t.regex(
    error.message,
    /incremental apply of table inet wiremesh \(3 operations\) failed, previous ruleset kept/,
  );
  t.regex(error.nftMessage, /Operation not permitted \(injected by FakeNft\)/);
  t.truthy(error.cause);
  t.deepEqual(nft.table(), checkTable(sampleTable()));
  t.deepEqual(driver.applied, checkTable(sampleTable()));
  const report = await driver.apply(changed());
  t.is(report.mode, 'full');
  t.is(report.reason, 'previous incremental apply failed');
  t.deepEqual(nft.table(), checkTable(changed()));
});

test('a transaction the kernel refuses is reported with its message', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  nft.byHand([{ kind: 'delete-elements', set: 'ns-prod-v4', elements: ['100.64.1.7'] }]);
  const next = sampleTable();
  next.sets[0]!.elements = ['100.64.0.0/26'];
  const error = await t.throwsAsync(driver.apply(next), { instanceOf: NftApplyError });
  t.regex(
    error.nftMessage,
    /No such file or directory\ndelete element inet wiremesh ns-prod-v4 \{ 100\.64\.1\.7 \}/,
  );
  t.is((await driver.apply(next)).mode, 'full');
  t.deepEqual(nft.table(), checkTable(next));
});

test('an invalid desired table is refused before anything is applied', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  const bad = sampleTable();
  bad.chains[2]!.rules.push('accept; flush ruleset');
  await t.throwsAsync(driver.apply(bad), { message: /rule in chain 'pol-web' contains ";"/ });
  t.is(nft.transactions.length, 1);
  t.is((await driver.apply(changed())).mode, 'incremental');
});

test('verify finds a deleted table; the next apply repairs it with a full replace', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  t.deepEqual(await driver.verify(), { inSync: true, differences: [] });
  await nft.deleteTable();
  const report = await driver.verify();
  t.false(report.inSync);
  t.deepEqual(report.differences, ['table inet wiremesh is missing']);
  const repair = await driver.apply(sampleTable());
  t.is(repair.mode, 'full');
  t.regex(repair.reason ?? '', /^drift: table inet wiremesh is missing/);
  t.deepEqual(nft.table(), checkTable(sampleTable()));
});

test('verify names changed rule counts, elements, verdicts and foreign objects', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  nft.byHand([
    { kind: 'add-rule', chain: 'pol-web', rule: 'accept' },
    { kind: 'add-elements', set: 'web-ports', elements: ['22'] },
    { kind: 'delete-map-elements', map: 'to-pod', keys: ['100.64.0.6'] },
    { kind: 'add-map-elements', map: 'to-pod', elements: [['100.64.0.6', 'accept']] },
    { kind: 'add-chain', chain: 'intruder' },
  ]);
  const report = await driver.verify({ repair: true });
  t.deepEqual(report.differences, [
    "chain 'pol-web': 3 rules, expected 2",
    "chain 'intruder' is not ours",
    "set 'web-ports': 3 elements, expected 2",
    "map 'to-pod': verdicts differ",
  ]);
  t.is(report.repaired?.mode, 'full');
  t.deepEqual(nft.table(), checkTable(sampleTable()));
  t.deepEqual(await driver.verify(), { inSync: true, differences: [] });
});

test('delete removes the table and the next apply creates it whole', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  await driver.delete();
  t.is(nft.table(), null);
  t.is(driver.applied, null);
  t.is((await driver.apply(sampleTable())).mode, 'full');
});

test('a changed set type is applied as a full replace', async (t) => {
  const { nft, driver } = setup();
  await driver.apply(sampleTable());
  const next = sampleTable();
  next.sets[2] = { name: 'web-ports', type: 'inet_service', elements: ['80'] };
  const report = await driver.apply(next);
  t.is(report.mode, 'full');
  t.deepEqual(nft.table(), checkTable(next));
});

test('concurrent calls are serialised: the second apply sees the first', async (t) => {
  const { nft, driver } = setup();
  const [a, b] = await Promise.all([driver.apply(sampleTable()), driver.apply(changed())]);
  t.is(a.mode, 'full');
  t.is(b.mode, 'incremental');
  t.deepEqual(nft.table(), checkTable(changed()));
});
