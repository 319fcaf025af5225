import test from 'ava';
import { ProcessRunner, requireProgram } from '../sys/exec.ts';
import { generateKeyPair, parsePrivateKey, parsePublicKey, publicKeyOf } from './keys.ts';

const VALID = 'j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8=';

// Computed once with `echo PRIVATE | wg pubkey` (wireguard-tools), the reference.
const VECTORS = [
  {
    random: Uint8Array.from({ length: 32 }, (_, i) => i),
    privateKey: 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHl8=',
    publicKey: 'j0DFrbaPJWJK5bIU6nZ6bslNgp09e14a0bpvPiE4KF8=',
  },
  {
    random: new Uint8Array(32).fill(0xff),
    privateKey: '+P///////////////////////////////////////38=',
    publicKey: 'hHwNLDdSNPNl5mCVUYejc1oPdhPRYJ06ak2MU66qWiI=',
  },
];

test('generateKeyPair clamps as WireGuard does and matches `wg pubkey`', (t) => {
  for (const v of VECTORS) {
    t.deepEqual(
      generateKeyPair(() => v.random),
      {
        privateKey: v.privateKey,
        publicKey: v.publicKey,
      },
    );
    t.is(publicKeyOf(v.privateKey), v.publicKey);
  }
});

test('publicKeyOf clamps an unclamped private key (RFC 7748 Alice, same as `wg pubkey`)', (t) => {
  t.is(
    publicKeyOf('dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo='),
    'hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=',
  );
});

test('publicKeyOf rejects an invalid private key without echoing it', (t) => {
  const e = t.throws(() => publicKeyOf('secret-but-not-a-key'));
  t.regex(e?.message ?? '', /private key is not valid base64/);
  t.notRegex(e?.message ?? '', /secret/);
});

test('generateKeyPair refuses a random source of the wrong length', (t) => {
  t.throws(() => generateKeyPair(() => new Uint8Array(31)), { message: /gave 31 bytes/ });
});

test('20 random key pairs agree with `wg pubkey`', async (t) => {
  await requireProgram('wg', 'install wireguard-tools for the reference `wg pubkey`');
  const runner = new ProcessRunner();
  for (let i = 0; i < 20; i++) {
    const pair = generateKeyPair();
    const { stdout } = await runner.run(['wg', 'pubkey'], { input: `${pair.privateKey}\n` });
    t.is(stdout.trim(), pair.publicKey);
  }
});

const REJECTED: [string, unknown, RegExp][] = [
  ['43 characters', VALID.slice(0, 43), /is 43 characters long/],
  ['45 characters', `${VALID}=`, /is 45 characters long/],
  ['45 characters, unpadded', `${VALID.slice(0, 43)}AA`, /is 45 characters long/],
  ['characters outside base64', `${VALID.slice(0, 10)}-_${VALID.slice(12)}`, /not valid base64/],
  ['a non-canonical last character', `${VALID.slice(0, 42)}9=`, /not canonical base64/],
  ['31 bytes', `${'A'.repeat(40)}AA==`, /decodes to 31 bytes, a WireGuard key has 32/],
  ['33 bytes', 'B'.repeat(44), /decodes to 33 bytes/],
  ['a leading space', ` ${VALID}`, /whitespace/],
  ['a trailing newline', `${VALID}\n`, /whitespace/],
  ['null', null, /is null, not a string/],
  ['undefined', undefined, /is missing/],
  ['a number', 42, /is a number, not a string/],
  ['an object', { key: VALID }, /is an object, not a string/],
  ['the empty string', '', /is empty/],
  ['the all-zero key', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', /is the all-zero key/],
];

test('a canonical 32-byte key is accepted as it is', (t) => {
  t.deepEqual(parsePublicKey(VALID), { ok: true, key: VALID });
  t.deepEqual(parsePrivateKey(VECTORS[1]!.privateKey), { ok: true, key: VECTORS[1]!.privateKey });
});

for (const [name, value, reason] of REJECTED) {
  test(`rejects ${name}`, (t) => {
    for (const parse of [parsePublicKey, parsePrivateKey]) {
      const result = parse(value);
      if (result.ok) return t.fail(`accepted ${JSON.stringify(value)}`);
      t.regex(result.reason, reason);
    }
  });
}

/** mulberry32: a seeded generator, so a fuzz failure can be replayed from its seed. */
function seeded(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), seed | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

test('fuzz: parsePublicKey never throws and accepts only canonical 32 non-zero bytes', (t) => {
  const seed = Math.floor(Math.random() * 2 ** 32);
  const rand = seeded(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const alphabet =
    'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\t.é\u0000';
  const inputs: unknown[] = [];
  for (let i = 0; i < 3000; i++) {
    const length = int(3) === 0 ? 44 : int(60);
    inputs.push(Array.from({ length }, () => alphabet[int(alphabet.length)]).join(''));
    const bytes = Uint8Array.from({ length: int(3) === 0 ? 32 : 28 + int(8) }, () => int(256));
    const encoded = Buffer.from(bytes).toString('base64');
    inputs.push(encoded);
    const at = int(encoded.length + 1);
    inputs.push(encoded.slice(0, at) + alphabet[int(alphabet.length)]! + encoded.slice(at + 1));
  }
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  inputs.push(0, -1, NaN, 10n, true, Symbol('k'), () => VALID, [VALID], revoked.proxy);

  let accepted = 0;
  for (const value of inputs) {
    const shown = typeof value === 'string' ? JSON.stringify(value) : typeof value;
    let result;
    try {
      result = parsePublicKey(value);
    } catch (e) {
      return t.fail(`seed ${seed}: threw on ${shown}: ${String(e)}`);
    }
    const bytes = typeof value === 'string' ? Buffer.from(value, 'base64') : undefined;
    const expected =
      bytes !== undefined &&
      bytes.length === 32 &&
      bytes.some((b) => b !== 0) &&
      bytes.toString('base64') === value;
    if (result.ok !== expected) return t.fail(`seed ${seed}: ok=${result.ok} for ${shown}`);
    if (result.ok) accepted++;
  }
  t.true(accepted > 1000, `seed ${seed}: only ${accepted} accepted, the fuzz lost its aim`);
});
