// The kind driver's kubectl calls, against a fake kubectl (no Docker here, so no
// kind cluster): what it asks the cluster for, what it runs where, and the objects
// it applies. The kubectl steps themselves run against the lab's apiserver in
// deploy.e2e.test.ts.
import test from 'ava';
import type { Runner, RunOptions, RunResult } from '../sys/index.ts';
import { E2E_NAMESPACE, KindDriver, PROBER_PATH } from './kind-driver.ts';

interface Call {
  argv: string[];
  input?: string;
}

const ok = (stdout = ''): RunResult => ({ stdout, stderr: '', code: 0 });

/** A kubectl that knows three nodes, their probe pods, the agent pods and the pods applied. */
function fakeKubectl(): { runner: Runner; calls: Call[] } {
  const calls: Call[] = [];
  const nodes = ['kind-worker2', 'kind-control-plane', 'kind-worker'];
  const ip = (n: string) => `172.18.0.${nodes.indexOf(n) + 2}`;
  const runner: Runner = {
    run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
      const input = opts?.input === undefined ? undefined : String(opts.input);
      calls.push({ argv: [...argv], ...(input === undefined ? {} : { input }) });
      const args = argv.slice(3); // kubectl --kubeconfig FILE
      const has = (...words: string[]) => words.every((w) => args.includes(w));
      if (has('get', 'nodes'))
        return Promise.resolve(
          ok(
            JSON.stringify({
              items: nodes.map((name) => ({
                metadata: { name },
                status: {
                  addresses: [
                    { type: 'InternalIP', address: `fc00::${nodes.indexOf(name)}` },
                    { type: 'InternalIP', address: ip(name) },
                    { type: 'Hostname', address: name },
                  ],
                },
              })),
            }),
          ),
        );
      if (has('get', 'pods', '-l', 'app=wiremesh-e2e-node'))
        return Promise.resolve(
          ok(
            JSON.stringify({
              items: nodes.map((n) => ({
                metadata: { name: `probe-${n}`, namespace: E2E_NAMESPACE },
                spec: { nodeName: n },
                status: {},
              })),
            }),
          ),
        );
      if (has('get', 'pods', 'kube-system'))
        return Promise.resolve(
          ok(
            JSON.stringify({
              items: nodes.map((n) => ({
                metadata: { name: `wiremesh-agent-${n}`, namespace: 'kube-system' },
                spec: { nodeName: n },
                status: {},
              })),
            }),
          ),
        );
      if (has('get', 'pods'))
        return Promise.resolve(
          ok(
            JSON.stringify({
              items: [
                {
                  metadata: { name: 'x-a', namespace: 'x' },
                  spec: { nodeName: 'kind-worker' },
                  status: { podIPs: [{ ip: '100.64.1.5' }] },
                },
              ],
            }),
          ),
        );
      if (has('wiremesh', 'status'))
        return Promise.resolve(ok(JSON.stringify({ node: args[args.indexOf('exec') + 3] })));
      return Promise.resolve(ok());
    },
  };
  return { runner, calls };
}

async function open() {
  const fake = fakeKubectl();
  const driver = await KindDriver.open('/tmp/kind.kubeconfig', 'kubectl', fake.runner);
  return { driver, calls: fake.calls };
}

const after = (calls: Call[], n: number) => calls.slice(n).map((c) => c.argv.slice(3));

test('open: nodes sorted with their IPv4 InternalIP, a privileged host-network probe on each', async (t) => {
  const { driver, calls } = await open();
  t.deepEqual(driver.nodeNames(), ['kind-control-plane', 'kind-worker', 'kind-worker2']);
  t.is(driver.underlayIP('kind-worker'), '172.18.0.4');
  t.throws(() => driver.underlayIP('nope'), { message: /nope has no IPv4 InternalIP/ });
  const applied = calls.find((c) => c.argv.includes('apply'));
  const ds = JSON.parse(applied?.input ?? '{}') as {
    kind: string;
    spec: {
      template: {
        spec: {
          hostNetwork: boolean;
          containers: { securityContext: { privileged: boolean } }[];
          volumes: { hostPath: { path: string } }[];
        };
      };
    };
  };
  t.is(ds.kind, 'DaemonSet');
  t.true(ds.spec.template.spec.hostNetwork);
  t.true(ds.spec.template.spec.containers[0]?.securityContext.privileged);
  t.deepEqual(
    ds.spec.template.spec.volumes.map((v) => v.hostPath.path),
    ['/run/wireguard'],
  );
  t.true(calls.every((c) => c.argv[0] === 'kubectl' && c.argv[2] === '/tmp/kind.kubeconfig'));
});

test("node commands run in the node's probe pod with the probe image's tools", async (t) => {
  const { driver, calls } = await open();
  const n = calls.length;
  await driver.execInNode('kind-worker', ['wg', 'show', 'wiremesh.wg', 'peers']);
  await driver.execInNode('kind-worker2', ['socat', '-u', 'STDIN', 'TCP:10.0.0.1:7'], {
    input: 'x',
  });
  t.deepEqual(after(calls, n), [
    ['exec', '-n', E2E_NAMESPACE, 'probe-kind-worker', '--', 'wg', 'show', 'wiremesh.wg', 'peers'],
    [
      'exec',
      '-i',
      '-n',
      E2E_NAMESPACE,
      'probe-kind-worker2',
      '--',
      'socat',
      '-u',
      'STDIN',
      'TCP:10.0.0.1:7',
    ],
  ]);
  t.throws(() => driver.execInNode('elsewhere', ['true']), {
    message: /no node probe on elsewhere/,
  });
  t.is(driver.proberPath(), PROBER_PATH);
});

test('agentStatus asks the agent pod on that node for `wiremesh status -o json`', async (t) => {
  const { driver, calls } = await open();
  const n = calls.length;
  const status = await driver.agentStatus('kind-worker2');
  t.is(status.node, 'wiremesh-agent-kind-worker2');
  t.deepEqual(after(calls, n).at(-1), [
    'exec',
    '-n',
    'kube-system',
    'wiremesh-agent-kind-worker2',
    '-c',
    'agent',
    '--',
    'wiremesh',
    'status',
    '-o',
    'json',
  ]);
});

test('createPod runs the given command with named ports; close removes what the suite made', async (t) => {
  const { driver, calls } = await open();
  const n = calls.length;
  const pod = await driver.createPod(
    'kind-worker',
    'x',
    'x-a',
    { pod: 'a' },
    [{ name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' }],
    [PROBER_PATH, 'serve', '--ports', '80,81', '--id', 'x/a'],
  );
  t.deepEqual(pod, { namespace: 'x', name: 'x-a', node: 'kind-worker', ips: ['100.64.1.5'] });
  const spec = JSON.parse(calls.slice(n).find((c) => c.argv.includes('apply'))?.input ?? '{}') as {
    metadata: { labels: Record<string, string> };
    spec: {
      nodeName: string;
      containers: { command: string[]; ports?: { name: string; containerPort: number }[] }[];
    };
  };
  t.is(spec.spec.nodeName, 'kind-worker');
  t.is(spec.metadata.labels.pod, 'a');
  t.deepEqual(spec.spec.containers[0]?.command, [
    PROBER_PATH,
    'serve',
    '--ports',
    '80,81',
    '--id',
    'x/a',
  ]);
  t.deepEqual(spec.spec.containers[0]?.ports, [
    { name: 'serve-80-tcp', containerPort: 80, protocol: 'TCP' },
  ]);
  t.true(after(calls, n).some((a) => a.includes('wait') && a.includes('--for=condition=Ready')));
  t.deepEqual(driver.pods(), [pod]);
  const m = calls.length;
  await driver.close();
  t.deepEqual(
    after(calls, m).map((a) => a.slice(0, 5)),
    [
      ['delete', 'pod', '-n', 'x', 'x-a'],
      ['delete', 'namespace', E2E_NAMESPACE, '--ignore-not-found', '--wait=true'],
    ],
  );
  t.deepEqual(driver.pods(), []);
});

test('a pod without a command sleeps', async (t) => {
  const { driver, calls } = await open();
  const n = calls.length;
  await driver.createPod('kind-worker', 'x', 'x-a');
  const spec = JSON.parse(calls.slice(n).find((c) => c.argv.includes('apply'))?.input ?? '{}') as {
    spec: { containers: { command: string[]; ports?: unknown }[] };
  };
  t.deepEqual(spec.spec.containers[0]?.command, ['sleep', 'infinity']);
  t.is(spec.spec.containers[0]?.ports, undefined);
});
