import test from 'ava';
import { mkdtemp, readFile, rm, stat, writeFile, appendFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Journal,
  JournalCorruptError,
  parseJournal,
  JOURNAL_FILE,
  type JournalRecord,
} from './journal.ts';

let root = '';
let count = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wiremesh-journal-'));
});
test.after.always(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});
const freshDir = () => join(root, `j${++count}`, 'ipam');

const claim: JournalRecord = { op: 'claim', block: '100.64.0.0/26', pool: 'p', uid: 'u1' };
const alloc = (handle: string, address: string): JournalRecord => ({
  op: 'alloc',
  handle,
  address,
  block: '100.64.0.0/26',
  namespace: 'default',
  pod: handle,
  containerID: handle,
  ifName: 'eth0',
  at: 1,
});

async function lines(dir: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(join(dir, JOURNAL_FILE), 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('records are durable once flushed and replay in order; the file is 0600 in a 0700 dir', async (t) => {
  const dir = freshDir();
  const { journal, records } = await Journal.open(dir);
  t.deepEqual(records, []);
  journal.append(claim);
  journal.append(alloc('a', '100.64.0.0'));
  journal.append({ op: 'release', handle: 'a' });
  await journal.flushed();
  await journal.close();
  t.is((await stat(join(dir, JOURNAL_FILE))).mode & 0o777, 0o600);
  t.is((await stat(dir)).mode & 0o777, 0o700);
  const again = await Journal.open(dir);
  t.deepEqual(again.records, [claim, alloc('a', '100.64.0.0'), { op: 'release', handle: 'a' }]);
  t.is(again.dropped, 0);
  await again.journal.close();
  t.like((await lines(dir))[0], { op: 'begin', version: 1, b: 1 });
});

test('concurrent appends share write batches (group commit)', async (t) => {
  const dir = freshDir();
  const { journal } = await Journal.open(dir);
  journal.append(claim);
  await Promise.all(
    Array.from({ length: 50 }, async (_, i) => {
      journal.append(alloc(`h${i}`, `100.64.0.${i}`));
      await journal.flushed();
    }),
  );
  await journal.close();
  const batches = new Set((await lines(dir)).slice(1).map((l) => l.b));
  t.true(batches.size < 10, `${batches.size} batches for 51 records`);
});

test('a torn last write is dropped and truncated away; appends continue cleanly', async (t) => {
  const dir = freshDir();
  const { journal } = await Journal.open(dir);
  journal.append(claim);
  journal.append(alloc('a', '100.64.0.0'));
  await journal.flushed();
  await journal.close();
  const path = join(dir, JOURNAL_FILE);
  const good = await readFile(path, 'utf8');
  // The next batch was being written when the machine died: half a line made it.
  await appendFile(path, '{"b":3,"op":"alloc","handle":"b","addr');
  const { journal: j2, records, dropped } = await Journal.open(dir);
  t.is(dropped, 1);
  t.deepEqual(records, [claim, alloc('a', '100.64.0.0')]);
  t.is(await readFile(path, 'utf8'), good, 'the torn tail is truncated');
  j2.append(alloc('c', '100.64.0.2'));
  await j2.flushed();
  await j2.close();
  const { records: r3 } = await Journal.open(dir).then(async (o) => (await o.journal.close(), o));
  t.deepEqual(r3.at(-1), alloc('c', '100.64.0.2'));
});

test('torn shapes a crash can leave: zeros, a bad line amid the last batch, a bad next batch', async (t) => {
  const head = '{"b":1,"op":"begin","version":1}\n' + JSON.stringify({ b: 2, ...claim }) + '\n';
  const l = (b: number, r: JournalRecord) => JSON.stringify({ b, ...r }) + '\n';
  // Zero-filled pages at the end of the file.
  t.like(parseJournal(head + '\0\0\0\0\0\0'), { dropped: 1, records: [claim] });
  // Pages of the last batch landed out of order: good, garbage, good (all batch 3).
  const mid =
    head +
    l(3, alloc('a', '100.64.0.0')) +
    '{"b":3,"op":"al\0\0\n' +
    l(3, alloc('c', '100.64.0.2'));
  t.like(parseJournal(mid), { dropped: 2, records: [claim, alloc('a', '100.64.0.0')] });
  // The first line of batch 3 is garbage, later lines of batch 3 survived.
  const first = head + 'garbage\n' + l(3, alloc('c', '100.64.0.2'));
  t.like(parseJournal(first), { dropped: 2, records: [claim], lastBatch: 2 });
  // A crash while creating the file: a partial begin line and nothing else.
  t.like(parseJournal('{"b":1,"op":"beg'), { dropped: 1, records: [], lines: 0 });
});

test('corruption that a crash cannot explain refuses to open, with a way out', async (t) => {
  const head = '{"b":1,"op":"begin","version":1}\n' + JSON.stringify({ b: 2, ...claim }) + '\n';
  const l = (b: number, r: JournalRecord) => JSON.stringify({ b, ...r }) + '\n';
  const cases: [string, RegExp][] = [
    // An acknowledged batch (3) vanished under garbage while batch 4 was written after it.
    [
      head + 'garbage\n' + l(4, alloc('c', '100.64.0.2')),
      /line 3 .*unreadable record before later writes/,
    ],
    // Garbage followed by two batches.
    [
      head + 'garbage\n' + l(3, alloc('c', '100.64.0.2')) + l(4, alloc('d', '100.64.0.3')),
      /unreadable record/,
    ],
    // Batch numbers going backwards.
    [head + l(1, alloc('c', '100.64.0.2')), /batch numbers go backwards/],
    // The begin line is unreadable but records follow.
    ['xx\n' + l(2, claim), /begin record is unreadable/],
    // No begin line at all.
    [l(1, claim), /begin record must open the file/],
  ];
  for (const [text, pattern] of cases) {
    const err = t.throws(() => parseJournal(text, '/x/journal.jsonl'), {
      instanceOf: JournalCorruptError,
    });
    t.regex(err?.message ?? '', pattern);
    t.regex(
      err?.message ?? '',
      /move it aside to rebuild this node's state from its IPAMBlock objects/,
    );
  }
  const dir = freshDir();
  await Journal.open(dir).then((o) => o.journal.close());
  await appendFile(join(dir, JOURNAL_FILE), 'garbage\n' + l(9, claim));
  await t.throwsAsync(Journal.open(dir), { instanceOf: JournalCorruptError });
});

test('a journal from another format version is refused', (t) => {
  t.throws(() => parseJournal('{"b":1,"op":"begin","version":2}\n'), {
    message: /format 2 is not 1/,
  });
});

test('compaction rewrites the journal as a snapshot, atomically', async (t) => {
  const dir = freshDir();
  const { journal } = await Journal.open(dir);
  journal.append(claim);
  for (let i = 0; i < 20; i++) {
    journal.append(alloc(`h${i}`, `100.64.0.${i}`));
    journal.append({ op: 'release', handle: `h${i}` });
  }
  await journal.flushed();
  t.is(journal.lines, 42);
  await journal.compact([claim, alloc('keep', '100.64.0.9')]);
  t.is(journal.lines, 3);
  journal.append(alloc('after', '100.64.0.10'));
  await journal.flushed();
  await journal.close();
  const reopened = await Journal.open(dir);
  t.deepEqual(reopened.records, [
    claim,
    alloc('keep', '100.64.0.9'),
    alloc('after', '100.64.0.10'),
  ]);
  await reopened.journal.close();
  t.deepEqual(await readdir(dir), [JOURNAL_FILE]);
});

test('a crash during compaction leaves the old journal or the new one, never a mix', async (t) => {
  for (const point of ['compact.tmp-written', 'compact.renamed', 'compact.dir-synced']) {
    const dir = freshDir();
    const crashing = { armed: false };
    const { journal } = await Journal.open(dir, (p) => {
      if (crashing.armed && p === point) throw new Error(`crash at ${p}`);
    });
    journal.append(claim);
    journal.append(alloc('a', '100.64.0.0'));
    journal.append({ op: 'release', handle: 'a' });
    await journal.flushed();
    crashing.armed = true;
    await t.throwsAsync(journal.compact([claim]), { message: /crash at/ });
    // The process is dead; a new one opens the journal.
    const { journal: j2, records } = await Journal.open(dir);
    const old = [claim, alloc('a', '100.64.0.0'), { op: 'release', handle: 'a' }];
    t.deepEqual(records, point === 'compact.tmp-written' ? old : [claim], point);
    t.deepEqual(await readdir(dir), [JOURNAL_FILE], `${point}: no tmp file left`);
    await j2.close();
  }
});

test('a failed write or fsync poisons the journal: nothing is acknowledged after it', async (t) => {
  const dir = freshDir();
  let fail = false;
  const { journal } = await Journal.open(dir, (p) => {
    if (fail && p === 'journal.before-sync') throw new Error('EIO');
  });
  journal.append(claim);
  await journal.flushed();
  fail = true;
  journal.append(alloc('a', '100.64.0.0'));
  await t.throwsAsync(journal.flushed(), { message: /could not be written \(EIO\)/ });
  t.throws(() => journal.append(alloc('b', '100.64.0.1')), { message: /could not be written/ });
  await t.throwsAsync(journal.compact([claim]), { message: /could not be written/ });
  await journal.close();
});

test('a stale compaction tmp file is removed on open', async (t) => {
  const dir = freshDir();
  await Journal.open(dir).then((o) => o.journal.close());
  await writeFile(join(dir, `${JOURNAL_FILE}.tmp`), 'half a snapshot');
  const { journal } = await Journal.open(dir);
  await journal.close();
  t.deepEqual(await readdir(dir), [JOURNAL_FILE]);
});
