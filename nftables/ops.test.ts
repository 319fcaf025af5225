// Golden scripts for rendered transactions (full replace and increments), and the checks
// that keep a planner's mistake or a hostile value out of the script.
import test from 'ava';
import {
  checkTable,
  emptyTable,
  fullReplaceOps,
  planIncremental,
  renderScript,
  type NftOp,
  type NftTable,
} from './index.ts';
import { sampleTable } from './fixtures.ts';

test('full replace of a table with base chains, interval, concatenated and ifname sets and a verdict map', (t) => {
  t.snapshot(renderScript(fullReplaceOps(checkTable(sampleTable()))));
});

test('full replace of an empty table still deletes the old one in the same transaction', (t) => {
  t.is(
    renderScript(fullReplaceOps(emptyTable())),
    'add table inet wiremesh\ndelete table inet wiremesh\nadd table inet wiremesh\n',
  );
});

test('an incremental change: elements, a verdict retargeted, a chain rewritten, one added, one removed', (t) => {
  const prev = checkTable(sampleTable());
  const desired = sampleTable();
  desired.sets[0]!.elements = ['100.64.0.0/26', '100.64.2.9'];
  desired.maps[0]!.elements = {
    '100.64.0.5': 'jump pol-api',
    '100.64.0.6': 'drop',
    '100.64.0.8': 'accept',
  };
  desired.chains[2]!.rules = ['ip saddr @ns-prod-v4 tcp dport @web-ports accept', 'reject'];
  desired.chains = desired.chains.filter((c) => c.name !== 'pol-db');
  desired.chains.push({ name: 'pol-api', rules: ['tcp dport 8443 accept'] });
  desired.sets = desired.sets.filter((s) => s.name !== 'pod-svc');
  const ops = planIncremental(prev, checkTable(desired));
  t.truthy(ops);
  t.snapshot(renderScript(ops!));
});

test('the same table twice is no operation at all', (t) => {
  t.deepEqual(planIncremental(checkTable(sampleTable()), checkTable(sampleTable())), []);
});

test('a set whose type changes, or a base chain whose policy changes, needs a full replace', (t) => {
  const prev = checkTable(sampleTable());
  const retyped = sampleTable();
  retyped.sets[2]!.type = 'inet_proto';
  t.is(planIncremental(prev, checkTable(retyped)), null);
  const stricter = sampleTable();
  stricter.chains[0]!.base!.policy = 'drop';
  t.is(planIncremental(prev, checkTable(stricter)), null);
});

test('large element lists are split into commands of 500', (t) => {
  const elements = Array.from({ length: 1200 }, (_, i) => `10.${i >> 8}.${i & 255}.1`);
  const script = renderScript([{ kind: 'add-elements', set: 'big', elements }]);
  t.is(script.trim().split('\n').length, 3);
  t.true(script.startsWith('add element inet wiremesh big { 10.0.0.1, 10.0.1.1,'));
});

const refused = test.macro((t, ops: NftOp[], message: RegExp) => {
  t.throws(() => renderScript(ops), { message });
});
test(
  'a rule with a newline is refused, naming its chain',
  refused,
  [{ kind: 'add-rule', chain: 'pol-a', rule: 'accept\nflush ruleset' }],
  /rule in chain 'pol-a' contains "\\n"/,
);
test(
  'a rule with ; is refused',
  refused,
  [{ kind: 'add-rule', chain: 'pol-a', rule: 'accept; flush ruleset' }],
  /chain 'pol-a' contains ";"/,
);
test(
  'a rule with a comment is refused',
  refused,
  [{ kind: 'add-rule', chain: 'pol-a', rule: 'drop # accept' }],
  /chain 'pol-a' contains "#"/,
);
test(
  'an empty rule is refused',
  refused,
  [{ kind: 'add-rule', chain: 'pol-a', rule: ' ' }],
  /empty rule/,
);
test(
  'a chain name with a space is refused',
  refused,
  [{ kind: 'add-chain', chain: 'pol a' }],
  /chain name "pol a" must match/,
);
test(
  'a chain name starting with a digit is refused',
  refused,
  [{ kind: 'flush-chain', chain: '1pol' }],
  /chain name "1pol"/,
);
test(
  'a name longer than 64 characters is refused',
  refused,
  [{ kind: 'add-set', set: { name: `s${'x'.repeat(64)}`, type: 'ipv4_addr' } }],
  /longer than 64/,
);
test(
  'a keyword as a name is refused (nft 1.0.6 cannot quote names)',
  refused,
  [{ kind: 'add-chain', chain: 'fwd' }],
  /chain name 'fwd' is an nft keyword/,
);
test(
  'an element that would close the list is refused, naming its set',
  refused,
  [{ kind: 'add-elements', set: 'ns-a', elements: ['10.0.0.1 } ; flush ruleset'] }],
  /set 'ns-a' has an invalid element/,
);
test(
  'an element with a comma (a second element) is refused',
  refused,
  [{ kind: 'delete-elements', set: 'ns-a', elements: ['10.0.0.1, 10.0.0.2'] }],
  /set 'ns-a' has an invalid element/,
);
test(
  'a quoted element with an inner quote is refused',
  refused,
  [{ kind: 'add-elements', set: 'ifs', elements: ['"a" "b"; x"'] }],
  /set 'ifs' has an invalid element/,
);
test(
  'an invalid verdict is refused, naming map and key',
  refused,
  [{ kind: 'add-map-elements', map: 'to-pod', elements: [['10.0.0.1', 'jump x; flush']] }],
  /map 'to-pod' element "10.0.0.1" has an invalid verdict/,
);
test(
  'a verdict jumping to a keyword is refused',
  refused,
  [{ kind: 'add-map-elements', map: 'to-pod', elements: [['10.0.0.1', 'jump drop']] }],
  /is an nft keyword/,
);
test(
  'a set type with injected text is refused',
  refused,
  [{ kind: 'add-set', set: { name: 's', type: 'ipv4_addr; flags interval' } }],
  /set 's' has an invalid type/,
);
test(
  'a base chain with an unknown hook is refused',
  refused,
  [
    {
      kind: 'add-chain',
      chain: 'c',
      base: { type: 'filter', hook: 'ingress' as 'input', priority: 0, policy: 'accept' },
    },
  ],
  /base chain 'c' has an invalid type or hook/,
);

test('checkTable quotes interface names and drops duplicate elements', (t) => {
  const table = checkTable({
    sets: [
      {
        name: 'ifs',
        type: 'ifname . inet_service',
        elements: ['wm0 . 53', '"wm0" . 53', 'wm1 . 53'],
      },
    ],
    maps: [],
    chains: [],
  });
  t.deepEqual(table.sets[0]!.elements, ['"wm0" . 53', '"wm1" . 53']);
});

const badTable = test.macro((t, change: (table: NftTable) => void, message: RegExp) => {
  const table = sampleTable();
  change(table);
  t.throws(() => checkTable(table), { message });
});
test(
  'a rule jumping to a chain not in the table is refused',
  badTable,
  (tb) => tb.chains[2]!.rules.push('jump pol-gone'),
  /rule in chain 'pol-web' jumps to missing chain 'pol-gone'/,
);
test(
  'a rule referencing a set not in the table is refused',
  badTable,
  (tb) => tb.chains[2]!.rules.push('ip saddr @ns-gone drop'),
  /chain 'pol-web' references missing set or map 'ns-gone'/,
);
test(
  'a verdict naming a chain not in the table is refused',
  badTable,
  (tb) => (tb.maps[0]!.elements['10.9.9.9'] = 'goto pol-gone'),
  /map 'to-pod' element "10.9.9.9" jumps to missing chain 'pol-gone'/,
);
test(
  'a set and a map with one name are refused',
  badTable,
  (tb) => (tb.maps[0]!.name = 'web-ports'),
  /map 'web-ports' has the name of another set or map/,
);
test(
  'two chains with one name are refused',
  badTable,
  (tb) => tb.chains.push({ name: 'forward', rules: [] }),
  /chain 'forward' is defined twice/,
);
test(
  'an ifname element with the wrong number of parts is refused',
  badTable,
  (tb) => tb.sets[5]!.elements.push('wm0'),
  /set 'iface-port' element "wm0" does not have the 2 parts/,
);
