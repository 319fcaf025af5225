// Benchmark scenarios, by name. Each returns its figures; bench/main.ts prints them.
import { compare, type Figure } from './harness.ts';
import { Lab } from '../lab/index.ts';
import { defaultRunner } from '../sys/index.ts';
import { benchReplan, benchAgentScale, benchConvergence, benchThroughput } from './mesh.ts';
import { benchCniLatency } from './cni.ts';

export interface Scenario {
  description: string;
  run(options: { repeats: number }): Promise<Figure[]>;
}

/** The policy-compile benchmark's scale as lab background: 10,000 pods, 1,000 policies. */
const TEN_THOUSAND_PODS = { namespaces: 20, podsPerNamespace: 500, policiesPerNamespace: 50 };

export const scenarios: Record<string, Scenario> = {
  'lab-exec': {
    description:
      'cost of running a command inside a lab node (netns + mount ns) against running it on the host',
    async run({ repeats }) {
      const lab = await Lab.up({ name: 'bexec', nodes: 1, podsPerNode: 0 });
      try {
        const node = lab.plan.nodes[0]?.name ?? '';
        return [
          await compare(
            'lab-exec',
            'exec true in node',
            'ms',
            () => lab.execInNode(node, ['true']),
            () => defaultRunner.run(['true']),
            { repeats, warmup: 3 },
          ),
        ];
      } finally {
        await lab.down();
      }
    },
  },
  replan: {
    description: 'pure mesh planner at 1,000 and 5,000 nodes, against 3 nodes',
    run: ({ repeats }) => benchReplan(repeats),
  },
  'agent-scale': {
    description:
      'one real agent watching 1,000 and 5,000 simulated Node objects: RSS and reconcile pass time',
    run: ({ repeats }) => benchAgentScale(Math.min(repeats, 10)),
  },
  convergence: {
    description: "a new node's annotation to a peer on all 3 real agents, against a bare watch",
    run: ({ repeats }) => benchConvergence(repeats),
  },
  throughput: {
    description:
      'TCP through the mesh tunnel vs a hand-configured wireguard-go tunnel and the plain underlay',
    run: ({ repeats }) => benchThroughput(Math.min(repeats, 5)),
  },
  'cni-latency': {
    description:
      'wiremesh CNI ADD/DEL p50/p99 at 1 and 20 in flight, and ADDs/s, vs reference bridge + host-local',
    run: ({ repeats }) => benchCniLatency(repeats),
  },
  paths: {
    description:
      'TCP pod to pod over each pool path (WireGuard, VXLAN, native) vs the same device configured by hand, and native across two subnets over BGP routes vs the same routes by hand',
    run: async ({ repeats }) => [
      ...(await (await import('./paths.ts')).benchPaths(Math.min(repeats, 7))),
      ...(await (await import('./paths-bgp.ts')).benchPathsBgp(Math.min(repeats, 7))),
    ],
  },
  'paths-bgp': {
    description:
      "paths' BGP arm alone: native pool pod to pod across two subnets through the lab's router, BGP-learned routes vs the same routes by hand",
    run: async ({ repeats }) =>
      (await import('./paths-bgp.ts')).benchPathsBgp(Math.min(repeats, 7)),
  },
  'policy-compile': {
    description:
      'NetworkPolicy compile of 10,000 pods x 1,000 policies, against JSON.stringify of the same snapshot',
    run: async ({ repeats }) => (await import('./policy.ts')).benchPolicyCompile(repeats),
  },
  'policy-apply': {
    description:
      'NetworkPolicy compile + full apply (10,000 pods x 1,000 policies) and a label increment, in a netns, vs nft loading as many elements by hand',
    run: async ({ repeats }) =>
      (await import('./policy.ts')).benchPolicyApply(Math.min(repeats, 5)),
  },
  'policy-enforce': {
    description:
      'lab: NetworkPolicy create/delete and pod label change -> enforced in the dataplane (p50, p99), vs a plain watch',
    run: async ({ repeats }) => (await import('./policy-lab.ts')).benchPolicyEnforce(repeats),
  },
  'policy-enforce-large': {
    description:
      "lab: as policy-enforce, at the compile benchmark's scale: 10,000 pods on 50 nodes (2 with agents, 48 named only), 1,000 policies",
    run: async ({ repeats }) =>
      (await import('./policy-lab.ts')).benchPolicyEnforce(repeats, {
        ...TEN_THOUSAND_PODS,
        simulatedNodes: 48,
      }),
  },
  'policy-enforce-dense': {
    description:
      'lab: as policy-enforce-large, with all 10,000 pods on the 2 agent nodes (5,000 local pods each: the worst case)',
    run: async ({ repeats }) =>
      (await import('./policy-lab.ts')).benchPolicyEnforce(repeats, TEN_THOUSAND_PODS),
  },
  'k8s-limits': {
    description:
      "lab: one real agent at Kubernetes' limits (5,000 nodes, 150,000 pods, 10,000 policies as API objects): RSS, start-up to the first full pass, label change to enforcement, vs the lab's objects only",
    run: async ({ repeats }) => (await import('./limits.ts')).benchLimits(repeats),
  },
  'policy-throughput': {
    description:
      'lab: TCP between two pods (across nodes and on one node) with 1,000 NetworkPolicies in force vs none',
    run: async ({ repeats }) =>
      (await import('./policy-throughput.ts')).benchPolicyThroughput(Math.min(repeats, 9)),
  },
  'pod-startup': {
    description:
      'real-node lab: a Deployment scaled 0 -> 30 and 0 -> 100 pods over 3 nodes and back, created to Ready and deletion (p50, p99), vs bridge + host-local under the same kubelets',
    run: async ({ repeats }) =>
      (await import('./pod-startup.ts')).benchPodStartup(Math.min(repeats, 5)),
  },
  'nft-apply': {
    description:
      'nftables TableDriver: full replace (1,000 chains, 10,000 elements), increment, verify, vs an empty nft transaction',
    run: async ({ repeats }) =>
      (await import('../nftables/bench.ts')).benchNftTable(Math.min(repeats, 5)),
  },
};
