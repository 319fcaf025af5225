import test from 'ava';
import { CidrMatcher, addressValue, cidrContains, hostCidr, parseCidr } from './cidr.ts';
import { parseCanonicalCidr } from '../ipam/cidr.ts';

test('CidrMatcher answers as testing every CIDR in order would', (t) => {
  const cidrs = [
    '100.64.0.0/16',
    '100.64.3.0/26',
    '198.18.0.0/24',
    '100.66.0.0/32',
    'fd00:64::/48',
  ];
  const m = new CidrMatcher(cidrs);
  const addresses = [
    '100.64.3.1', // in the pool and its block: the pool, given first
    '100.63.255.255',
    '100.65.0.0',
    '100.66.0.0',
    '100.66.0.1',
    '198.18.0.255',
    '198.18.1.0',
    'fd00:64::1',
    'fd00:65::1',
    '10.0.0.1',
  ];
  for (const a of addresses)
    t.is(
      m.find(a),
      cidrs.find((c) => cidrContains(parseCidr(c), a)),
      a,
    );
  t.is(m.find('100.64.3.1'), '100.64.0.0/16');
  t.is(new CidrMatcher(['100.64.3.0/26', '100.64.0.0/16']).find('100.64.3.1'), '100.64.3.0/26');
  t.is(new CidrMatcher([]).find('not an address'), undefined, 'nothing to match, nothing parsed');
  t.throws(() => m.find('not an address'));
});

test('parsed CIDRs and addresses are kept and shared: the same frozen result, an error each time', (t) => {
  const a = parseCidr('fd00:64::/48');
  t.is(parseCidr('fd00:64::/48'), a);
  t.true(Object.isFrozen(a));
  t.throws(() => {
    (a as { prefix: number }).prefix = 64;
  });
  t.is(parseCidr('fd00:64::/48').prefix, 48);
  t.true(cidrContains(a, 'fd00:64::1'));
  t.false(cidrContains(a, '100.64.0.1'));
  t.is(addressValue('fd00:64::1'), addressValue('fd00:64::1'));
  t.is(hostCidr('fd00:64::1'), 'fd00:64::1/128');
  for (let i = 0; i < 2; i++)
    t.throws(() => parseCidr('fd00:64::/129'), { message: /invalid CIDR/ });
  const canonical = parseCanonicalCidr('100.64.0.0/16');
  t.is(parseCanonicalCidr('100.64.0.0/16'), canonical);
  t.true(canonical.ok && Object.isFrozen(canonical.value));
  t.deepEqual(parseCanonicalCidr('100.64.0.1/16'), parseCanonicalCidr('100.64.0.1/16'));
  t.false(parseCanonicalCidr('100.64.0.1/16').ok);
});
