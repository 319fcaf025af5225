// Policy benchmarks without a cluster: policy-compile here, policy-apply further down
// (the lab ones: policy-enforce in policy-lab.ts, policy-throughput in policy-throughput.ts).
//
// policy-compile: the pure NetworkPolicy compiler over a
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
import { composeTable } from '../agent/nftable.ts';
import { NftCli, TableDriver, checkTable, planIncremental } from '../nftables/index.ts';
import { PrefixRunner, defaultRunner, requireRoot } from '../sys/index.ts';

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

// ---------------------------------------------------------------------------
// policy-apply: compile + compose + apply through the TableDriver into a throwaway
// network namespace (root), for one node's view and for the all-local worst case,
// then a one-label increment. Baselines, in the same run and the same namespace:
// for the full apply, one hand-written `nft -f` loading as many addresses as the
// compiled table has set and map elements into one plain set of a table of its own
// (the floor for pushing that many elements through netlink); for the increment, a
// hand-written one-element `add element` to that set. Rounds interleave subject and
// baseline; medians over them.

const APPLY_BENCH = 'policy-apply';

/** A script creating table `inet wmbase` whose one set holds `count` distinct IPv4 addresses. */
export function plainSetScript(count: number): string {
  const elements: string[] = [];
  for (let i = 0; i < count; i++)
    elements.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  const lines = ['table inet wmbase {}', 'delete table inet wmbase', 'table inet wmbase {'];
  lines.push('  set s { type ipv4_addr; }', '}');
  for (let i = 0; i < elements.length; i += 5000)
    lines.push(`add element inet wmbase s { ${elements.slice(i, i + 5000).join(', ')} }`);
  return lines.join('\n') + '\n';
}

/** The same pods with one pod's `app` label moved to the next app (a set membership change). */
function relabelled(input: CompileInput, flip: boolean): CompileInput {
  if (!flip) return input;
  const [first, ...rest] = input.pods;
  if (!first) throw new Error('no pods');
  return { ...input, pods: [{ ...first, labels: { ...first.labels, app: 'app-1' } }, ...rest] };
}

async function timeAsync(fn: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

export async function benchPolicyApply(repeats: number): Promise<Figure[]> {
  requireRoot(`bench ${APPLY_BENCH}`);
  const ns = `wmpolbench-${process.pid % 100000}`;
  await defaultRunner.run(['ip', 'netns', 'add', ns]);
  try {
    const inNs = new PrefixRunner(defaultRunner, ['ip', 'netns', 'exec', ns]);
    const nftIn = (script: string) => inNs.run(['nft', '-f', '-'], { input: script });
    const snapshot = policySnapshot({
      namespaces: 100,
      podsPerNamespace: 100,
      policiesPerNamespace: 10,
      nodes: 50,
    });
    const singleNode = { ...snapshot, pods: snapshot.pods.map((p) => ({ ...p, node: 'node-0' })) };
    const subjects = [
      { label: 'one of 50 nodes (200 local pods)', input: { ...snapshot, self: 'node-0' } },
      { label: 'all 10,000 pods on this node', input: { ...singleNode, self: 'node-0' } },
    ];
    const figures: Figure[] = [];
    for (const { label, input } of subjects) {
      const what = `10,000 pods x 1,000 policies, ${label}`;
      const first = compilePolicies(input);
      const elements = first.stats.elements;
      const baseScript = plainSetScript(elements);
      const full: number[] = [];
      const fullApplyOnly: number[] = [];
      const base: number[] = [];
      const incr: number[] = [];
      const incrCompile: number[] = [];
      const incrApplyOnly: number[] = [];
      const incrBase: number[] = [];
      const incrDiff: number[] = [];
      let fullOps = 0;
      let incrOps = 0;
      for (let i = 0; i < repeats; i++) {
        // Full: what an agent does on start-up (a fresh driver: its first apply replaces).
        const driver = new TableDriver(new NftCli(inNs));
        let applyMs = 0;
        full.push(
          await timeAsync(async () => {
            const table = composeTable({ policy: compilePolicies(input).table });
            const t0 = performance.now();
            const r = await driver.apply(table);
            applyMs = performance.now() - t0;
            if (r.mode !== 'full') throw new Error(`expected a full apply, got ${r.mode}`);
            fullOps = r.operations;
          }),
        );
        fullApplyOnly.push(applyMs);
        base.push(await timeAsync(() => nftIn(baseScript)));
        const check = await driver.verify();
        if (!check.inSync)
          throw new Error(`full apply not in the kernel: ${check.differences.join('; ')}`);
        // Increment: one pod's label changes (and, next round, changes back).
        for (const flip of [true, false]) {
          // The diagnostic diff (driver.applied is a structured clone, then the same
          // checkTable + planIncremental the driver runs) is timed apart and kept out of
          // the total, which is compile + compose + driver.apply as the agent runs them.
          const prev = driver.applied;
          const t0 = performance.now();
          const table = composeTable({ policy: compilePolicies(relabelled(input, flip)).table });
          const t1 = performance.now();
          const r = await driver.apply(table);
          const t2 = performance.now();
          if (r.mode !== 'incremental')
            throw new Error(`expected an incremental apply, got ${r.mode} (${r.reason})`);
          incrOps = r.operations;
          incr.push(t2 - t0);
          incrCompile.push(t1 - t0);
          incrApplyOnly.push(t2 - t1);
          if (prev)
            incrDiff.push(await timeAsync(async () => planIncremental(prev, checkTable(table))));
          const addr = `10.255.${i & 255}.${flip ? 1 : 2}`;
          incrBase.push(await timeAsync(() => nftIn(`add element inet wmbase s { ${addr} }\n`)));
        }
      }
      figures.push(
        figureOf(
          APPLY_BENCH,
          `compile + compose + full apply, ${what}, ${fullOps} ops (baseline: one nft -f of ${elements} addresses into a plain set)`,
          'ms',
          full,
          base,
        ),
        figureOf(
          APPLY_BENCH,
          `of which the TableDriver's full apply, ${what} (baseline: as above)`,
          'ms',
          fullApplyOnly,
          base,
        ),
        figureOf(
          APPLY_BENCH,
          `one pod's label change: compile + compose + incremental apply, ${what}, ${incrOps} ops (baseline: one add element by hand)`,
          'ms',
          incr,
          incrBase,
        ),
        figureOf(APPLY_BENCH, `of which compile + compose, ${what}`, 'ms', incrCompile),
        figureOf(
          APPLY_BENCH,
          `of which the driver's in-process part (checkTable + planIncremental, timed apart), ${what}`,
          'ms',
          incrDiff,
        ),
        figureOf(
          APPLY_BENCH,
          `of which the TableDriver's incremental apply (diff + nft), ${what} (baseline: as above)`,
          'ms',
          incrApplyOnly,
          incrBase,
        ),
      );
    }
    return figures;
  } finally {
    await defaultRunner.run(['ip', 'netns', 'del', ns], { allowFailure: true });
  }
}
