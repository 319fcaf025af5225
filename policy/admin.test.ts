// The admin tiers (AdminNetworkPolicy, BaselineAdminNetworkPolicy) over the upstream
// x/y/z cluster: every case compiles both nodes' fragments and walks the whole 9x9
// matrix through them with the nft evaluator, over IPv4 and IPv6.
import test from 'ava';
import { compilePolicies, POLICY_FORWARD_CHAIN, POLICY_INPUT_CHAIN } from './compile.ts';
import {
  ALL,
  adminRule,
  anp,
  labels,
  makeCluster,
  matrix,
  nsSubject,
  podAddress,
  policy,
  upstreamNamespaces,
  upstreamPods,
  type Probe,
} from './fixtures.ts';
import { hookVerdict } from './nftsim.ts';
import { checkTable } from '../nftables/index.ts';
import { composeTable } from '../agent/nftable.ts';
import type {
  AdminNetworkPolicy,
  BaselineAdminNetworkPolicy,
  NetworkPolicy,
  PolicyPeer,
} from './types.ts';

const nsOf = (id: string) => id.split('/')[0] as string;
const fromNs = (ns: string): PolicyPeer => ({ namespaceSelector: labels({ ns }) });
const everyPod: PolicyPeer = { namespaceSelector: ALL };

interface Admin {
  anps?: AdminNetworkPolicy[];
  banp?: BaselineAdminNetworkPolicy;
}

const reachability = test.macro({
  exec(
    t,
    admin: Admin,
    policies: NetworkPolicy[],
    expected: (from: string, to: string) => boolean,
    probe: Omit<Probe, 'from' | 'to'> = {},
  ) {
    const { reach } = makeCluster(policies, upstreamPods(), {
      adminPolicies: admin.anps ?? [],
      baselinePolicy: admin.banp ?? null,
    });
    t.is(
      matrix((from, to) => reach({ from, to, ...probe })),
      matrix(expected),
    );
  },
  title: (title = '') => `admin reachability: ${title}`,
});

const banp = (p: Partial<BaselineAdminNetworkPolicy>): BaselineAdminNetworkPolicy => ({
  name: 'default',
  subject: { namespaceSelector: ALL, podSelector: ALL },
  ingress: [],
  egress: [],
  ...p,
});

test(
  'an ANP Deny overrides a NetworkPolicy allow',
  reachability,
  {
    anps: [
      anp({
        name: 'deny-x-to-y',
        priority: 10,
        subject: nsSubject('y'),
        ingress: [adminRule('Deny', [fromNs('x')])],
      }),
    ],
  },
  [policy({ name: 'allow-all', namespace: 'y', ingress: [{ peers: [], ports: [] }] })],
  (from, to) => !(nsOf(from) === 'x' && nsOf(to) === 'y'),
);

test(
  'an ANP Allow overrides a NetworkPolicy default deny',
  reachability,
  {
    anps: [
      anp({
        name: 'allow-y',
        priority: 10,
        subject: nsSubject('x'),
        ingress: [adminRule('Allow', [fromNs('y')])],
      }),
    ],
  },
  [policy({ name: 'deny' })],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) === 'y',
);

const allowThenDeny = (allowFirst: boolean) => [
  anp({
    name: 'allow-y',
    priority: allowFirst ? 10 : 20,
    subject: nsSubject('x'),
    ingress: [adminRule('Allow', [fromNs('y')])],
  }),
  anp({
    name: 'deny-all',
    priority: allowFirst ? 20 : 10,
    subject: nsSubject('x'),
    ingress: [adminRule('Deny', [everyPod])],
  }),
];

test(
  'priority: the lower number decides first (Allow at 10 over Deny at 20)',
  reachability,
  { anps: allowThenDeny(true) },
  [],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) === 'y',
);

test(
  'priority: the lower number decides first (Deny at 10 over Allow at 20)',
  reachability,
  { anps: allowThenDeny(false) },
  [],
  (_from, to) => nsOf(to) !== 'x',
);

test(
  'within one ANP the first matching rule decides',
  reachability,
  {
    anps: [
      anp({
        name: 'ordered',
        priority: 5,
        subject: nsSubject('x'),
        ingress: [adminRule('Allow', [fromNs('y')]), adminRule('Deny', [everyPod])],
      }),
    ],
  },
  [],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) === 'y',
);

test(
  'Pass skips the remaining ANPs and hands over to NetworkPolicy',
  reachability,
  {
    anps: [
      anp({
        name: 'pass-y',
        priority: 10,
        subject: nsSubject('x'),
        ingress: [adminRule('Pass', [fromNs('y')])],
      }),
      anp({
        name: 'deny-all',
        priority: 20,
        subject: nsSubject('x'),
        ingress: [adminRule('Deny', [everyPod])],
      }),
    ],
  },
  [
    policy({
      name: 'allow-yb',
      ingress: [
        {
          peers: [{ namespaceSelector: labels({ ns: 'y' }), podSelector: labels({ pod: 'b' }) }],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) => nsOf(to) !== 'x' || from === 'y/b',
);

test(
  'Pass with no NetworkPolicy selecting the pod goes on to the BANP',
  reachability,
  {
    anps: [
      anp({
        name: 'pass-y',
        priority: 10,
        subject: nsSubject('x'),
        ingress: [adminRule('Pass', [fromNs('y')])],
      }),
    ],
    banp: banp({ subject: nsSubject('x'), ingress: [adminRule('Deny', [everyPod])] }),
  },
  [],
  (_from, to) => nsOf(to) !== 'x',
);

test(
  'the BANP applies only where no NetworkPolicy selects the pod',
  reachability,
  { banp: banp({ subject: nsSubject('x'), ingress: [adminRule('Deny', [everyPod])] }) },
  [
    policy({
      name: 'a-from-y',
      podSelector: labels({ pod: 'a' }),
      ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
    }),
  ],
  (from, to) => nsOf(to) !== 'x' || (to === 'x/a' && nsOf(from) === 'y'),
);

test(
  'the BANP: the first matching rule decides, unmatched traffic is allowed',
  reachability,
  {
    banp: banp({
      subject: nsSubject('x'),
      ingress: [adminRule('Allow', [fromNs('z')]), adminRule('Deny', [fromNs('y'), fromNs('z')])],
    }),
  },
  [],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) !== 'y',
);

test(
  'an ANP Allow overrides a BANP deny',
  reachability,
  {
    anps: [
      anp({
        name: 'allow-z',
        priority: 1,
        subject: nsSubject('x'),
        ingress: [adminRule('Allow', [fromNs('z')])],
      }),
    ],
    banp: banp({ subject: nsSubject('x'), ingress: [adminRule('Deny', [everyPod])] }),
  },
  [],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) === 'z',
);

test(
  'a pods subject selects only its pods; a namespaces subject all of the namespace',
  reachability,
  {
    anps: [
      anp({
        name: 'protect-xa',
        priority: 1,
        subject: nsSubject('x', 'a'),
        ingress: [adminRule('Deny', [fromNs('y')])],
      }),
      anp({
        name: 'protect-z',
        priority: 2,
        subject: { namespaceSelector: labels({ ns: 'z' }), podSelector: ALL },
        ingress: [
          adminRule('Deny', [
            { namespaceSelector: labels({ ns: 'x' }), podSelector: labels({ pod: 'c' }) },
          ]),
        ],
      }),
    ],
  },
  [],
  (from, to) => !(to === 'x/a' && nsOf(from) === 'y') && !(nsOf(to) === 'z' && from === 'x/c'),
);

test(
  'ports: a portNumber rule denies port 80 only',
  reachability,
  {
    anps: [
      anp({
        name: 'deny-80',
        priority: 1,
        subject: nsSubject('x'),
        ingress: [adminRule('Deny', [everyPod], [{ protocol: 'TCP', port: 80 }])],
      }),
    ],
  },
  [],
  (_from, to) => nsOf(to) !== 'x',
  { port: 80 },
);

for (const port of [80, 81]) {
  test(
    `ports: a portNumber rule for 80 leaves ${port === 81 ? '81 open' : 'UDP 80 open'}`,
    reachability,
    {
      anps: [
        anp({
          name: 'deny-80',
          priority: 1,
          subject: nsSubject('x'),
          ingress: [adminRule('Deny', [everyPod], [{ protocol: 'TCP', port: 80 }])],
        }),
      ],
    },
    [],
    () => true,
    port === 81 ? { port: 81 } : { port: 80, proto: 'udp' },
  );
}

test('ports: a portRange 80-81 and a named port (every protocol) deny what they name', (t) => {
  const { reach } = makeCluster([], upstreamPods(), {
    adminPolicies: [
      anp({
        name: 'ranges',
        priority: 1,
        subject: nsSubject('x'),
        ingress: [
          adminRule('Deny', [fromNs('y')], [{ protocol: 'TCP', port: 80, endPort: 81 }]),
          adminRule(
            'Deny',
            [fromNs('z')],
            (['TCP', 'UDP', 'SCTP'] as const).map((protocol) => ({
              protocol,
              port: 'serve-81-udp',
            })),
          ),
        ],
      }),
    ],
  });
  t.false(reach({ from: 'y/a', to: 'x/b', port: 80 }));
  t.false(reach({ from: 'y/a', to: 'x/b', port: 81 }));
  t.true(reach({ from: 'y/a', to: 'x/b', port: 81, proto: 'udp' }));
  t.false(reach({ from: 'z/a', to: 'x/a', port: 81, proto: 'udp' }));
  t.true(reach({ from: 'z/a', to: 'x/a', port: 81, proto: 'tcp' }));
  t.true(reach({ from: 'z/a', to: 'x/a', port: 80, proto: 'udp' }));
});

test(
  'egress: a networks Deny over the CIDRs of y overrides an egress allow-all',
  reachability,
  {
    anps: [
      anp({
        name: 'no-y',
        priority: 3,
        subject: nsSubject('x'),
        egress: [
          adminRule('Deny', [
            { ipBlock: { cidr: '100.64.2.0/24', except: [] } },
            { ipBlock: { cidr: 'fd00:64:2::/48', except: [] } },
          ]),
        ],
      }),
    ],
  },
  [policy({ name: 'out', policyTypes: ['Egress'], egress: [{ peers: [], ports: [] }] })],
  (from, to) => !(nsOf(from) === 'x' && nsOf(to) === 'y'),
);

test(
  'egress: an ANP Allow overrides a NetworkPolicy egress deny',
  reachability,
  {
    anps: [
      anp({
        name: 'x-to-z',
        priority: 3,
        subject: nsSubject('x'),
        egress: [adminRule('Allow', [fromNs('z')])],
      }),
    ],
  },
  [policy({ name: 'deny-out', policyTypes: ['Egress'] })],
  (from, to) => nsOf(from) !== 'x' || nsOf(to) === 'z',
);

test(
  'egress and ingress are separate decisions: an egress Allow does not pass the destination’s ingress deny',
  reachability,
  {
    anps: [
      anp({
        name: 'x-out',
        priority: 3,
        subject: nsSubject('x'),
        egress: [adminRule('Allow', [everyPod])],
      }),
    ],
  },
  [policy({ name: 'deny-in', namespace: 'y' })],
  (_from, to) => nsOf(to) !== 'y',
);

test(
  'egress and ingress are separate decisions: an ingress Allow does not pass the source’s egress deny',
  reachability,
  {
    anps: [
      anp({
        name: 'into-y',
        priority: 3,
        subject: nsSubject('y'),
        ingress: [adminRule('Allow', [everyPod])],
      }),
    ],
  },
  [policy({ name: 'deny-out', policyTypes: ['Egress'] })],
  (from) => nsOf(from) !== 'x',
);

test(
  'an ANP without rules for a direction leaves that direction to NetworkPolicy',
  reachability,
  {
    anps: [
      anp({
        name: 'egress-only',
        priority: 1,
        subject: nsSubject('x'),
        egress: [adminRule('Deny', [fromNs('z')])],
      }),
    ],
  },
  [policy({ name: 'allow-y', ingress: [{ peers: [fromNs('y')], ports: [] }] })],
  (from, to) =>
    (nsOf(to) !== 'x' || nsOf(from) === 'y') && !(nsOf(from) === 'x' && nsOf(to) === 'z'),
);

test('NetworkPolicy cases decide alike with an ANP and a BANP that select no pod', (t) => {
  const unrelated = {
    adminPolicies: [
      anp({
        name: 'nobody',
        priority: 1,
        subject: nsSubject('nowhere'),
        ingress: [adminRule('Deny', [everyPod])],
        egress: [adminRule('Deny', [everyPod])],
      }),
    ],
    baselinePolicy: banp({
      subject: nsSubject('nowhere'),
      ingress: [adminRule('Deny', [everyPod])],
    }),
  };
  const cases: NetworkPolicy[][] = [
    [policy({ name: 'deny', policyTypes: ['Ingress', 'Egress'] })],
    [
      policy({
        name: 'allow-b',
        podSelector: labels({ pod: 'a' }),
        ingress: [{ peers: [{ podSelector: labels({ pod: 'b' }) }], ports: [] }],
      }),
      policy({ name: 'deny-out', namespace: 'y', policyTypes: ['Egress'] }),
    ],
  ];
  for (const policies of cases) {
    for (const probe of [{ port: 80 }, { port: 81, proto: 'udp' as const }]) {
      const plain = makeCluster(policies).reach;
      const withAdmin = makeCluster(policies, upstreamPods(), unrelated).reach;
      t.is(
        matrix((from, to) => withAdmin({ from, to, ...probe })),
        matrix((from, to) => plain({ from, to, ...probe })),
      );
    }
  }
});

test('a pod reaching its own node (input hook) meets only the ANP tier', (t) => {
  const { table } = compilePolicies({
    self: 'n1',
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    // x/b may talk to nothing under NetworkPolicy, z's pods to nothing under the BANP:
    // neither applies to a pod's own node.
    policies: [
      policy({
        name: 'deny',
        namespace: 'x',
        podSelector: labels({ pod: 'b' }),
        policyTypes: ['Egress'],
      }),
    ],
    adminPolicies: [
      anp({
        name: 'no-node',
        priority: 1,
        subject: nsSubject('x'),
        egress: [adminRule('Deny', [{ ipBlock: { cidr: '198.18.0.0/16', except: [] } }])],
      }),
    ],
    baselinePolicy: banp({
      subject: nsSubject('z'),
      egress: [adminRule('Deny', [{ ipBlock: { cidr: '0.0.0.0/0', except: [] } }])],
    }),
  });
  const pkt = {
    src: podAddress('x', 'a', 4),
    dst: '198.18.0.2',
    proto: 'tcp' as const,
    dport: 10250,
    local: true,
  };
  t.is(hookVerdict(table, POLICY_INPUT_CHAIN, pkt), 'drop', 'the ANP denies x its node');
  t.is(hookVerdict(table, POLICY_INPUT_CHAIN, { ...pkt, ct: 'established' }), 'accept');
  t.is(hookVerdict(table, POLICY_INPUT_CHAIN, { ...pkt, src: podAddress('y', 'a', 4) }), 'accept');
  t.is(
    hookVerdict(table, POLICY_INPUT_CHAIN, { ...pkt, src: podAddress('z', 'a', 4) }),
    'accept',
    "the BANP does not police a pod's own node",
  );
  t.is(
    hookVerdict(table, POLICY_FORWARD_CHAIN, {
      ...pkt,
      src: podAddress('z', 'a', 4),
      local: false,
    }),
    'drop',
    'but it does police another node',
  );
  t.is(hookVerdict(table, POLICY_FORWARD_CHAIN, { ...pkt, local: false }), 'drop');
});

test('an unreadable Deny or Pass rule denies everything in its place; an unreadable Allow matches nothing', (t) => {
  const bad: PolicyPeer = { ipBlock: { cidr: '100.64.2.0/33', except: [] } };
  const input = (action: 'Allow' | 'Pass' | 'Deny') => ({
    adminPolicies: [
      anp({
        name: 'broken',
        priority: 1,
        subject: nsSubject('x'),
        egress: [adminRule('Allow', [fromNs('z')]), adminRule(action, [bad])],
      }),
    ],
  });
  for (const action of ['Deny', 'Pass', 'Allow'] as const) {
    const r = compilePolicies({
      self: 'n1',
      pods: upstreamPods(),
      namespaces: upstreamNamespaces(),
      policies: [],
      ...input(action),
    });
    t.is(r.problems.length, 1);
    t.like(r.problems[0], { kind: 'AdminNetworkPolicy', name: 'broken', reason: 'InvalidPolicy' });
    const { reach } = makeCluster(
      [policy({ name: 'deny-out', policyTypes: ['Egress'] })],
      upstreamPods(),
      input(action),
    );
    t.true(reach({ from: 'x/a', to: 'z/b' }), `${action}: the rule before still decides`);
    // Unreadable Deny/Pass: deny all. Unreadable Allow: nothing matches, NetworkPolicy decides (deny).
    t.false(reach({ from: 'x/a', to: 'y/b' }), action);
    t.true(reach({ from: 'y/a', to: 'x/b' }), `${action}: other pods are untouched`);
  }
  // Without the NetworkPolicy, an unreadable Allow leaves traffic to default allow.
  const { reach } = makeCluster([], upstreamPods(), input('Allow'));
  t.true(reach({ from: 'x/a', to: 'y/b' }));
});

test('the composed table with every admin shape passes the table checks', (t) => {
  const r = compilePolicies({
    self: 'n2',
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    policies: [policy({ name: 'deny' })],
    adminPolicies: allowThenDeny(true),
    baselinePolicy: banp({
      egress: [
        adminRule(
          'Deny',
          [{ ipBlock: { cidr: '10.0.0.0/8', except: [] } }],
          [{ protocol: 'TCP', port: 'serve-80-tcp' }],
        ),
      ],
      ingress: [adminRule('Allow', [fromNs('y')], [{ protocol: 'UDP', port: 'serve-81-udp' }])],
    }),
  });
  t.deepEqual(r.problems, []);
  t.notThrows(() => checkTable(composeTable({ policy: r.table })));
  t.is(r.stats.adminPolicies, 2);
  t.true(r.stats.baselinePolicy);
});
