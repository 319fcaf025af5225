// WireGuard keys as values: generating an X25519 pair (tweetnacl, clamped as
// `wg genkey` does) and validating keys read from outside. Keys travel as the
// 44-character standard base64 that `wg` and the node annotation use. The parsers
// take `unknown` because annotations are untrusted input: they never throw, accept
// only the one canonical spelling of 32 non-zero bytes, and explain a rejection in
// a short sentence fit for an Event. A reason never repeats the value, so a
// rejected private key cannot leak through an error or a log.
import nacl from 'tweetnacl';

export interface WireGuardKeyPair {
  privateKey: string;
  publicKey: string;
}

export type KeyParse = { ok: true; key: string } | { ok: false; reason: string };

const KEY_BYTES = 32;
/** 43 base64 characters then '='; the last character may only carry the top 4 bits of byte 32. */
const CANONICAL_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Generates a key pair; `random` is injectable so tests can use known vectors. */
export function generateKeyPair(
  random: (n: number) => Uint8Array = (n) => nacl.randomBytes(n),
): WireGuardKeyPair {
  const drawn = random(KEY_BYTES);
  if (drawn.length !== KEY_BYTES) {
    throw new Error(`key generation: random source gave ${drawn.length} bytes, need ${KEY_BYTES}`);
  }
  const secret = Uint8Array.from(drawn);
  secret[0] = secret[0]! & 248;
  secret[31] = (secret[31]! & 127) | 64;
  const pair = {
    privateKey: Buffer.from(secret).toString('base64'),
    publicKey: Buffer.from(nacl.scalarMult.base(secret)).toString('base64'),
  };
  secret.fill(0);
  return pair;
}

/** The public key for a private key, as `wg pubkey` computes it. */
export function publicKeyOf(privateKey: string): string {
  const parsed = parsePrivateKey(privateKey);
  if (!parsed.ok) throw new Error(`cannot derive a public key: the private key ${parsed.reason}`);
  const secret = Buffer.from(parsed.key, 'base64');
  const publicKey = Buffer.from(nacl.scalarMult.base(secret)).toString('base64');
  secret.fill(0);
  return publicKey;
}

export function parsePublicKey(value: unknown): KeyParse {
  return parseKey(value);
}

export function parsePrivateKey(value: unknown): KeyParse {
  return parseKey(value);
}

function parseKey(value: unknown): KeyParse {
  const reject = (reason: string): KeyParse => ({ ok: false, reason });
  if (typeof value !== 'string') return reject(`${describeType(value)}, not a string`);
  if (value === '') return reject('is empty');
  if (value.trim() !== value) return reject('has whitespace around it');
  if (!BASE64.test(value)) return reject('is not valid base64');
  if (value.length % 4 !== 0) {
    return reject(`is ${value.length} characters long, a WireGuard key is 44 characters of base64`);
  }
  const bytes = Buffer.from(value, 'base64');
  if (bytes.length !== KEY_BYTES) {
    return reject(`decodes to ${bytes.length} bytes, a WireGuard key has ${KEY_BYTES}`);
  }
  const canonical = CANONICAL_KEY.test(value) && bytes.toString('base64') === value;
  const zero = bytes.every((b) => b === 0);
  bytes.fill(0);
  if (!canonical) return reject('is not canonical base64 (stray bits in its last character)');
  if (zero) return reject('is the all-zero key');
  return { ok: true, key: value };
}

/** Names the type of a non-string without touching the value (which may be hostile). */
function describeType(value: unknown): string {
  if (value === undefined) return 'is missing';
  if (value === null) return 'is null';
  const type = typeof value;
  return `is ${type === 'object' ? 'an' : 'a'} ${type}`;
}
