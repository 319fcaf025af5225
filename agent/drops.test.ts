import test from 'ava';
import { DropAccounting, parseRuleCounters } from './drops.ts';
import type { RuleOrigin } from '../policy/index.ts';

const deny = (policies: string[], direction: RuleOrigin['direction'] = 'ingress'): RuleOrigin => ({
  tier: 'NetworkPolicy',
  direction,
  action: 'Deny',
  policies: policies.map((p) => ({ namespace: 'x', name: p })),
});

test('parseRuleCounters reads the counters of commented rules from nft -j', (t) => {
  const json = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      { chain: { name: 'pol-in-1' } },
      { rule: { chain: 'pol-in-1', comment: 'wm-a', expr: [{ return: null }] } },
      {
        rule: {
          chain: 'pol-in-1',
          comment: 'wm-b',
          expr: [{ counter: { packets: 7, bytes: 420 } }, { drop: null }],
        },
      },
      { rule: { chain: 'x', expr: [{ counter: { packets: 3, bytes: 1 } }, { drop: null }] } },
    ],
  });
  t.deepEqual(parseRuleCounters(json), [{ comment: 'wm-b', packets: 7 }]);
  t.throws(() => parseRuleCounters('{}'), { message: /no "nftables" array/ });
});

test('totals grow by the increments between reads and survive a rewritten chain', (t) => {
  const acc = new DropAccounting();
  const origins = { 'wm-d': deny(['a', 'b']), 'wm-e': deny(['a'], 'egress') };
  acc.observe([{ comment: 'wm-d', packets: 5 }], origins);
  acc.observe(
    [
      { comment: 'wm-d', packets: 8 },
      { comment: 'wm-e', packets: 2 },
      { comment: 'wm-encrypt 100.64.0.0/16', packets: 4 },
    ],
    origins,
  );
  // The chain was rewritten: its counter restarted at 0 and counted 1 since.
  acc.observe(
    [
      { comment: 'wm-d', packets: 1 },
      { comment: 'wm-e', packets: 2 },
      { comment: 'wm-encrypt 100.64.0.0/16', packets: 4 },
    ],
    origins,
  );
  const totals = acc.totals();
  const by = (policy: string, direction: string) =>
    totals.policy.find((p) => p.policy === policy && p.direction === direction)?.packets;
  // A default deny counts for each policy selecting the pod.
  t.is(by('a', 'ingress'), 9);
  t.is(by('b', 'ingress'), 9);
  t.is(by('a', 'egress'), 2);
  t.deepEqual(totals.encryption, [{ range: '100.64.0.0/16', packets: 4 }]);
});

test('allow rules and unknown tags are not drops', (t) => {
  const acc = new DropAccounting();
  const allow: RuleOrigin = { ...deny(['a']), action: 'Allow' };
  acc.observe(
    [
      { comment: 'wm-allow', packets: 3 },
      { comment: 'wm-unknown', packets: 3 },
    ],
    { 'wm-allow': allow },
  );
  t.deepEqual(acc.totals(), { policy: [], encryption: [] });
});
