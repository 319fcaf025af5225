import test from 'ava';
import { CidrMatcher, cidrContains, parseCidr } from './cidr.ts';

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
