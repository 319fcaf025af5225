// Fuzz of the IPAM boundary (k8s.ts, cidr.ts, selector.ts) and of the agent's pool
// view (agent/pools.ts): IPPool and IPAMBlock specs are untrusted even behind the
// CRD schema (an older CRD, a direct etcd write). Starting from valid objects and
// changing them in a few places, each parser never throws; an accepted pool holds
// every invariant ipam/types.ts promises (canonical CIDR, blockSize within its
// family's bounds and no shorter than the pool, known settings), a refused pool
// names the field at fault, a kept block holds only allocations inside it, and the
// pools an agent routes never overlap.
import test from 'ava';
import { poolsFromK8s } from '../agent/pools.ts';
import { expect, fuzz, hostileValue, mutate, mutateString, type Rng } from '../sys/fuzz.ts';
import {
  cidrContainsValue,
  cidrsOverlap,
  formatCidr,
  parseCanonicalAddress,
  parseCanonicalCidr,
} from './cidr.ts';
import { ipamBlockFromK8s, ipPoolFromK8s } from './k8s.ts';
import { parseLabelSelector } from './selector.ts';
import {
  BLOCK_SIZE_RANGE,
  ENCAPSULATIONS,
  ENCRYPTIONS,
  ENCRYPTION_MODES,
  SELECTOR_OPERATORS,
} from './types.ts';

const CIDRS = [
  '100.64.0.0/16',
  '100.64.0.0/26',
  '100.64.0.0/10',
  '10.0.0.0/8',
  '100.64.1.0/24',
  '0.0.0.0/0',
  'fd00:64::/48',
  'fd00:64::/122',
  '2001:db8::/32',
  '::/0',
  '100.64.0.1/16',
  '100.064.0.0/16',
  'fd00:0064::/48',
  'FD00:64::/48',
  '100.64.0.0/33',
  '100.64.0.0',
  '::ffff:100.64.0.0/112',
];

function cidrCandidate(rng: Rng): unknown {
  const r = rng.next();
  if (r < 0.6) return rng.pick(CIDRS);
  if (r < 0.9) return mutateString(rng, rng.pick(CIDRS));
  return hostileValue(rng);
}

test('fuzz: an accepted CIDR or address is canonical and says so of itself', (t) => {
  let accepted = 0;
  fuzz(0x63696472, 5000, cidrCandidate, (text) => {
    const c = parseCanonicalCidr(text as string);
    if (c.ok) {
      accepted++;
      expect(formatCidr(c.value) === text, `'${String(text)}' is not its own canonical form`);
      expect(c.value.prefix >= 0 && c.value.prefix <= c.value.bits, 'prefix out of range');
    } else expect(c.reason.length > 0, 'a refusal without a reason');
    const addrText = typeof text === 'string' ? text.split('/')[0] : text;
    const a = parseCanonicalAddress(addrText as string);
    if (a.ok) {
      const back = parseCanonicalCidr(`${String(addrText)}/${a.value.family === 4 ? 32 : 128}`);
      expect(back.ok && back.value.base === a.value.value, `address '${String(addrText)}'`);
    }
  });
  t.true(accepted > 1000, `only ${accepted} CIDRs accepted`);
});

const SELECTOR = {
  matchLabels: { zone: 'a' },
  matchExpressions: [{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }],
};

const VALID_POOL = {
  apiVersion: 'wiremesh.io/v1alpha1',
  kind: 'IPPool',
  metadata: { name: 'default', uid: 'u1', creationTimestamp: '2025-01-01T00:00:00Z' },
  spec: {
    cidr: '100.64.0.0/16',
    blockSize: 26,
    nodeSelector: SELECTOR,
    encryption: 'WireGuard',
    encryptionMode: 'Required',
    encapsulation: 'None',
    natOutgoing: true,
    disabled: false,
  },
};

const NEAR_POOL: unknown[] = [
  ...CIDRS,
  ...ENCRYPTIONS,
  ...ENCRYPTION_MODES,
  ...ENCAPSULATIONS,
  ...SELECTOR_OPERATORS,
  16,
  19,
  20,
  24,
  26,
  32,
  33,
  115,
  116,
  122,
  128,
  129,
  '26',
  'wireguard',
  { matchLabels: {} },
  { matchExpressions: [{ key: 'k', operator: 'Exists' }] },
  { matchExpressions: [{ key: 'k', operator: 'Exists', values: ['v'] }] },
];

// Where each field's refusal must point: the problem message names it.
const FIELD_OF: Record<string, RegExp> = {
  InvalidCIDR: /spec\.cidr/,
  InvalidBlockSize: /spec\.blockSize/,
  InvalidNodeSelector: /spec\.nodeSelector/,
  InvalidSetting: /spec\.(encryption|encryptionMode|encapsulation|natOutgoing|disabled)\b/,
  InvalidName: /metadata\.name|name/,
};

function checkPool(raw: unknown): void {
  const { pool, problems } = ipPoolFromK8s(raw);
  if (!pool) {
    expect(problems.length > 0, 'refused without a problem');
  } else {
    expect(problems.length === 0, 'accepted with problems');
    const c = parseCanonicalCidr(pool.cidr);
    expect(c.ok && formatCidr(c.value) === pool.cidr, `pool CIDR '${pool.cidr}' not canonical`);
    expect(c.value.family === pool.family, 'family differs from the CIDR');
    const [min, max] = BLOCK_SIZE_RANGE[pool.family];
    expect(
      Number.isInteger(pool.blockSize) && pool.blockSize >= min && pool.blockSize <= max,
      `blockSize ${pool.blockSize} out of bounds for IPv${pool.family}`,
    );
    expect(pool.blockSize >= c.value.prefix, `blocks /${pool.blockSize} larger than the pool`);
    expect(ENCRYPTIONS.includes(pool.encryption), `encryption ${pool.encryption}`);
    expect(ENCRYPTION_MODES.includes(pool.encryptionMode), `mode ${pool.encryptionMode}`);
    expect(ENCAPSULATIONS.includes(pool.encapsulation), `encapsulation ${pool.encapsulation}`);
    expect(
      !(pool.encryption === 'None' && pool.encryptionMode === 'Required'),
      'Required without encryption',
    );
    expect(typeof pool.natOutgoing === 'boolean' && typeof pool.disabled === 'boolean', 'flags');
    expect(pool.name.length > 0, 'a pool without a name');
    const sel = parseLabelSelector(pool.nodeSelector);
    expect(sel.ok, 'the kept selector does not parse again');
  }
  for (const p of problems) {
    const field = FIELD_OF[p.reason];
    expect(field !== undefined && field.test(p.message), `'${p.message}' names no field`);
    expect(p.object.startsWith('IPPool/'), `problem object ${p.object}`);
  }
}

test('fuzz: an accepted IPPool holds every invariant; a refused one names the field', (t) => {
  let accepted = 0;
  fuzz(
    0x706f6f6c,
    5000,
    (rng) => mutate(rng, VALID_POOL, NEAR_POOL),
    (raw) => {
      checkPool(raw);
      if (ipPoolFromK8s(raw).pool) accepted++;
    },
  );
  t.true(accepted > 500 && accepted < 4500, `${accepted} of 5000 pools accepted`);
});

const VALID_BLOCK = {
  metadata: { name: '100-64-0-0-26', uid: 'b1', resourceVersion: '9' },
  spec: {
    cidr: '100.64.0.0/26',
    pool: 'default',
    node: 'n1',
    allocations: {
      'wiremesh.c1.eth0': {
        address: '100.64.0.1',
        namespace: 'ns',
        pod: 'p1',
        containerID: 'c1',
        ifName: 'eth0',
      },
      'wiremesh.c2.eth0': {
        address: '100.64.0.2',
        namespace: 'ns',
        pod: 'p2',
        containerID: 'c2',
        ifName: 'eth0',
      },
    },
  },
};

const NEAR_BLOCK: unknown[] = [
  '100.64.0.1',
  '100.64.0.2',
  '100.64.0.63',
  '100.64.0.64',
  '100.64.0.01',
  'fd00:64::1',
  '100-64-0-0-26',
  ...CIDRS,
  { address: '100.64.0.1' },
];

test('fuzz: a kept IPAMBlock holds only canonical allocations inside it', (t) => {
  let kept = 0;
  fuzz(
    0x626c6f63,
    5000,
    (rng) => mutate(rng, VALID_BLOCK, NEAR_BLOCK),
    (raw) => {
      const { block, problems } = ipamBlockFromK8s(raw);
      if (!block) {
        expect(
          problems.some((p) => /spec\.(cidr|pool|node)/.test(p.message)),
          `refused for no named field: ${problems.map((p) => p.message).join('; ')}`,
        );
        return;
      }
      kept++;
      const c = parseCanonicalCidr(block.cidr);
      expect(c.ok && formatCidr(c.value) === block.cidr, `block CIDR '${block.cidr}'`);
      expect(block.pool.length > 0 && block.node.length > 0, 'a block without pool or node');
      const seen = new Set<string>();
      for (const [handle, a] of block.allocations) {
        expect(a.handle === handle, 'handle differs from its key');
        const addr = parseCanonicalAddress(a.address);
        expect(
          addr.ok && cidrContainsValue(c.value, addr.value.family, addr.value.value),
          `allocation ${a.address} outside ${block.cidr}`,
        );
        for (const s of [a.namespace, a.pod, a.containerID, a.ifName]) {
          expect(typeof s === 'string', 'an attribute that is not a string');
        }
        if (seen.has(a.address)) {
          expect(
            problems.some((p) => p.reason === 'DuplicateAddress'),
            `${a.address} twice without a problem`,
          );
        }
        seen.add(a.address);
      }
    },
  );
  t.true(kept > 1000, `only ${kept} blocks kept`);
});

function poolSet(rng: Rng): unknown[] {
  return Array.from({ length: 1 + rng.int(4) }, (_, i) => {
    const p = mutate(rng, VALID_POOL, NEAR_POOL) as { metadata?: { name?: unknown } };
    if (rng.chance(0.7) && p?.metadata && typeof p.metadata === 'object')
      p.metadata.name = `pool-${i}`;
    const spec = (p as { spec?: Record<string, unknown> }).spec;
    if (rng.chance(0.6) && spec && typeof spec === 'object')
      spec.cidr = rng.pick(['100.64.0.0/16', '100.65.0.0/16', '100.64.0.0/10', 'fd00:64::/48']);
    return p;
  });
}

test('fuzz: the pools an agent routes are valid and never overlap', (t) => {
  let several = 0;
  fuzz(0x61706f6c, 1500, poolSet, (objects) => {
    const { pools } = poolsFromK8s(objects);
    for (const p of pools) checkPool({ metadata: { name: p.name }, spec: { ...p } });
    for (const [i, a] of pools.entries()) {
      for (const b of pools.slice(i + 1)) {
        const ca = parseCanonicalCidr(a.cidr);
        const cb = parseCanonicalCidr(b.cidr);
        expect(ca.ok && cb.ok && !cidrsOverlap(ca.value, cb.value), `${a.cidr} overlaps ${b.cidr}`);
      }
    }
    if (pools.length > 1) several++;
  });
  t.true(several > 20, `only ${several} cases kept more than one pool`);
});
