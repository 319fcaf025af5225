import test from 'ava';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePrivateKey, publicKeyOf } from './keys.ts';
import { KeyStore } from './store.ts';

let root = '';
let count = 0;
test.before(async () => {
  root = await mkdtemp(join(tmpdir(), 'wiremesh-crypto-'));
});
test.after.always(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

/** A fresh state directory per test, not yet created. */
const freshDir = () => join(root, `node${++count}`, 'var-lib-wiremesh');
const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

test('the first load creates a 0600 key in a 0700 directory; the next reuses it', async (t) => {
  const dir = freshDir();
  const store = new KeyStore(dir);
  t.is(store.path, join(dir, 'private.key'));
  const first = await store.loadOrCreate();
  t.true(first.created);
  t.false(first.tightenedMode);
  t.true(parsePrivateKey(first.keyPair.privateKey).ok);
  t.is(first.keyPair.publicKey, publicKeyOf(first.keyPair.privateKey));
  t.is(await readFile(store.path, 'utf8'), `${first.keyPair.privateKey}\n`);
  t.is(await modeOf(store.path), 0o600);
  t.is(await modeOf(dir), 0o700);

  const again = await new KeyStore(dir).loadOrCreate();
  t.deepEqual(again, { keyPair: first.keyPair, created: false, tightenedMode: false });
});

test('a key file readable by others is tightened to 0600 and kept', async (t) => {
  const store = new KeyStore(freshDir());
  const { keyPair } = await store.loadOrCreate();
  await chmod(store.path, 0o644);
  t.deepEqual(await store.loadOrCreate(), { keyPair, created: false, tightenedMode: true });
  t.is(await modeOf(store.path), 0o600);
});

test('a key written without a trailing newline (echo -n) is accepted', async (t) => {
  const store = new KeyStore(freshDir());
  await store.loadOrCreate();
  const key = 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHl8=';
  await writeFile(store.path, key);
  t.is((await store.loadOrCreate()).keyPair.publicKey, publicKeyOf(key));
});

test('corrupt content is an error naming the file and reason, never the content', async (t) => {
  const store = new KeyStore(freshDir());
  await store.loadOrCreate();
  for (const [content, reason] of [
    ['s3cr3t-material-not-base64\n', /is not valid base64/],
    [`${'A'.repeat(40)}AA==\n`, /decodes to 31 bytes/],
    ['\n', /is empty/],
  ] as const) {
    await writeFile(store.path, content, { mode: 0o600 });
    const e = await t.throwsAsync(store.loadOrCreate());
    const message = e?.message ?? '';
    t.true(message.includes(store.path), message);
    t.regex(message, reason);
    t.regex(message, /refusing to replace/);
    if (content.trim()) t.false(message.includes(content.trim()), message);
    t.is(await readFile(store.path, 'utf8'), content, 'the identity file is left as it was');
  }
});

test('rotate replaces the key and a reload returns the new one', async (t) => {
  const dir = freshDir();
  const store = new KeyStore(dir);
  const { keyPair: old } = await store.loadOrCreate();
  const rotated = await store.rotate();
  t.not(rotated.privateKey, old.privateKey);
  t.not(rotated.publicKey, old.publicKey);
  t.deepEqual(await new KeyStore(dir).loadOrCreate(), {
    keyPair: rotated,
    created: false,
    tightenedMode: false,
  });
  t.is(await modeOf(store.path), 0o600);
  t.deepEqual(await readdir(dir), ['private.key'], 'no temporary file is left behind');
});

test('a stale private.key.tmp from a crash neither breaks nor loosens anything', async (t) => {
  const dir = freshDir();
  const store = new KeyStore(dir);
  const { keyPair } = await store.loadOrCreate();
  await writeFile(`${store.path}.tmp`, 'half-written garbage', { mode: 0o644 });
  t.deepEqual((await store.loadOrCreate()).keyPair, keyPair, 'the stale file is ignored');
  const rotated = await store.rotate();
  t.is(await modeOf(store.path), 0o600, 'the stale file mode does not carry over');
  t.deepEqual((await store.loadOrCreate()).keyPair, rotated);
  t.deepEqual(await readdir(dir), ['private.key']);

  const other = freshDir();
  await mkdir(other, { recursive: true });
  await writeFile(join(other, 'private.key.tmp'), 'half-written garbage', { mode: 0o644 });
  const created = new KeyStore(other);
  t.true((await created.loadOrCreate()).created, 'a stale file alone is not a key');
  t.is(await modeOf(created.path), 0o600);
});
