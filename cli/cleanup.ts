// `wiremesh cleanup`: run on a node after deleting the DaemonSet; removes every
// device, route, rule, nftables table, process and file of wiremesh there, and says
// what it removed. Pod interfaces only with --pods (that cuts the pods still running).
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { defaultRunner, requireRoot } from '../sys/index.ts';
import {
  DEFAULT_CLEANUP_PATHS,
  applyCleanup,
  describeAction,
  observeNode,
  planCleanup,
} from '../install/cleanup.ts';

export async function runCleanup(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      pods: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      output: { type: 'string', short: 'o' },
      // The node's file system elsewhere, e.g. /host under `kubectl debug node/NAME`.
      root: { type: 'string', default: '/' },
      'state-dir': { type: 'string', default: DEFAULT_CLEANUP_PATHS.stateDir },
      'run-dir': { type: 'string', default: DEFAULT_CLEANUP_PATHS.runDir },
      'cni-bin-dir': { type: 'string', default: DEFAULT_CLEANUP_PATHS.cniBinDir },
      'cni-conf-dir': { type: 'string', default: DEFAULT_CLEANUP_PATHS.cniConfDir },
    },
  });
  if (values.output !== undefined && values.output !== 'json')
    throw new Error(`unknown output format '${values.output}': use -o json`);
  requireRoot('wiremesh cleanup');
  const at = (path: string) => join(values.root, path);
  const env = {
    runner: defaultRunner,
    paths: {
      stateDir: at(values['state-dir']),
      runDir: at(values['run-dir']),
      cniBinDir: at(values['cni-bin-dir']),
      cniConfDir: at(values['cni-conf-dir']),
      wireguardRunDir: at(DEFAULT_CLEANUP_PATHS.wireguardRunDir),
    },
  };
  const observed = await observeNode(env);
  if (observed.agentRunning && !values.force)
    throw new Error(
      `the wiremesh agent is still running on this node (${env.paths.runDir}/agent.sock answers) and would put everything back; ` +
        'delete the DaemonSet first (kubectl -n kube-system delete daemonset wiremesh-agent), or pass --force',
    );
  const plan = planCleanup(observed, { pods: values.pods });
  const result = values['dry-run']
    ? { removed: [], kept: plan.kept, failed: [], wouldRemove: plan.actions.map(describeAction) }
    : await applyCleanup(env, plan);
  if (values.output === 'json') {
    process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  } else {
    const lines: string[] = [];
    if ('wouldRemove' in result)
      for (const l of result.wouldRemove) lines.push(`would remove ${l}`);
    for (const l of result.removed) lines.push(`removed ${l}`);
    for (const l of result.kept) lines.push(`kept ${l}`);
    for (const l of result.failed) lines.push(`FAILED ${l}`);
    if (!lines.length) lines.push('nothing of wiremesh on this node');
    process.stdout.write(lines.join('\n') + '\n');
  }
  return result.failed.length ? 1 : 0;
}
