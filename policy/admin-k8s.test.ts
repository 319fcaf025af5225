// Translation of AdminNetworkPolicy and BaselineAdminNetworkPolicy objects: the
// upstream shapes map onto the compiler's types, and whatever cannot be read fails
// closed the way the API prescribes (an Allow rule matches nothing, any other rule
// denies everything, a spec fault denies all for the subject, an unreadable
// subject refuses the policy), always with a problem.
import test from 'ava';
import { adminNetworkPolicyFromK8s, baselineAdminNetworkPolicyFromK8s } from './admin-k8s.ts';

const EVERY = { matchLabels: {}, matchExpressions: [] };
const sel = (l: Record<string, string>) => ({ matchLabels: l, matchExpressions: [] });
const DENY_ALL = { name: '', action: 'Deny', peers: [], ports: [] };

const anp = (spec: Record<string, unknown>, name = 'p') => ({ metadata: { name }, spec });

test('subjects, peers, ports and networks map onto the compiler types', (t) => {
  const r = adminNetworkPolicyFromK8s(
    anp({
      priority: 7,
      subject: { pods: { namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: {} } },
      ingress: [
        {
          name: 'in',
          action: 'Pass',
          from: [
            { namespaces: { matchLabels: { ns: 'y' } } },
            {
              pods: {
                namespaceSelector: {},
                podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a'] }] },
              },
            },
          ],
          ports: [
            { portNumber: { port: 80 } },
            { portRange: { protocol: 'UDP', start: 1000, end: 2000 } },
            { namedPort: 'serve-81-udp' },
          ],
        },
      ],
      egress: [{ action: 'Deny', to: [{ networks: ['10.0.0.0/8', 'fd00::/8'] }] }],
    }),
  );
  t.deepEqual(r.problems, []);
  t.deepEqual(r.policy, {
    name: 'p',
    priority: 7,
    subject: { namespaceSelector: sel({ ns: 'x' }), podSelector: EVERY },
    ingress: [
      {
        name: 'in',
        action: 'Pass',
        peers: [
          { namespaceSelector: sel({ ns: 'y' }) },
          {
            namespaceSelector: EVERY,
            podSelector: {
              matchLabels: {},
              matchExpressions: [{ key: 'pod', operator: 'In', values: ['a'] }],
            },
          },
        ],
        ports: [
          { protocol: 'TCP', port: 80 },
          { protocol: 'UDP', port: 1000, endPort: 2000 },
          { protocol: 'TCP', port: 'serve-81-udp' },
          { protocol: 'UDP', port: 'serve-81-udp' },
          { protocol: 'SCTP', port: 'serve-81-udp' },
        ],
      },
    ],
    egress: [
      {
        name: '',
        action: 'Deny',
        peers: [
          { ipBlock: { cidr: '10.0.0.0/8', except: [] } },
          { ipBlock: { cidr: 'fd00::/8', except: [] } },
        ],
        ports: [],
      },
    ],
  });
  const ns = adminNetworkPolicyFromK8s(anp({ priority: 0, subject: { namespaces: {} } }));
  t.deepEqual(ns.policy?.subject, { namespaceSelector: EVERY, podSelector: EVERY });
});

const unreadable = test.macro({
  exec(t, rule: Record<string, unknown>, reason: string, kept: unknown) {
    const r = adminNetworkPolicyFromK8s(
      anp({
        priority: 3,
        subject: { namespaces: {} },
        egress: [{ action: 'Allow', to: [{ namespaces: {} }] }, rule],
      }),
    );
    t.is(r.problems.length, 1);
    t.like(r.problems[0], { kind: 'AdminNetworkPolicy', name: 'p', reason });
    t.is(r.policy?.egress.length, kept ? 2 : 1, 'the rule before stands');
    if (kept) t.deepEqual(r.policy?.egress[1], kept);
  },
  title: (title = '') => `an unreadable rule: ${title}`,
});

test(
  'Deny with a nodes peer denies everything',
  unreadable,
  { action: 'Deny', to: [{ nodes: { matchLabels: {} } }] },
  'UnsupportedField',
  DENY_ALL,
);
test(
  'Pass with an empty peer denies everything',
  unreadable,
  { action: 'Pass', to: [{}] },
  'InvalidPolicy',
  DENY_ALL,
);
test(
  'an unknown action denies everything',
  unreadable,
  { action: 'Reject', to: [{ namespaces: {} }] },
  'InvalidPolicy',
  DENY_ALL,
);
test(
  'Allow with a bad CIDR matches nothing',
  unreadable,
  { action: 'Allow', to: [{ networks: ['10.0.0.0/33'] }] },
  'InvalidPolicy',
  null,
);
test(
  'Allow with an unknown port kind matches nothing',
  unreadable,
  { action: 'Allow', to: [{ namespaces: {} }], ports: [{ portSet: 'web' }] },
  'UnsupportedField',
  null,
);
test('Deny with a networks peer on ingress denies everything', (t) => {
  const r = adminNetworkPolicyFromK8s(
    anp({
      priority: 3,
      subject: { namespaces: {} },
      ingress: [{ action: 'Deny', from: [{ networks: ['10.0.0.0/8'] }] }],
    }),
  );
  t.is(r.problems.length, 1);
  t.deepEqual(r.policy?.ingress, [DENY_ALL]);
});

test('a fault outside the rules denies all for the subject; without a priority, ahead of every ANP', (t) => {
  const noPriority = adminNetworkPolicyFromK8s(
    anp({
      priority: 1001,
      subject: { namespaces: {} },
      ingress: [{ action: 'Allow', from: [{ namespaces: {} }] }],
    }),
  );
  t.like(noPriority.policy, { priority: -1, ingress: [DENY_ALL], egress: [DENY_ALL] });
  t.regex(noPriority.problems[0]?.message ?? '', /ahead of every AdminNetworkPolicy/);
  const unknownField = adminNetworkPolicyFromK8s(
    anp({ priority: 9, subject: { namespaces: {} }, tier: 'Admin' }),
  );
  t.like(unknownField.policy, { priority: 9, ingress: [DENY_ALL], egress: [DENY_ALL] });
  t.is(unknownField.problems[0]?.reason, 'UnsupportedField');
});

test('an unreadable subject refuses the policy whole, with a problem', (t) => {
  for (const subject of [
    undefined,
    {},
    { namespaces: {}, pods: { namespaceSelector: {}, podSelector: {} } },
    { nodes: {} },
  ]) {
    const r = adminNetworkPolicyFromK8s(anp({ priority: 1, subject }));
    t.is(r.policy, null);
    t.is(r.problems.length, 1);
    t.regex(r.problems[0]?.message ?? '', /not enforced for any pod/);
  }
});

test('a BANP has no priority and only Allow or Deny', (t) => {
  const r = baselineAdminNetworkPolicyFromK8s(
    anp(
      {
        subject: { namespaces: {} },
        ingress: [
          { action: 'Allow', from: [{ namespaces: {} }] },
          { action: 'Pass', from: [{ namespaces: {} }] },
        ],
      },
      'default',
    ),
  );
  t.is(r.problems.length, 1);
  t.deepEqual(r.policy?.ingress, [
    { name: '', action: 'Allow', peers: [{ namespaceSelector: EVERY }], ports: [] },
    DENY_ALL,
  ]);
  t.false(r.policy !== null && 'priority' in r.policy);
  const withPriority = baselineAdminNetworkPolicyFromK8s(
    anp({ priority: 3, subject: { namespaces: {} } }, 'default'),
  );
  t.is(withPriority.problems[0]?.reason, 'UnsupportedField');
});
