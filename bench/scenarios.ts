// Benchmark scenarios, by name. Each returns its figures; bench/main.ts prints them.
import { compare, type Figure } from './harness.ts';
import { Lab } from '../lab/index.ts';
import { defaultRunner } from '../sys/index.ts';

export interface Scenario {
  description: string;
  run(options: { repeats: number }): Promise<Figure[]>;
}

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
};
