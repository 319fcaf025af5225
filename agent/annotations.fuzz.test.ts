// Fuzz of the node-annotation parsers (untrusted: anyone who can patch a Node writes
// them): WireGuard keys (crypto/keys.ts), endpoints (endpoint.ts) and the whole
// V1Node translation (meshnode.ts). Each never throws, and what it accepts holds:
// a key decodes to 32 non-zero bytes in its one canonical spelling, an endpoint
// round-trips through the parser unchanged, a node keeps no refused annotation and
// names every one it refused.
import test from 'ava';
import type { V1Node } from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';
import { generateKeyPair, parsePrivateKey, parsePublicKey } from '../crypto/index.ts';
import { expect, fuzz, hostileValue, mutateString, type Rng } from '../sys/fuzz.ts';
import {
  ANNOTATION_ENDPOINT,
  ANNOTATION_ENDPOINT_OVERRIDE,
  ANNOTATION_PERSISTENT_KEEPALIVE,
  ANNOTATION_PUBLIC_KEY,
} from './annotations.ts';
import { formatEndpoint, parseEndpoint } from './endpoint.ts';
import { meshNodeFromK8s } from './meshnode.ts';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

function keyCandidate(rng: Rng): unknown {
  switch (rng.int(7)) {
    case 0:
      return generateKeyPair((n) => rng.bytes(n)).publicKey;
    case 1:
      return mutateString(rng, generateKeyPair((n) => rng.bytes(n)).publicKey);
    case 2:
      return rng.bytes(rng.int(40)).toString('base64');
    case 3:
      return rng.bytes(32).toString('base64url');
    case 4:
      return rng.string(B64, 40 + rng.int(8)) + '='.repeat(rng.int(3));
    case 5:
      return Buffer.alloc(32).toString('base64');
    default:
      return hostileValue(rng);
  }
}

test('fuzz: WireGuard key parsers accept only 32 non-zero bytes in canonical base64', (t) => {
  let accepted = 0;
  fuzz(0x6b657973, 5000, keyCandidate, (value) => {
    for (const parse of [parsePublicKey, parsePrivateKey]) {
      const r = parse(value);
      if (r.ok) {
        const bytes = Buffer.from(r.key, 'base64');
        expect(bytes.length === 32, `accepted key decodes to ${bytes.length} bytes`);
        expect(bytes.toString('base64') === r.key, 'accepted key is not canonical');
        expect(r.key === value, 'accepted key differs from the input');
        expect(
          bytes.some((b) => b !== 0),
          'accepted the all-zero key',
        );
        accepted++;
      } else {
        expect(typeof r.reason === 'string' && r.reason.length > 0, 'a refusal without a reason');
        // A refused private key must not leak through the reason.
        if (typeof value === 'string' && value.length >= 8) {
          expect(!r.reason.includes(value), 'the reason repeats the value');
        }
      }
    }
  });
  t.true(accepted > 500, `only ${accepted} keys accepted: the generator lost its valid half`);
});

function ipv4(rng: Rng): string {
  const octet = () =>
    rng.chance(0.9) ? String(rng.int(256)) : rng.pick(['256', '00', '01', '-1', '999', '']);
  return Array.from({ length: rng.chance(0.9) ? 4 : rng.int(6) }, octet).join('.');
}

function ipv6(rng: Rng): string {
  const group = () => rng.int(0x10000).toString(16);
  switch (rng.int(4)) {
    case 0:
      return Array.from({ length: 8 }, group).join(':');
    case 1:
      return `${group()}::${group()}`;
    case 2:
      return `::ffff:${ipv4(rng)}`;
    default:
      return rng.pick(['::', '::1', 'fe80::1%eth0', '1::2::3', 'fd00:0:0::1', 'FD00::1']);
  }
}

function hostName(rng: Rng): string {
  const label = () => rng.string('abcdefghijklmnopqrstuvwxyz0123456789-', 1 + rng.int(12));
  return Array.from({ length: 1 + rng.int(4) }, label).join('.');
}

function endpointCandidate(rng: Rng): unknown {
  const port = rng.chance(0.85)
    ? String(1 + rng.int(65535))
    : rng.pick(['0', '65536', '', '080', '99999', '-1', '1e3', ' 80']);
  let text: string;
  switch (rng.int(4)) {
    case 0:
      text = `${ipv4(rng)}:${port}`;
      break;
    case 1:
      text = rng.chance(0.85) ? `[${ipv6(rng)}]:${port}` : `${ipv6(rng)}:${port}`;
      break;
    case 2:
      text = `${hostName(rng)}:${port}`;
      break;
    default:
      return hostileValue(rng);
  }
  return rng.chance(0.3) ? mutateString(rng, text) : text;
}

test('fuzz: an accepted endpoint round-trips and names a valid host and port', (t) => {
  let accepted = 0;
  fuzz(0x656e6470, 5000, endpointCandidate, (value) => {
    const r = parseEndpoint(value);
    if (!r.ok) {
      expect(typeof r.reason === 'string' && r.reason.length > 0, 'a refusal without a reason');
      return;
    }
    accepted++;
    expect(Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535, `port ${r.port}`);
    expect(r.endpoint === formatEndpoint(r.host, r.port), 'endpoint is not host and port');
    const again = parseEndpoint(r.endpoint);
    expect(again.ok && again.endpoint === r.endpoint, `'${r.endpoint}' does not round-trip`);
    if (ipaddr.isValid(r.host)) {
      expect(ipaddr.parse(r.host).toString() === r.host, `host ${r.host} is not canonical`);
    } else {
      expect(/^[a-z0-9.-]+$/i.test(r.host) && r.host.length <= 253, `host ${r.host}`);
    }
  });
  t.true(accepted > 1000, `only ${accepted} endpoints accepted`);
});

const ANNOTATED = [
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_ENDPOINT,
  ANNOTATION_ENDPOINT_OVERRIDE,
  ANNOTATION_PERSISTENT_KEEPALIVE,
] as const;

// The apiserver guarantees the shape of a Node (annotations map strings to strings);
// the values are what anyone with patch rights on the Node chose.
function nodeCandidate(rng: Rng): V1Node {
  const annotations: Record<string, string> = {};
  for (const key of ANNOTATED) {
    if (rng.chance(0.25)) continue;
    let v: unknown;
    if (key === ANNOTATION_PUBLIC_KEY) v = keyCandidate(rng);
    else if (key === ANNOTATION_PERSISTENT_KEEPALIVE)
      v = rng.pick(['0', '25', '65535', '65536', '-1', '1.5', '', ' 25', '0x19', '99999', '007']);
    else v = endpointCandidate(rng);
    annotations[key] = typeof v === 'string' ? v : String(v);
  }
  const addresses = Array.from({ length: rng.int(3) }, () => ({
    type: rng.pick(['InternalIP', 'ExternalIP', 'Hostname', 'internalip']),
    address: rng.pick([ipv4(rng), ipv6(rng), hostName(rng), '']),
  }));
  return {
    metadata: rng.chance(0.05)
      ? undefined
      : {
          name: rng.chance(0.9) ? hostName(rng) : undefined,
          uid: 'u',
          annotations: rng.chance(0.05) ? undefined : annotations,
          creationTimestamp: rng.pick([
            undefined,
            new Date(rng.int(2 ** 40)),
            new Date(Number.NaN),
            'yesterday' as unknown as Date,
          ]),
        },
    status: rng.chance(0.05) ? undefined : { addresses },
  };
}

test('fuzz: a node keeps only valid annotations and names each one it refuses', (t) => {
  let withProblems = 0;
  fuzz(0x6e6f6465, 3000, nodeCandidate, (node) => {
    const m = meshNodeFromK8s(node);
    const a = node.metadata?.annotations ?? {};
    if (m.publicKey !== null) {
      expect(parsePublicKey(m.publicKey).ok, 'kept a key the key parser refuses');
      expect(Buffer.from(m.publicKey, 'base64').length === 32, 'kept a key not of 32 bytes');
    }
    for (const [field, key] of [
      [m.endpoint, ANNOTATION_ENDPOINT],
      [m.endpointOverride, ANNOTATION_ENDPOINT_OVERRIDE],
    ] as const) {
      if (field !== null) {
        const again = parseEndpoint(field);
        expect(again.ok && again.endpoint === field, `kept endpoint '${field}' does not parse`);
      } else if (a[key] !== undefined) {
        expect(
          m.problems.some((p) => p.reason === 'InvalidEndpoint' && p.message.includes(key)),
          `refused ${key} without a problem naming it`,
        );
      }
    }
    if (a[ANNOTATION_PUBLIC_KEY] !== undefined && m.publicKey === null) {
      expect(
        m.problems.some((p) => p.message.includes(ANNOTATION_PUBLIC_KEY)),
        'refused key without a problem naming the annotation',
      );
    }
    const ka = m.persistentKeepalive;
    expect(Number.isInteger(ka) && ka >= 0 && ka <= 65535, `keepalive ${ka}`);
    const rawKa = a[ANNOTATION_PERSISTENT_KEEPALIVE];
    if (rawKa !== undefined && String(ka) !== rawKa.replace(/^0+(?=\d)/, '')) {
      expect(
        m.problems.some((p) => p.message.includes(ANNOTATION_PERSISTENT_KEEPALIVE)),
        'refused keepalive without a problem naming it',
      );
    }
    for (const ip of m.internalIPs) {
      expect(ipaddr.isValid(ip) && ipaddr.parse(ip).toString() === ip, `internal IP '${ip}'`);
    }
    expect(Number.isFinite(m.createdAt), 'createdAt is not a number');
    for (const p of m.problems) expect(p.message.includes('wiremesh.io/'), p.message);
    if (m.problems.length) withProblems++;
  });
  t.true(withProblems > 300 && withProblems < 2900, `${withProblems} of 3000 nodes had problems`);
});
