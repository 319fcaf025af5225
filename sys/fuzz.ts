// Test support for the `*.fuzz.test.ts` files: a seeded PRNG and generators of
// hostile input for the parsers of untrusted data (annotations, CRD specs, ConfigMap
// settings, kubeconfigs). Seeded so that a failure reproduces exactly: a test names
// its seed, and a failing case prints the value that broke it. No dependency: a
// mulberry32 generator is plenty for shaking parsers. The main tool is `mutate`:
// start from a valid object and change one to three places in it (a leaf replaced
// by a hostile atom, a string edited by a character, a key deleted or added), so
// the cases sit near the boundary between accepted and refused, where bugs live.

/** mulberry32: a small, fast 32-bit PRNG with a good spread for this purpose. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }

  /** A string of `length` characters drawn from `alphabet`. */
  string(alphabet: string, length: number): string {
    let s = '';
    for (let i = 0; i < length; i++) s += alphabet[this.int(alphabet.length)];
    return s;
  }
}

/** Values that break careless parsers: wrong types, edge numbers, odd strings. */
export const HOSTILE_ATOMS: readonly unknown[] = [
  undefined,
  null,
  true,
  false,
  0,
  -1,
  1,
  1.5,
  65535,
  65536,
  2 ** 31,
  2 ** 53 + 2,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  -0,
  '',
  ' ',
  'x',
  '0',
  '-1',
  '1e3',
  '0x10',
  'true',
  'null',
  '\u0000',
  '\n',
  '..',
  '::',
  '[::]',
  ':0',
  '/',
  '__proto__',
  'constructor',
  'é',
  '💥',
  '10.0.0.0/8',
  '100.64.0.0/16',
  'fd00::/8',
  '1.2.3.4',
  '1.2.3.4:51825',
  'x'.repeat(300),
  '9'.repeat(40),
  [],
  [null],
  ['x'],
  {},
  { x: 1 },
];

const PRINTABLE =
  'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.:/[]-_+=% @\\\t\n"\'';

/** A hostile value, possibly nested (arrays and objects of hostile values). */
export function hostileValue(rng: Rng, depth = 0): unknown {
  const r = rng.next();
  if (depth > 2 || r < 0.6) return rng.pick(HOSTILE_ATOMS);
  if (r < 0.75) return rng.string(PRINTABLE, rng.int(12));
  if (r < 0.87) return Array.from({ length: rng.int(3) }, () => hostileValue(rng, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = rng.int(3); i > 0; i--) o[rng.string('abcxyz', 1 + rng.int(3))] = hostileValue(rng);
  return o;
}

/** One character inserted, deleted, replaced or duplicated; or a case flip. */
export function mutateString(rng: Rng, s: string): string {
  const at = rng.int(s.length + 1);
  switch (rng.int(5)) {
    case 0:
      return s.slice(0, at) + rng.pick([...PRINTABLE]) + s.slice(at);
    case 1:
      return s.slice(0, at) + s.slice(at + 1);
    case 2:
      return s.slice(0, at) + rng.pick([...PRINTABLE]) + s.slice(at + 1);
    case 3:
      return s.slice(0, at) + s.slice(at, at + 4).repeat(2) + s.slice(at + 4);
    default:
      return rng.chance(0.5) ? s.toUpperCase() : ` ${s}`;
  }
}

type Path = (string | number)[];

function paths(value: unknown, prefix: Path = [], out: Path[] = []): Path[] {
  out.push(prefix);
  if (Array.isArray(value)) value.forEach((v, i) => paths(v, [...prefix, i], out));
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) paths(v, [...prefix, k], out);
  }
  return out;
}

/** A deep copy of a JSON-like value (undefined, NaN and the like survive). */
export function clone<T>(value: T): T {
  if (Array.isArray(value)) return value.map(clone) as T;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clone(v)])) as T;
  }
  return value;
}

/**
 * A copy of `valid` changed in one to three places: a value replaced by a hostile
 * one or by one of `near` (plausible values for this parser), a string edited,
 * an object key deleted or a stray key added. The root itself may be replaced.
 */
export function mutate(rng: Rng, valid: unknown, near: readonly unknown[] = []): unknown {
  let root = clone(valid);
  for (let n = 1 + rng.int(3); n > 0; n--) {
    const all = paths(root);
    const path = rng.pick(all);
    if (path.length === 0 && !rng.chance(0.05)) continue;
    const parentPath = path.slice(0, -1);
    const key = path[path.length - 1];
    let parent: unknown = root;
    for (const k of parentPath) parent = (parent as Record<string | number, unknown>)[k];
    const current = key === undefined ? root : (parent as Record<string | number, unknown>)[key];
    let next: unknown;
    const r = rng.next();
    if (typeof current === 'string' && r < 0.4) next = mutateString(rng, current);
    else if (near.length > 0 && r < 0.65) next = clone(rng.pick(near));
    else if (typeof current === 'object' && current !== null && !Array.isArray(current) && r < 0.8)
      next = { ...current, [rng.pick(['extra', 'x', '__proto__', 'spec'])]: hostileValue(rng) };
    else next = hostileValue(rng);
    if (key === undefined) {
      root = next;
    } else if (rng.chance(0.1) && !Array.isArray(parent)) {
      delete (parent as Record<string, unknown>)[key];
    } else {
      (parent as Record<string | number, unknown>)[key] = next;
    }
  }
  return root;
}

/** Runs `check` on `count` cases from `generate`; a failure names the seed, case and input. */
export function fuzz<T>(
  seed: number,
  count: number,
  generate: (rng: Rng, i: number) => T,
  check: (input: T) => void,
): void {
  const rng = new Rng(seed);
  for (let i = 0; i < count; i++) {
    const input = generate(rng, i);
    try {
      check(input);
    } catch (e) {
      throw new Error(
        `fuzz case ${i} (seed ${seed}) failed: ${(e as Error).message}\ninput: ${show(input)}`,
        { cause: e },
      );
    }
  }
}

/** A readable one-line rendering of a fuzz input (undefined, NaN, -0 and bigints visible). */
export function show(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v === undefined
      ? '<undefined>'
      : typeof v === 'number' && !Number.isFinite(v)
        ? `<${v}>`
        : typeof v === 'bigint'
          ? `${v}n`
          : v,
  );
}

/** Throws when `cond` is false: the assertion of a fuzz check (cheap enough for thousands). */
export function expect(cond: boolean, message: string): asserts cond {
  if (!cond) throw new Error(message);
}
