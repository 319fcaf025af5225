// A compile keeps its sorted pods, label index, selections and pod-built sets for the
// next one. Whatever changes between two compiles, the kept parts must not show: a
// compile that follows another gives what a compile from nothing gives. A compile of
// an unrelated cluster in between leaves nothing to keep (other namespaces, other
// sets), so the second compile of each step is one from nothing.
import test from 'ava';
import { compilePolicies } from './compile.ts';
import type { CompileInput, NetworkPolicy, PolicyNamespace, PolicyPod } from './types.ts';

const sel = (labels: Record<string, string>) => ({ matchLabels: labels, matchExpressions: [] });

function cluster(): CompileInput {
  const namespaces: PolicyNamespace[] = ['a', 'b', 'c'].map((name, i) => ({
    name,
    labels: { env: i % 2 ? 'prod' : 'dev' },
  }));
  const pods: PolicyPod[] = [];
  for (const [n, ns] of namespaces.entries()) {
    for (let i = 0; i < 12; i++) {
      pods.push({
        namespace: ns.name,
        name: `p${i}`,
        labels: { app: `app-${i % 3}`, tier: i % 2 ? 'web' : 'db' },
        ips: [`100.64.${n}.${i + 1}`, `fd00:64:${n}::${i + 1}`],
        node: `n${i % 2}`,
        ports: [
          { name: 'http', port: 8080 + (i % 2), protocol: 'TCP' },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ],
      });
    }
  }
  const policies: NetworkPolicy[] = namespaces.flatMap((ns) =>
    [0, 1, 2].map((k) => ({
      namespace: ns.name,
      name: `pol-${k}`,
      podSelector: sel({ app: `app-${k}` }),
      policyTypes: ['Ingress', 'Egress'] as ('Ingress' | 'Egress')[],
      ingress: [
        {
          peers: [
            { podSelector: sel({ tier: 'web' }) },
            { namespaceSelector: sel({ env: 'prod' }), podSelector: sel({ app: 'app-1' }) },
          ],
          ports: [{ protocol: 'TCP' as const, port: 'http' }],
        },
      ],
      egress: [
        {
          peers: [{ namespaceSelector: sel({ env: 'prod' }) }],
          ports: [{ protocol: 'UDP' as const, port: 'dns' }],
        },
        { peers: [{ ipBlock: { cidr: '100.64.1.0/24', except: [] } }], ports: [] },
        { peers: [], ports: [{ protocol: 'TCP' as const, port: 'http' }] },
      ],
    })),
  );
  return { self: 'n0', pods, namespaces, policies };
}

/** Other namespaces, other pods, other policies: nothing of it is kept for `cluster()`. */
function unrelated(): CompileInput {
  return {
    self: 'n0',
    namespaces: [{ name: 'elsewhere', labels: {} }],
    pods: [
      {
        namespace: 'elsewhere',
        name: 'lone',
        labels: { app: 'x' },
        ips: ['10.9.9.9'],
        node: 'n0',
        ports: [],
      },
    ],
    policies: [
      {
        namespace: 'elsewhere',
        name: 'deny',
        podSelector: sel({}),
        policyTypes: ['Ingress'],
        ingress: [],
        egress: [],
      },
    ],
  };
}

type Change = (input: CompileInput, i: number) => CompileInput;

/** Replace pod `i % n` by a changed copy, where it was (as the informer does). */
const replacePod =
  (change: (p: PolicyPod) => PolicyPod): Change =>
  (input, i) => {
    const pods = input.pods.slice();
    const at = (i * 7) % pods.length;
    pods[at] = change(pods[at] as PolicyPod);
    return { ...input, pods };
  };

const changes: Record<string, Change> = {
  'a label no selector reads': replacePod((p) => ({ ...p, labels: { ...p.labels, x: 'y' } })),
  'a label into and out of selections': replacePod((p) => ({
    ...p,
    labels: { ...p.labels, app: p.labels.app === 'app-1' ? 'app-2' : 'app-1' },
  })),
  'a tier flip': replacePod((p) => ({
    ...p,
    labels: { ...p.labels, tier: p.labels.tier === 'web' ? 'db' : 'web' },
  })),
  'a new address': replacePod((p) => ({
    ...p,
    ips: p.ips.map((ip) =>
      ip.includes(':') ? ip.replace('::', '::f') : ip.replace(/\.(\d+)$/, '.2$1'),
    ),
  })),
  'a named port moved': replacePod((p) => ({
    ...p,
    ports: p.ports.map((port) =>
      port.name === 'http' ? { ...port, port: port.port + 100 } : port,
    ),
  })),
  'a pod moved to the other node': replacePod((p) => ({
    ...p,
    node: p.node === 'n0' ? 'n1' : 'n0',
  })),
  'a pod added': (input, i) => ({
    ...input,
    pods: [
      ...input.pods,
      { ...(input.pods[0] as PolicyPod), name: `new-${i}`, ips: [`100.64.1.${100 + i}`] },
    ],
  }),
  'a pod deleted': (input, i) => ({
    ...input,
    pods: input.pods.filter((_, at) => at !== (i * 5) % input.pods.length),
  }),
  "a second object under a pod's name": (input, i) => ({
    ...input,
    pods: [
      ...input.pods,
      { ...(input.pods[i % input.pods.length] as PolicyPod), ips: [`100.64.9.${i}`] },
    ],
  }),
  'a namespace relabelled': (input, i) => ({
    ...input,
    namespaces: input.namespaces.map((ns, at) =>
      at === i % input.namespaces.length
        ? { ...ns, labels: { env: ns.labels.env === 'prod' ? 'dev' : 'prod' } }
        : ns,
    ),
  }),
};

test('a compile after another gives what a compile from nothing gives, through every kind of change', (t) => {
  let input = cluster();
  compilePolicies(input);
  const names = Object.keys(changes);
  for (let i = 0; i < 60; i++) {
    const name = names[i % names.length] as string;
    input = (changes[name] as Change)(input, i);
    const kept = compilePolicies(input);
    compilePolicies(unrelated());
    const fresh = compilePolicies(input);
    t.deepEqual(kept, fresh, `step ${i}: ${name}`);
  }
});

test('a change shows in the sets built from the changed pod', (t) => {
  let input = cluster();
  const before = compilePolicies(input);
  input = changes['a named port moved']?.(input, 0) ?? input;
  const after = compilePolicies(input);
  const named = (r: typeof before) =>
    r.table.sets
      .filter((s) => s.name.startsWith('pol-named-'))
      .flatMap((s) => s.elements)
      .filter((e) => e.includes('tcp'))
      .sort();
  t.notDeepEqual(named(after), named(before));
  t.true(named(after).some((e) => e.endsWith('. tcp . 8180')));
});

test('a pod list changed in place by the caller between compiles is seen as changed', (t) => {
  const input = cluster();
  const before = compilePolicies(input);
  const at = input.pods.findIndex((p) => p.node === 'n0');
  const pod = input.pods[at] as PolicyPod;
  (input.pods as PolicyPod[])[at] = { ...pod, ips: ['100.64.7.7'] };
  const after = compilePolicies(input);
  const dispatched = (r: typeof before) =>
    r.table.maps.flatMap((m) => Object.keys(m.elements)).filter((a) => a === '100.64.7.7');
  t.deepEqual(dispatched(before), []);
  t.true(dispatched(after).length > 0);
});
