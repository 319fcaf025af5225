import test from 'ava';
import {
  namespaceFromK8s,
  networkPolicyFromK8s,
  podFromK8s,
  podRecordForPolicy,
  samePodRecord,
} from './k8s.ts';
import { compilePolicies } from './compile.ts';
import { makeCluster, upstreamNamespaces, upstreamPods } from './fixtures.ts';
import type { NetworkPolicy, PolicyProblemReason } from './types.ts';

const np = (spec: unknown, name = 'p') => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { namespace: 'x', name },
  spec,
});

test('a full NetworkPolicy translates field by field', (t) => {
  const { policy, problems } = networkPolicyFromK8s(
    np({
      podSelector: {
        matchLabels: { pod: 'a' },
        matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }],
      },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [
        {
          from: [
            { podSelector: { matchLabels: { pod: 'b' } } },
            { namespaceSelector: {}, podSelector: { matchLabels: { pod: 'c' } } },
            { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } },
          ],
          ports: [
            { port: 80 },
            { protocol: 'UDP', port: 'dns' },
            { protocol: 'SCTP', port: 90, endPort: 99 },
          ],
        },
      ],
      egress: [{}],
    }),
  );
  t.deepEqual(problems, []);
  t.deepEqual(policy, {
    namespace: 'x',
    name: 'p',
    podSelector: {
      matchLabels: { pod: 'a' },
      matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }],
    },
    policyTypes: ['Egress', 'Ingress'],
    ingress: [
      {
        peers: [
          { podSelector: { matchLabels: { pod: 'b' }, matchExpressions: [] } },
          {
            namespaceSelector: { matchLabels: {}, matchExpressions: [] },
            podSelector: { matchLabels: { pod: 'c' }, matchExpressions: [] },
          },
          { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } },
        ],
        ports: [
          { protocol: 'TCP', port: 80 },
          { protocol: 'UDP', port: 'dns' },
          { protocol: 'SCTP', port: 90, endPort: 99 },
        ],
      },
    ],
    egress: [{ peers: [], ports: [] }],
  } satisfies NetworkPolicy);
});

const defaulting = test.macro({
  exec(t, spec: unknown, types: string[]) {
    const { policy, problems } = networkPolicyFromK8s(np(spec));
    t.deepEqual(problems, []);
    t.deepEqual(policy?.policyTypes, types);
  },
  title: (title = '') => `policyTypes defaulting: ${title}`,
});
test('no rules: Ingress', defaulting, { podSelector: {} }, ['Ingress']);
test('egress rules: Ingress and Egress', defaulting, { podSelector: {}, egress: [{}] }, [
  'Egress',
  'Ingress',
]);
test('empty egress list: Ingress', defaulting, { podSelector: {}, egress: [] }, ['Ingress']);
test(
  'explicit Egress only',
  defaulting,
  { podSelector: {}, policyTypes: ['Egress'], ingress: [{}] },
  ['Egress'],
);
test('a missing podSelector means every pod', defaulting, {}, ['Ingress']);

const failsClosed = test.macro({
  exec(
    t,
    spec: unknown,
    expected: { reason: PolicyProblemReason; message: RegExp; isolates: Partial<NetworkPolicy> },
  ) {
    const { policy, problems } = networkPolicyFromK8s(np(spec));
    t.is(problems.length, 1);
    t.like(problems[0], {
      kind: 'NetworkPolicy',
      namespace: 'x',
      name: 'p',
      reason: expected.reason,
    });
    t.regex(problems[0]?.message ?? '', expected.message);
    t.like(policy, { ingress: [], egress: [], ...expected.isolates });
  },
  title: (title = '') => `fails closed: ${title}`,
});
const allBoth = {
  podSelector: { matchLabels: {}, matchExpressions: [] },
  policyTypes: ['Egress', 'Ingress'],
};
test('spec is not an object', failsClosed, 'nope', {
  reason: 'InvalidPolicy',
  message: /^spec must be an object; .*every pod of the namespace, Egress and Ingress/,
  isolates: allBoth as Partial<NetworkPolicy>,
});
test(
  'a bad podSelector isolates the whole namespace both ways',
  failsClosed,
  {
    podSelector: { matchExpressions: [{ key: 'a', operator: 'Like', values: ['x'] }] },
    policyTypes: ['Ingress'],
  },
  {
    reason: 'InvalidPolicy',
    message: /spec\.podSelector\.matchExpressions\[0\]\.operator must be one of/,
    isolates: allBoth as Partial<NetworkPolicy>,
  },
);
test(
  'In without values',
  failsClosed,
  {
    podSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] },
  },
  {
    reason: 'InvalidPolicy',
    message: /In and NotIn need values/,
    isolates: allBoth as Partial<NetworkPolicy>,
  },
);
test(
  'a bad policyType isolates both ways, with the podSelector kept',
  failsClosed,
  {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Ingress', 'Sideways'],
  },
  {
    reason: 'InvalidPolicy',
    message: /policyTypes has 'Sideways'/,
    isolates: {
      podSelector: { matchLabels: { pod: 'a' }, matchExpressions: [] },
      policyTypes: ['Egress', 'Ingress'],
    },
  },
);
test(
  'a bad except keeps isolation for the declared direction only',
  failsClosed,
  {
    podSelector: { matchLabels: { pod: 'a' } },
    ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['10.0.0.0/33'] } }] }],
  },
  {
    reason: 'InvalidPolicy',
    message: /spec\.ingress\[0\]\.from\[0\]\.ipBlock\.except\[0\] '10\.0\.0\.0\/33'/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'an unknown peer field is unsupported',
  failsClosed,
  {
    podSelector: {},
    egress: [{ to: [{ namespaces: ['y'] }] }],
  },
  {
    reason: 'UnsupportedField',
    message: /spec\.egress\[0\]\.to\[0\]\.namespaces is not supported/,
    isolates: allBoth as Partial<NetworkPolicy>,
  },
);
test(
  'an unknown spec field is unsupported',
  failsClosed,
  {
    podSelector: {},
    priority: 3,
  },
  {
    reason: 'UnsupportedField',
    message: /spec\.priority is not supported/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'an unknown protocol',
  failsClosed,
  {
    ingress: [{ ports: [{ protocol: 'ICMP' }] }],
  },
  {
    reason: 'InvalidPolicy',
    message: /protocol "ICMP" is not one of TCP, UDP, SCTP/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'a numeric string port is not a port name',
  failsClosed,
  {
    ingress: [{ ports: [{ port: '80' }] }],
  },
  {
    reason: 'InvalidPolicy',
    message: /port '80' is not a valid port name/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'endPort without port',
  failsClosed,
  {
    ingress: [{ ports: [{ endPort: 90 }] }],
  },
  {
    reason: 'InvalidPolicy',
    message: /endPort needs a numeric port/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'an empty peer',
  failsClosed,
  {
    ingress: [{ from: [{}] }],
  },
  {
    reason: 'InvalidPolicy',
    message: /needs a selector or an ipBlock/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'rules that are not a list',
  failsClosed,
  {
    ingress: { from: [] },
  },
  {
    reason: 'InvalidPolicy',
    message: /spec\.ingress must be a list/,
    isolates: { policyTypes: ['Ingress'] },
  },
);
test(
  'a label value that is not a string',
  failsClosed,
  {
    podSelector: { matchLabels: { pod: 7 } },
  },
  {
    reason: 'InvalidPolicy',
    message: /matchLabels\["pod"\] must be a string/,
    isolates: allBoth as Partial<NetworkPolicy>,
  },
);

test('a policy that fails closed denies its pods in the compiled cluster', (t) => {
  const { policy } = networkPolicyFromK8s(
    np({
      podSelector: { matchLabels: { pod: 'a' } },
      ingress: [{ from: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['bogus'] } }] }],
    }),
  );
  if (!policy) throw new Error('no policy');
  const { reach } = makeCluster([policy]);
  t.false(reach({ from: 'y/a', to: 'x/a' }), 'never the allow-all the broken except would give');
  t.true(reach({ from: 'y/a', to: 'x/b' }));
  t.true(reach({ from: 'x/a', to: 'y/a' }), 'egress was not declared');
});

test('a policy without namespace or name cannot be placed', (t) => {
  const { policy, problems } = networkPolicyFromK8s({ metadata: { name: 'p' }, spec: {} });
  t.is(policy, null);
  t.like(problems[0], { reason: 'InvalidPolicy' });
});

const podObj = (over: Record<string, unknown> = {}, status: Record<string, unknown> = {}) => ({
  metadata: { namespace: 'x', name: 'a', labels: { pod: 'a' } },
  spec: {
    nodeName: 'n1',
    containers: [
      {
        name: 'web',
        ports: [
          { name: 'http', containerPort: 8080 },
          { name: 'dns', containerPort: 53, protocol: 'UDP' },
          { containerPort: 9000 },
        ],
      },
    ],
    initContainers: [
      { name: 'proxy', restartPolicy: 'Always', ports: [{ name: 'admin', containerPort: 15000 }] },
      { name: 'setup', ports: [{ name: 'setup', containerPort: 1 }] },
    ],
    ...over,
  },
  status: {
    phase: 'Running',
    podIP: '100.64.1.1',
    podIPs: [{ ip: '100.64.1.1' }, { ip: 'fd00:64:1:0:0:0:0:1' }],
    ...status,
  },
});

test('a pod translates: both families, named ports of containers and sidecars', (t) => {
  const { pod, problems } = podFromK8s(podObj());
  t.deepEqual(problems, []);
  t.deepEqual(pod, {
    namespace: 'x',
    name: 'a',
    labels: { pod: 'a' },
    ips: ['100.64.1.1', 'fd00:64:1::1'],
    node: 'n1',
    ports: [
      { name: 'admin', port: 15000, protocol: 'TCP' },
      { name: 'dns', port: 53, protocol: 'UDP' },
      { name: 'http', port: 8080, protocol: 'TCP' },
    ],
  });
});

test('host-network and finished pods are not policed', (t) => {
  t.is(podFromK8s(podObj({ hostNetwork: true })).pod, null);
  t.is(podFromK8s(podObj({}, { phase: 'Succeeded' })).pod, null);
  t.is(podFromK8s(podObj({}, { phase: 'Failed' })).pod, null);
  t.not(
    podFromK8s(podObj({}, { phase: 'Pending', podIP: undefined, podIPs: undefined })).pod,
    null,
  );
});

test('a malformed address or port of a pod is dropped with a problem', (t) => {
  const { pod, problems } = podFromK8s(
    podObj(
      {
        containers: [{ name: 'c', ports: [{ name: 'big', containerPort: 70000 }] }],
        initContainers: [],
      },
      { podIP: '100.64.1.1', podIPs: [{ ip: '100.064.1.1' }, { ip: 'nonsense' }] },
    ),
  );
  t.deepEqual(pod?.ips, ['100.64.1.1']);
  t.deepEqual(pod?.ports, []);
  t.is(problems.length, 3);
  t.true(problems.every((p) => p.reason === 'InvalidPod'));
});

test("the policy watch's record of a pod is its translation, without the pod's own fields", (t) => {
  const cases = [
    podObj(),
    podObj({ hostNetwork: true }),
    podObj({}, { phase: 'Succeeded' }),
    podObj({}, { phase: 'Pending', podIP: undefined, podIPs: undefined }),
    podObj(
      {
        containers: [{ name: 'c', ports: [{ name: 'big', containerPort: 70000 }] }, 'junk'],
        initContainers: 'junk',
      },
      { podIP: '100.64.1.1', podIPs: [{ ip: '100.064.1.1' }, { ip: 'nonsense' }] },
    ),
    { metadata: { name: 'no-namespace' } },
  ];
  for (const whole of cases) {
    const withBulk = {
      ...whole,
      metadata: {
        ...whole.metadata,
        managedFields: [{ manager: 'kubectl' }],
        uid: 'u1',
        resourceVersion: '9',
      },
    };
    const record = podRecordForPolicy(withBulk);
    const { pod, problems } = podFromK8s(withBulk);
    t.deepEqual({ pod: record.pod, problems: [...record.problems] }, { pod, problems });
    // What the informer keys and versions the record by, and nothing else of the Pod.
    t.deepEqual(record.metadata, {
      name: whole.metadata.name,
      namespace: 'namespace' in whole.metadata ? whole.metadata.namespace : '',
      resourceVersion: '9',
    });
    t.deepEqual(Object.keys(record).sort(), ['metadata', 'pod', 'problems']);
  }
});

test('pods that differ only in what policy does not read are the same to it', (t) => {
  const a = podObj();
  const rv = (o: object, v: string) => ({ ...o, metadata: { ...a.metadata, resourceVersion: v } });
  const conditions = { ...a, status: { ...a.status, conditions: [{ type: 'Ready' }] } };
  const same = (x: object, y: object) =>
    samePodRecord(podRecordForPolicy(x), podRecordForPolicy(y));
  t.true(same(rv(a, '1'), rv(conditions, '2')));
  const relabelled = { ...a, metadata: { ...a.metadata, labels: { pod: 'b' } } };
  t.false(same(a, relabelled));
  const moved = podObj({}, { podIP: '100.64.1.2', podIPs: [{ ip: '100.64.1.2' }] });
  t.false(same(a, moved));
  const renamedPort = podObj({
    containers: [{ name: 'web', ports: [{ name: 'web', containerPort: 8080 }] }],
  });
  t.false(same(a, renamedPort));
  const badAddress = podObj(
    {},
    { podIP: '100.64.1.1', podIPs: [{ ip: '100.64.1.1' }, { ip: 'x' }] },
  );
  t.false(
    same(podObj({}, { podIPs: [{ ip: '100.64.1.1' }] }), badAddress),
    'a new problem is a change',
  );
});

test('a namespace translates with its labels', (t) => {
  t.deepEqual(namespaceFromK8s({ metadata: { name: 'x', labels: { ns: 'x' } } }), {
    namespace: { name: 'x', labels: { ns: 'x' } },
    problems: [],
  });
  t.is(namespaceFromK8s({ metadata: {} }).namespace, null);
});

test('translated objects compile to the same fragment as hand-built ones', (t) => {
  const pods = upstreamPods().map(
    (p) =>
      podFromK8s({
        metadata: { namespace: p.namespace, name: p.name, labels: p.labels },
        spec: {
          nodeName: p.node,
          containers: [
            {
              name: 'c',
              ports: p.ports.map((q) => ({
                name: q.name,
                containerPort: q.port,
                protocol: q.protocol,
              })),
            },
          ],
        },
        status: { podIPs: p.ips.map((ip) => ({ ip })) },
      }).pod,
  );
  const namespaces = upstreamNamespaces().map(
    (n) => namespaceFromK8s({ metadata: { name: n.name, labels: n.labels } }).namespace,
  );
  const { policy } = networkPolicyFromK8s(
    np({ podSelector: {}, ingress: [{ ports: [{ port: 'serve-80-tcp' }] }] }),
  );
  const viaK8s = compilePolicies({
    self: 'n1',
    pods: pods.filter((p) => p !== null),
    namespaces: namespaces.filter((n) => n !== null),
    policies: policy ? [policy] : [],
  });
  const direct = compilePolicies({
    self: 'n1',
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    policies: [
      {
        namespace: 'x',
        name: 'p',
        podSelector: { matchLabels: {}, matchExpressions: [] },
        policyTypes: ['Ingress'],
        ingress: [{ peers: [], ports: [{ protocol: 'TCP', port: 'serve-80-tcp' }] }],
        egress: [],
      },
    ],
  });
  t.deepEqual(viaK8s.table, direct.table);
});

test('fuzz: arbitrary specs never throw and never yield a policy that allows without validity', (t) => {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const atoms: unknown[] = [
    null,
    0,
    -1,
    80,
    70000,
    '',
    'x',
    '80',
    'TCP',
    'Ingress',
    '10.0.0.0/8',
    [],
    {},
    true,
  ];
  const keys = [
    'podSelector',
    'policyTypes',
    'ingress',
    'egress',
    'from',
    'to',
    'ports',
    'ipBlock',
    'cidr',
    'except',
    'port',
    'endPort',
    'protocol',
    'matchLabels',
    'matchExpressions',
    'key',
    'operator',
    'values',
    'namespaceSelector',
  ];
  const gen = (depth: number): unknown => {
    const r = rand();
    if (depth > 3 || r < 0.3) return atoms[Math.floor(rand() * atoms.length)];
    if (r < 0.5) return Array.from({ length: Math.floor(rand() * 3) }, () => gen(depth + 1));
    const o: Record<string, unknown> = {};
    for (let i = 0; i < 3; i++)
      o[keys[Math.floor(rand() * keys.length)] as string] = gen(depth + 1);
    return o;
  };
  for (let i = 0; i < 2000; i++) {
    const { policy, problems } = networkPolicyFromK8s(np(gen(0)));
    if (!policy) throw new Error('namespaced object lost');
    if (problems.length > 0) {
      t.deepEqual([policy.ingress, policy.egress], [[], []]);
    }
    // Whatever came out compiles without a new problem of its own.
    const compiled = compilePolicies({
      self: 'n1',
      pods: upstreamPods(),
      namespaces: upstreamNamespaces(),
      policies: [policy],
    });
    t.deepEqual(compiled.problems, []);
  }
});
