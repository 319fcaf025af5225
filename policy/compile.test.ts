import test from 'ava';
import { compilePolicies, POLICY_FORWARD_CHAIN, POLICY_INPUT_CHAIN } from './compile.ts';
import {
  ALL,
  labels,
  makeCluster,
  matrix,
  podAddress,
  policy,
  upstreamNamespaces,
  upstreamPods,
  type Probe,
} from './fixtures.ts';
import { disjoint, hookVerdict, renderFragment } from './nftsim.ts';
import { checkTable } from '../nftables/index.ts';
import { composeTable } from '../agent/nftable.ts';
import type { NetworkPolicy, PolicyPod } from './types.ts';
import type { NftTable } from '../nftables/model.ts';

const nsOf = (id: string) => id.split('/')[0] as string;
const podOf = (id: string) => id.split('/')[1] as string;

/**
 * Upstream-style case: the policies, then the expected reachability of the whole
 * 9x9 matrix for one probe (protocol and port), compared as printed tables.
 */
const reachability = test.macro({
  exec(
    t,
    policies: NetworkPolicy[],
    expected: (from: string, to: string) => boolean,
    probe: Omit<Probe, 'from' | 'to'> = {},
  ) {
    const { reach } = makeCluster(policies);
    t.is(
      matrix((from, to) => reach({ from, to, ...probe })),
      matrix(expected),
    );
  },
  title: (title = '') => `reachability: ${title}`,
});

test('no policies: everything reaches everything', reachability, [], () => true);

test(
  'default deny ingress in x',
  reachability,
  [policy({ name: 'deny', podSelector: ALL })],
  (_from, to) => nsOf(to) !== 'x',
);

test(
  'default deny egress in x',
  reachability,
  [policy({ name: 'deny', policyTypes: ['Egress'] })],
  (from) => nsOf(from) !== 'x',
);

test(
  'default deny both directions in x',
  reachability,
  [policy({ name: 'deny', policyTypes: ['Ingress', 'Egress'] })],
  (from, to) => nsOf(from) !== 'x' && nsOf(to) !== 'x',
);

test(
  'allow all ingress (an empty rule) after default deny',
  reachability,
  [policy({ name: 'deny' }), policy({ name: 'allow-all', ingress: [{ peers: [], ports: [] }] })],
  () => true,
);

test(
  'allow all egress after default deny egress',
  reachability,
  [
    policy({ name: 'deny', policyTypes: ['Egress'] }),
    policy({ name: 'allow-all', policyTypes: ['Egress'], egress: [{ peers: [], ports: [] }] }),
  ],
  () => true,
);

test(
  'policyTypes defaulting: egress rules without policyTypes isolate ingress as well',
  reachability,
  [policy({ name: 'allow-all-out', egress: [{ peers: [], ports: [] }] })],
  (_from, to) => nsOf(to) !== 'x',
);

test(
  'pod selector: x/a admits pod=b of its own namespace only',
  reachability,
  [
    policy({
      name: 'allow-b',
      podSelector: labels({ pod: 'a' }),
      ingress: [{ peers: [{ podSelector: labels({ pod: 'b' }) }], ports: [] }],
    }),
  ],
  (from, to) => to !== 'x/a' || from === 'x/b',
);

test(
  'namespace selector: x/a admits every pod of y',
  reachability,
  [
    policy({
      name: 'allow-y',
      podSelector: labels({ pod: 'a' }),
      ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
    }),
  ],
  (from, to) => to !== 'x/a' || nsOf(from) === 'y',
);

test(
  'namespace and pod selector together: the intersection (only y/b)',
  reachability,
  [
    policy({
      name: 'allow-yb',
      podSelector: labels({ pod: 'a' }),
      ingress: [
        {
          peers: [{ namespaceSelector: labels({ ns: 'y' }), podSelector: labels({ pod: 'b' }) }],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) => to !== 'x/a' || from === 'y/b',
);

test(
  'namespace and pod selector as two peers: the union',
  reachability,
  [
    policy({
      name: 'allow-y-or-b',
      podSelector: labels({ pod: 'a' }),
      ingress: [
        {
          peers: [
            { namespaceSelector: labels({ ns: 'y' }) },
            { podSelector: labels({ pod: 'b' }) },
          ],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) => to !== 'x/a' || nsOf(from) === 'y' || from === 'x/b',
);

test(
  'the empty namespace selector is every namespace',
  reachability,
  [
    policy({
      name: 'allow-any-b',
      podSelector: labels({ pod: 'a' }),
      ingress: [
        { peers: [{ namespaceSelector: ALL, podSelector: labels({ pod: 'b' }) }], ports: [] },
      ],
    }),
  ],
  (from, to) => to !== 'x/a' || podOf(from) === 'b',
);

test(
  'match expressions: namespaces In (y, z), pods NotIn (c), and Exists / DoesNotExist',
  reachability,
  [
    policy({
      name: 'expr',
      podSelector: {
        matchLabels: {},
        matchExpressions: [{ key: 'pod', operator: 'In', values: ['a', 'b'] }],
      },
      ingress: [
        {
          peers: [
            {
              namespaceSelector: {
                matchLabels: {},
                matchExpressions: [{ key: 'ns', operator: 'In', values: ['y', 'z'] }],
              },
              podSelector: {
                matchLabels: {},
                matchExpressions: [
                  { key: 'pod', operator: 'NotIn', values: ['c'] },
                  { key: 'pod', operator: 'Exists', values: [] },
                  { key: 'missing', operator: 'DoesNotExist', values: [] },
                ],
              },
            },
          ],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) =>
    !(to === 'x/a' || to === 'x/b') || (['y', 'z'].includes(nsOf(from)) && podOf(from) !== 'c'),
);

test(
  'the kubernetes.io/metadata.name label selects a namespace by name',
  reachability,
  [
    policy({
      name: 'by-name',
      ingress: [
        {
          peers: [{ namespaceSelector: labels({ 'kubernetes.io/metadata.name': 'z' }) }],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) === 'z',
);

const namedPortPolicy = [
  policy({
    name: 'named',
    podSelector: labels({ pod: 'a' }),
    ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 'serve-81-tcp' }] }],
  }),
];
test(
  'named port on ingress: serve-81-tcp admits TCP 81',
  reachability,
  namedPortPolicy,
  () => true,
  { port: 81 },
);
test(
  'named port on ingress: TCP 80 stays closed',
  reachability,
  namedPortPolicy,
  (_f, to) => to !== 'x/a',
  { port: 80 },
);
test(
  'named port on ingress: UDP 81 stays closed (the name is TCP)',
  reachability,
  namedPortPolicy,
  (_f, to) => to !== 'x/a',
  { proto: 'udp', port: 81 },
);

test('named port on ingress resolves against each selected pod', (t) => {
  const pods = upstreamPods().map((p) =>
    p.namespace === 'x' && p.name === 'b'
      ? { ...p, ports: [{ name: 'web', port: 8080, protocol: 'TCP' as const }] }
      : p.namespace === 'x' && p.name === 'c'
        ? { ...p, ports: [{ name: 'web', port: 9090, protocol: 'TCP' as const }] }
        : p,
  );
  const { reach } = makeCluster(
    [policy({ name: 'web', ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 'web' }] }] })],
    pods,
  );
  t.true(reach({ from: 'y/a', to: 'x/b', port: 8080 }));
  t.false(reach({ from: 'y/a', to: 'x/b', port: 9090 }));
  t.true(reach({ from: 'y/a', to: 'x/c', port: 9090 }));
  t.false(reach({ from: 'y/a', to: 'x/c', port: 8080 }));
  t.false(reach({ from: 'y/a', to: 'x/a', port: 8080 }), 'x/a has no port named web');
});

test('named port on egress resolves against each peer pod; never beyond pods', (t) => {
  const pods = upstreamPods().map((p) =>
    p.namespace === 'y' && p.name === 'b'
      ? { ...p, ports: [{ name: 'web', port: 8080, protocol: 'TCP' as const }] }
      : p,
  );
  const policies = [
    policy({
      name: 'egress-web',
      podSelector: labels({ pod: 'a' }),
      policyTypes: ['Egress'],
      egress: [{ peers: [], ports: [{ protocol: 'TCP', port: 'web' }] }],
    }),
    policy({
      name: 'egress-block',
      podSelector: labels({ pod: 'b' }),
      policyTypes: ['Egress'],
      egress: [
        {
          peers: [{ ipBlock: { cidr: '100.64.2.0/24', except: [] } }],
          ports: [{ protocol: 'TCP', port: 'serve-80-tcp' }],
        },
        {
          peers: [{ ipBlock: { cidr: 'fd00:64:2::/64', except: [] } }],
          ports: [{ protocol: 'TCP', port: 'serve-80-tcp' }],
        },
      ],
    }),
  ];
  const { reach, tables } = makeCluster(policies, pods);
  t.true(reach({ from: 'x/a', to: 'y/b', port: 8080 }));
  t.false(reach({ from: 'x/a', to: 'y/b', port: 80 }));
  t.false(reach({ from: 'x/a', to: 'y/c', port: 8080 }));
  t.true(reach({ from: 'x/b', to: 'y/a', port: 80 }), 'a pod inside the ipBlock with the name');
  t.false(reach({ from: 'x/b', to: 'y/b', port: 80 }), 'y/b has no serve-80-tcp any more');
  t.false(reach({ from: 'x/b', to: 'z/a', port: 80 }), 'z is outside the ipBlock');
  // A non-pod address inside the block is never matched by a named port.
  const n2 = tables.get('n2');
  if (!n2) throw new Error('no n2');
  const pkt = {
    src: podAddress('x', 'b', 4),
    dst: '100.64.2.200',
    proto: 'tcp',
    dport: 80,
  } as const;
  t.is(hookVerdict(n2, POLICY_FORWARD_CHAIN, pkt), 'drop');
});

test(
  'endPort: a range of ports 80-81 admits 81',
  reachability,
  [
    policy({
      name: 'range',
      ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 80, endPort: 81 }] }],
    }),
  ],
  () => true,
  { port: 81 },
);

test(
  'endPort: 81-90 leaves 80 closed',
  reachability,
  [
    policy({
      name: 'range',
      ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 81, endPort: 90 }] }],
    }),
  ],
  (_f, to) => nsOf(to) !== 'x',
  { port: 80 },
);

test(
  'ipBlock with except: x/a admits 100.64.0.0/16 minus y, and fd00:64::/32 minus y',
  reachability,
  [
    policy({
      name: 'block',
      podSelector: labels({ pod: 'a' }),
      ingress: [
        {
          peers: [
            { ipBlock: { cidr: '100.64.0.0/16', except: ['100.64.2.0/24'] } },
            { ipBlock: { cidr: 'fd00:64::/32', except: ['fd00:64:2::/48'] } },
          ],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) => to !== 'x/a' || nsOf(from) !== 'y',
);

test(
  'ipBlock on egress with except carving out one pod',
  reachability,
  [
    policy({
      name: 'block',
      podSelector: labels({ pod: 'a' }),
      policyTypes: ['Egress'],
      egress: [
        {
          peers: [
            { ipBlock: { cidr: '100.64.0.0/10', except: ['100.64.3.3/32'] } },
            { ipBlock: { cidr: 'fd00::/8', except: ['fd00:64:3::3/128'] } },
          ],
          ports: [],
        },
      ],
    }),
  ],
  (from, to) => from !== 'x/a' || to !== 'z/c',
);

test(
  'several policies on one pod: the union of their rules',
  reachability,
  [
    policy({
      name: 'from-y',
      podSelector: labels({ pod: 'a' }),
      ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
    }),
    policy({
      name: 'from-b',
      podSelector: labels({ pod: 'a' }),
      ingress: [{ peers: [{ podSelector: labels({ pod: 'b' }) }], ports: [] }],
    }),
    policy({ name: 'deny-rest' }),
  ],
  (from, to) => nsOf(to) !== 'x' || (to === 'x/a' && (nsOf(from) === 'y' || from === 'x/b')),
);

const udp80 = [
  policy({ name: 'udp', ingress: [{ peers: [], ports: [{ protocol: 'UDP', port: 80 }] }] }),
];
test('protocol separation: UDP 80 open', reachability, udp80, () => true, { proto: 'udp' });
test('protocol separation: TCP 80 closed', reachability, udp80, (_f, to) => nsOf(to) !== 'x');
test('protocol separation: SCTP 80 closed', reachability, udp80, (_f, to) => nsOf(to) !== 'x', {
  proto: 'sctp',
});
test(
  'SCTP by number',
  reachability,
  [policy({ name: 'sctp', ingress: [{ peers: [], ports: [{ protocol: 'SCTP', port: 81 }] }] })],
  () => true,
  { proto: 'sctp', port: 81 },
);
test(
  'a port without a number opens the whole protocol',
  reachability,
  [policy({ name: 'udp-all', ingress: [{ peers: [], ports: [{ protocol: 'UDP' }] }] })],
  () => true,
  { proto: 'udp', port: 4242 },
);

test(
  'ICMP is filtered when a pod is isolated',
  reachability,
  [policy({ name: 'tcp-only', ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 80 }] }] })],
  (_f, to) => nsOf(to) !== 'x',
  { proto: 'icmp' },
);
test(
  'a rule without ports admits ICMP too',
  reachability,
  [
    policy({
      name: 'from-y',
      ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
    }),
  ],
  (from, to) => nsOf(to) !== 'x' || nsOf(from) === 'y',
  { proto: 'icmp' },
);

test(
  'egress allowed is not ingress allowed: both ends must agree, on one node and across',
  reachability,
  [
    policy({ name: 'x-out', policyTypes: ['Egress'], egress: [{ peers: [], ports: [] }] }),
    policy({ name: 'y-deny', namespace: 'y' }),
  ],
  (_from, to) => nsOf(to) !== 'y',
);

test(
  'policyTypes Egress alone: ingress rules in the spec do not isolate for ingress',
  reachability,
  [
    policy({
      name: 'egress-only',
      policyTypes: ['Egress'],
      ingress: [{ peers: [{ podSelector: labels({ pod: 'none' }) }], ports: [] }],
      egress: [{ peers: [], ports: [] }],
    }),
  ],
  () => true,
);

test(
  'pods no policy selects pass, in a namespace with policies',
  reachability,
  [policy({ name: 'deny-a', podSelector: labels({ pod: 'a' }) })],
  (_from, to) => to !== 'x/a',
);

test('replies of allowed connections pass; invalid packets drop', (t) => {
  const { tables } = makeCluster([policy({ name: 'deny', policyTypes: ['Ingress', 'Egress'] })]);
  const n1 = tables.get('n1');
  if (!n1) throw new Error('no n1');
  const base = {
    src: podAddress('x', 'a', 4),
    dst: podAddress('y', 'a', 4),
    proto: 'tcp' as const,
    dport: 80,
  };
  t.is(hookVerdict(n1, POLICY_FORWARD_CHAIN, base), 'drop');
  t.is(hookVerdict(n1, POLICY_FORWARD_CHAIN, { ...base, ct: 'established' }), 'accept');
  t.is(hookVerdict(n1, POLICY_FORWARD_CHAIN, { ...base, ct: 'related' }), 'accept');
  const unpoliced = { ...base, src: podAddress('y', 'b', 4), dst: podAddress('z', 'b', 4) };
  t.is(hookVerdict(n1, POLICY_FORWARD_CHAIN, unpoliced), 'accept');
  t.is(hookVerdict(n1, POLICY_FORWARD_CHAIN, { ...unpoliced, ct: 'invalid' }), 'drop');
});

test('a node none of whose pods is isolated has no conntrack rule', (t) => {
  // A `ct` expression turns on connection tracking for every packet of the node.
  const isolatesXA = policy({
    name: 'deny',
    podSelector: labels({ pod: 'a' }),
    policyTypes: ['Ingress'],
  });
  const ctRules = (tables: Map<string, NftTable>, node: string) =>
    (tables.get(node)?.chains.find((c) => c.name === POLICY_FORWARD_CHAIN)?.rules ?? []).filter(
      (r) => r.startsWith('ct '),
    );
  const none = makeCluster([]).tables;
  for (const node of none.keys()) t.deepEqual(ctRules(none, node), [], node);
  const some = makeCluster([isolatesXA]).tables;
  const nodes = upstreamPods()
    .filter((p) => p.namespace === 'x' && p.labels.pod === 'a')
    .map((p) => p.node);
  for (const node of some.keys())
    t.is(ctRules(some, node).length, nodes.includes(node) ? 2 : 0, node);
});

test('a pod always reaches its own node; other nodes are policed like any address', (t) => {
  const policies = [
    policy({
      name: 'egress',
      podSelector: labels({ pod: 'a' }),
      policyTypes: ['Egress'],
      egress: [{ peers: [{ ipBlock: { cidr: '198.18.0.1/32', except: [] } }], ports: [] }],
    }),
  ];
  const { tables } = makeCluster(policies);
  const n1 = tables.get('n1');
  if (!n1) throw new Error('no n1');
  // Upstream: "traffic to and from the node where a Pod is running is always
  // allowed". Nothing hooks the input path, so the base chain's accept decides.
  t.false(
    n1.chains.some((c) => c.name === POLICY_INPUT_CHAIN),
    'no policy chain on the input hook',
  );
  const src = podAddress('x', 'a', 4);
  const forwarded = (dst: string) =>
    hookVerdict(n1, POLICY_FORWARD_CHAIN, { src, dst, proto: 'tcp', dport: 10250 });
  t.is(forwarded('198.18.0.1'), 'accept', 'the allowed ipBlock (another node)');
  t.is(forwarded('198.18.0.2'), 'drop', 'another node outside the ipBlock');
});

test('only pods of this node get dispatch entries', (t) => {
  const pods = upstreamPods();
  const policies = [policy({ name: 'deny', policyTypes: ['Ingress', 'Egress'] })];
  const n1 = compilePolicies({ self: 'n1', pods, namespaces: upstreamNamespaces(), policies });
  const map = n1.table.maps.find((m) => m.name === 'policy-ingress-v4');
  t.deepEqual(Object.keys(map?.elements ?? {}), [podAddress('x', 'a', 4)]);
  t.like(n1.stats, { localPods: 3, isolatedIngress: 1, isolatedEgress: 1, policies: 1 });
});

test('a pod label change or a new pod changes set and map elements, not chains', (t) => {
  const policies = [
    policy({
      name: 'web',
      podSelector: labels({ pod: 'a' }),
      ingress: [
        {
          peers: [{ podSelector: labels({ role: 'client' }) }],
          ports: [{ protocol: 'TCP', port: 80 }],
        },
      ],
    }),
  ];
  const pods = upstreamPods();
  const before = compilePolicies({ self: 'n1', pods, namespaces: upstreamNamespaces(), policies });
  const extra: PolicyPod = {
    namespace: 'x',
    name: 'a2',
    labels: { pod: 'a' },
    ips: ['100.64.1.9'],
    node: 'n1',
    ports: [],
  };
  const relabelled = pods.map((p) =>
    p.namespace === 'x' && p.name === 'c' ? { ...p, labels: { ...p.labels, role: 'client' } } : p,
  );
  const after = compilePolicies({
    self: 'n1',
    pods: [...relabelled, extra],
    namespaces: upstreamNamespaces(),
    policies,
  });
  t.deepEqual(after.table.chains, before.table.chains);
  t.notDeepEqual(after.table.sets, before.table.sets);
  t.notDeepEqual(after.table.maps, before.table.maps);
});

test('output is deterministic and names are short and prefixed', (t) => {
  const policies = [
    policy({
      name: 'a'.repeat(253),
      namespace: 'n'.repeat(63),
      ingress: [{ peers: [], ports: [] }],
    }),
    policy({
      name: 'from-y',
      ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
    }),
    policy({
      name: 'egress',
      namespace: 'y',
      egress: [{ peers: [{ podSelector: ALL }], ports: [] }],
    }),
  ];
  const pods = upstreamPods();
  const one = compilePolicies({ self: 'n1', pods, namespaces: upstreamNamespaces(), policies });
  const two = compilePolicies({
    self: 'n1',
    pods: [...pods].reverse(),
    namespaces: upstreamNamespaces().reverse(),
    policies: [...policies].reverse(),
  });
  t.deepEqual(two, one);
  const names = [...one.table.sets, ...one.table.maps, ...one.table.chains].map((o) => o.name);
  for (const name of names) {
    t.regex(name, /^(policy|pol)-[A-Za-z0-9_-]*$/);
    t.true(name.length <= 64, name);
  }
});

test('interval sets are disjoint: ipBlocks minus excepts, pods apart', (t) => {
  const policies = [
    policy({
      name: 'mixed',
      ingress: [
        {
          peers: [
            { podSelector: ALL, namespaceSelector: ALL },
            { ipBlock: { cidr: '100.64.0.0/16', except: ['100.64.1.0/24'] } },
            { ipBlock: { cidr: '100.64.0.0/12', except: ['100.64.0.0/16'] } },
          ],
          ports: [],
        },
      ],
    }),
  ];
  const { table } = compilePolicies({
    self: 'n1',
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    policies,
  });
  const intervalSets = table.sets.filter((s) => s.flags?.includes('interval'));
  t.true(intervalSets.length > 0);
  for (const s of intervalSets) t.true(disjoint(s.elements), `${s.name}: ${s.elements.join(', ')}`);
  // Each ipBlock is its cidr minus its excepts; pods are in sets of their own.
  t.deepEqual(
    intervalSets
      .filter((s) => s.name.endsWith('-v4'))
      .map((s) => s.elements)
      .sort(),
    [['100.64.0.0/24', '100.64.2.0-100.64.255.255'], ['100.65.0.0-100.79.255.255']],
  );
  const { reach } = makeCluster(policies);
  t.true(reach({ from: 'x/b', to: 'x/a' }), 'a pod inside an except is still a selected pod');
});

test('two local pods claiming one address: the stricter of both, and a problem', (t) => {
  const pods: PolicyPod[] = [
    {
      namespace: 'x',
      name: 'old',
      labels: { app: 'old' },
      ips: ['100.64.1.50'],
      node: 'n1',
      ports: [],
    },
    {
      namespace: 'x',
      name: 'new',
      labels: { app: 'new' },
      ips: ['100.64.1.50'],
      node: 'n1',
      ports: [],
    },
  ];
  const policies = [
    policy({
      name: 'old',
      podSelector: labels({ app: 'old' }),
      ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 80 }] }],
    }),
    policy({
      name: 'new',
      podSelector: labels({ app: 'new' }),
      ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 80, endPort: 81 }] }],
    }),
  ];
  const { table, problems } = compilePolicies({
    self: 'n1',
    pods,
    namespaces: upstreamNamespaces(),
    policies,
  });
  t.is(problems.length, 1);
  t.like(problems[0], { kind: 'Pod', reason: 'AddressConflict' });
  const probe = (port: number) =>
    hookVerdict(table, POLICY_FORWARD_CHAIN, {
      src: '100.64.9.9',
      dst: '100.64.1.50',
      proto: 'tcp',
      dport: port,
    });
  t.is(probe(80), 'accept');
  t.is(probe(81), 'drop');
});

test('an invalid policy isolates the pods it selects and allows nothing', (t) => {
  const policies = [
    policy({
      name: 'bad',
      podSelector: labels({ pod: 'a' }),
      ingress: [{ peers: [{ ipBlock: { cidr: '100.64.0.0/33', except: [] } }], ports: [] }],
    }),
  ];
  const { reach } = makeCluster(policies);
  t.false(reach({ from: 'y/a', to: 'x/a' }));
  t.true(reach({ from: 'y/a', to: 'x/b' }));
  const { problems } = compilePolicies({
    self: 'n1',
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    policies,
  });
  t.deepEqual(problems, [
    {
      kind: 'NetworkPolicy',
      namespace: 'x',
      name: 'bad',
      reason: 'InvalidPolicy',
      message:
        "spec.ingress[0].from[0].ipBlock.cidr '100.64.0.0/33' has a prefix longer than 32 bits; the pods it selects are isolated and it allows nothing",
    },
  ]);
});

const invalidPolicy = test.macro({
  exec(t, mutate: Partial<NetworkPolicy>, message: RegExp) {
    const { problems } = compilePolicies({
      self: 'n1',
      pods: upstreamPods(),
      namespaces: upstreamNamespaces(),
      policies: [policy({ name: 'p', ...mutate })],
    });
    t.is(problems.length, 1);
    t.regex(problems[0]?.message ?? '', message);
  },
  title: (title = '') => `problem: ${title}`,
});
test(
  'except outside the cidr',
  invalidPolicy,
  {
    ingress: [{ peers: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['11.0.0.0/8'] } }], ports: [] }],
  },
  /except\[0\] '11.0.0.0\/8' is not strictly inside/,
);
test(
  'except of the other family',
  invalidPolicy,
  {
    ingress: [{ peers: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['fd00::/64'] } }], ports: [] }],
  },
  /not strictly inside/,
);
test(
  'ipBlock with a selector',
  invalidPolicy,
  {
    egress: [
      { peers: [{ ipBlock: { cidr: '10.0.0.0/8', except: [] }, podSelector: ALL }], ports: [] },
    ],
  },
  /spec\.egress\[0\]\.to\[0\]: ipBlock cannot be combined/,
);
test(
  'endPort with a named port',
  invalidPolicy,
  {
    ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 'http', endPort: 90 }] }],
  },
  /endPort needs a numeric port/,
);
test(
  'endPort below port',
  invalidPolicy,
  {
    ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 90, endPort: 80 }] }],
  },
  /endPort must be a port no smaller/,
);
test(
  'port 0',
  invalidPolicy,
  {
    ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 0 }] }],
  },
  /port must be 1 to 65535/,
);
test(
  'a bad port name',
  invalidPolicy,
  {
    ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 'Not_A_Name' }] }],
  },
  /not a valid port name/,
);

const goldenCases: [string, NetworkPolicy[]][] = [
  ['default deny', [policy({ name: 'deny', policyTypes: ['Ingress', 'Egress'] })]],
  [
    'selectors, named ports, ranges and ipBlock',
    [
      policy({
        name: 'web',
        podSelector: labels({ pod: 'a' }),
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          {
            peers: [
              { podSelector: labels({ pod: 'b' }) },
              { ipBlock: { cidr: '100.64.0.0/16', except: ['100.64.2.0/24'] } },
            ],
            ports: [
              { protocol: 'TCP', port: 80 },
              { protocol: 'UDP', port: 'serve-81-udp' },
              { protocol: 'SCTP', port: 80, endPort: 90 },
            ],
          },
        ],
        egress: [
          {
            peers: [{ namespaceSelector: labels({ ns: 'y' }) }],
            ports: [{ protocol: 'TCP', port: 'serve-80-tcp' }, { protocol: 'UDP' }],
          },
        ],
      }),
    ],
  ],
  [
    'two policies on one pod, one on its neighbour',
    [
      policy({
        name: 'one',
        podSelector: labels({ pod: 'a' }),
        ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 80 }] }],
      }),
      policy({ name: 'two', ingress: [{ peers: [{ podSelector: ALL }], ports: [] }] }),
    ],
  ],
];
for (const [title, policies] of goldenCases) {
  test(`golden fragment: ${title}`, (t) => {
    const r = compilePolicies({
      self: 'n1',
      pods: upstreamPods(),
      namespaces: upstreamNamespaces(),
      policies,
    });
    t.deepEqual(r.problems, []);
    t.notThrows(() => checkTable(composeTable({ policy: r.table })), "the table driver's checks");
    t.snapshot(renderFragment(r.table), 'nft -f text');
    t.snapshot(r.stats, 'stats');
  });
}
