// Policy compile benchmark (policy-compile): the pure NetworkPolicy compiler over a
// cluster of 10,000 pods (100 namespaces x 100 pods, on 50 nodes) and 1,000
// policies (10 per namespace, each with pod and namespace selectors, numeric and
// named ports, an ipBlock with except, half with egress rules), compiled for one
// node (200 local pods) and for a node holding every pod (the worst case for one
// fragment). Baseline, in the same run: JSON.stringify of the same snapshot, i.e.
// the cost of merely touching every input object once. Figures are medians over
// repeats; the fragment's size is reported alongside.
import { figureOf, type Figure } from './harness.ts';
import {
  compilePolicies,
  type CompileInput,
  type NetworkPolicy,
  type PolicyPod,
} from '../policy/index.ts';

const BENCH = 'policy-compile';

export function policySnapshot(options: {
  namespaces: number;
  podsPerNamespace: number;
  policiesPerNamespace: number;
  nodes: number;
}): Omit<CompileInput, 'self'> {
  const { namespaces: nsCount, podsPerNamespace, policiesPerNamespace, nodes } = options;
  const namespaces = Array.from({ length: nsCount }, (_, n) => ({
    name: `ns-${n}`,
    labels: { team: `team-${n % 5}`, env: n % 2 ? 'prod' : 'dev' },
  }));
  const pods: PolicyPod[] = [];
  for (let n = 0; n < nsCount; n++) {
    for (let i = 0; i < podsPerNamespace; i++) {
      const id = n * podsPerNamespace + i;
      pods.push({
        namespace: `ns-${n}`,
        name: `pod-${i}`,
        labels: { app: `app-${i % 10}`, tier: i % 3 ? 'web' : 'db', 'pod-template-hash': `h${i}` },
        ips: [
          `100.${64 + (id >> 16)}.${(id >> 8) & 255}.${id & 255}`,
          `fd00:64::${id.toString(16)}`,
        ],
        node: `node-${id % nodes}`,
        ports: [
          { name: 'http', port: 8080, protocol: 'TCP' },
          { name: 'metrics', port: 9000 + (i % 3), protocol: 'TCP' },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ],
      });
    }
  }
  const policies: NetworkPolicy[] = [];
  for (let n = 0; n < nsCount; n++) {
    for (let k = 0; k < policiesPerNamespace; k++) {
      const sel = (app: string) => ({ matchLabels: { app }, matchExpressions: [] });
      policies.push({
        namespace: `ns-${n}`,
        name: `policy-${k}`,
        podSelector: sel(`app-${k % 10}`),
        policyTypes: k % 2 ? ['Ingress', 'Egress'] : ['Ingress'],
        ingress: [
          {
            peers: [
              { podSelector: sel(`app-${(k + 1) % 10}`) },
              {
                namespaceSelector: { matchLabels: { team: `team-${k % 5}` }, matchExpressions: [] },
                podSelector: {
                  matchLabels: {},
                  matchExpressions: [{ key: 'tier', operator: 'In', values: ['web'] }],
                },
              },
            ],
            ports: [
              { protocol: 'TCP', port: 8080 },
              { protocol: 'TCP', port: 'metrics' },
            ],
          },
          {
            peers: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`10.${k}.0.0/16`] } }],
            ports: [{ protocol: 'TCP', port: 443 + k, endPort: 500 + k }],
          },
        ],
        egress:
          k % 2
            ? [
                {
                  peers: [
                    { namespaceSelector: { matchLabels: { env: 'prod' }, matchExpressions: [] } },
                  ],
                  ports: [{ protocol: 'UDP', port: 'dns' }],
                },
                { peers: [{ podSelector: sel(`app-${(k + 2) % 10}`) }], ports: [] },
              ]
            : [],
      });
    }
  }
  return { pods, namespaces, policies };
}

function timeIt(fn: () => unknown): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

export async function benchPolicyCompile(repeats: number): Promise<Figure[]> {
  const snapshot = policySnapshot({
    namespaces: 100,
    podsPerNamespace: 100,
    policiesPerNamespace: 10,
    nodes: 50,
  });
  const singleNode = { ...snapshot, pods: snapshot.pods.map((p) => ({ ...p, node: 'node-0' })) };
  const subjects = [
    {
      label: '10,000 pods x 1,000 policies, one of 50 nodes',
      input: { ...snapshot, self: 'node-0' },
    },
    {
      label: '10,000 pods x 1,000 policies, all pods on this node',
      input: { ...singleNode, self: 'node-0' },
    },
  ];
  const figures: Figure[] = [];
  for (const { label, input } of subjects) {
    const result = compilePolicies(input);
    if (result.problems.length > 0)
      throw new Error(`bench snapshot has problems: ${result.problems[0]?.message}`);
    const samples: number[] = [];
    const baseline: number[] = [];
    // Interleaved, so drift in machine load hits subject and baseline alike.
    for (let i = 0; i < repeats; i++) {
      samples.push(timeIt(() => compilePolicies(input)));
      baseline.push(timeIt(() => JSON.stringify(input)));
    }
    figures.push(
      figureOf(
        BENCH,
        `compile, ${label} (baseline: JSON.stringify of the input)`,
        'ms',
        samples,
        baseline,
      ),
    );
    const s = result.stats;
    for (const [what, value] of [
      ['chains', s.chains],
      ['rules', s.rules],
      ['sets', s.sets],
      ['set and map elements', s.elements],
    ] as const) {
      figures.push(figureOf(BENCH, `${what}, ${label}`, 'count', [value]));
    }
  }
  return figures;
}
