// The wiremesh CNI plugin on lab nodes (the Go relay in /opt/cni/bin, the agent
// behind it), driven as a container runtime drives it: DEL is idempotent; bad input
// gets the CNI error codes through the real relay; with the agent down the answer
// is "try again later"; cnitool's ADD, CHECK, STATUS, GC and DEL; chaining with the
// reference portmap plugin. Lab-only: it runs the plugin binary and cnitool in the
// node, stops the agent process and makes its own network namespaces, which the
// cluster-driver interface does not offer. Pod-to-pod reachability, addresses and
// encryption run on any cluster in pods.e2e.test.ts.
import test from 'ava';
import { Lab } from '../lab/index.ts';
import { LabDriver } from './lab-driver.ts';
import { eventually } from './probes.ts';
import { defaultRunner, toolPath, systemEnv } from '../sys/index.ts';
import { wiremeshConflist } from '../cni/index.ts';

let driver: LabDriver | undefined;
let lab: Lab;

test.before(async () => {
  driver = await LabDriver.open({
    name: 'e2epods',
    nodes: 3,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
  });
  lab = driver.lab;
});

test.after.always(async () => {
  if (driver) await driver.close();
});

/** Run the installed plugin binary on a node as a container runtime would. */
async function runPlugin(node: string, env: Record<string, string>, stdin: string) {
  return lab.execInNode(node, ['/opt/cni/bin/wiremesh'], {
    env: systemEnv({ CNI_PATH: '/opt/cni/bin', ...env }),
    input: stdin,
    allowFailure: true,
  });
}

const conf = (version = '1.1.0') =>
  JSON.stringify({ cniVersion: version, name: 'wiremesh', type: 'wiremesh' });

test.serial('DEL removes the pod wiring and its address, and is idempotent', async (t) => {
  const node = lab.plan.nodes[2]?.name ?? '';
  const pod = await lab.addPod(node, 'default', 'delme');
  const host = (await lab.execInNode(node, ['ip', '-j', 'link', 'show'])).stdout;
  t.true(host.includes('"ifname":"wm'), 'a host veth exists');
  await lab.deletePod('delme');
  const links = JSON.parse((await lab.execInNode(node, ['ip', '-j', 'link', 'show'])).stdout) as {
    ifname: string;
  }[];
  t.false(
    JSON.stringify(await lab.execInNode(node, ['ip', 'route'])).includes(pod.ips[0] ?? '-'),
    'route gone',
  );
  const del = (id: string, netns: string) =>
    runPlugin(
      node,
      {
        CNI_COMMAND: 'DEL',
        CNI_CONTAINERID: id,
        CNI_IFNAME: 'eth0',
        CNI_NETNS: netns,
        CNI_ARGS: 'K8S_POD_NAMESPACE=default;K8S_POD_NAME=delme',
      },
      conf(),
    );
  for (const [id, netns] of [
    ['cnitool-gone', '/run/netns/does-not-exist'],
    ['unknown-container', ''],
  ] as const) {
    const res = await del(id, netns);
    t.is(res.code, 0, `DEL ${id}: ${res.stdout}`);
  }
  t.true(links.length > 0);
});

const codeOf = (stdout: string) => (JSON.parse(stdout) as { code: number }).code;

test.serial(
  'bad input gets the CNI error JSON with the right code through the relay',
  async (t) => {
    const node = lab.plan.nodes[0]?.name ?? '';
    const base = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'abc123',
      CNI_IFNAME: 'eth0',
      CNI_NETNS: '/run/netns/none',
    };
    const cases: [string, Record<string, string>, string, number][] = [
      ['malformed JSON', base, '{not json', 6],
      [
        'missing CNI_CONTAINERID',
        { CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/x' },
        conf(),
        4,
      ],
      ['unsupported cniVersion', base, conf('9.9.9'), 1],
      ['unknown command', { ...base, CNI_COMMAND: 'FROB' }, conf(), 4],
      [
        'CHECK of an unknown container',
        { ...base, CNI_COMMAND: 'CHECK', CNI_CONTAINERID: 'never-added' },
        conf(),
        3,
      ],
    ];
    for (const [what, env, stdin, code] of cases) {
      const res = await runPlugin(node, env, stdin);
      t.not(res.code, 0, what);
      t.is(codeOf(res.stdout), code, `${what}: ${res.stdout}`);
      t.notRegex(res.stdout + res.stderr, /\n\s+at /, `${what}: no stack trace`);
    }
    const version = await runPlugin(node, { CNI_COMMAND: 'VERSION' }, conf());
    t.deepEqual(
      (JSON.parse(version.stdout) as { supportedVersions: string[] }).supportedVersions.includes(
        '1.1.0',
      ),
      true,
    );
  },
);

test.serial(
  'with the agent down the plugin waits for it, then answers code 11 (try again later); an agent that starts meanwhile answers',
  async (t) => {
    const node = lab.plan.nodes[0]?.name ?? '';
    await lab.stopAgent(node);
    try {
      const env = {
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'x1',
        CNI_IFNAME: 'eth0',
        CNI_NETNS: '/run/netns/none',
      };
      const start = performance.now();
      const res = await runPlugin(node, { ...env, WIREMESH_CNI_CONNECT_WAIT: '2' }, conf());
      const waited = performance.now() - start;
      t.is(codeOf(res.stdout), 11, res.stdout);
      t.true(waited >= 1900, `waited ${waited.toFixed(0)} ms`);
      // A DEL sent while the agent is down, the agent started a second later (a node
      // booting): the DEL waits for it and succeeds.
      const del = runPlugin(node, { ...env, CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'x2' }, conf());
      await new Promise((r) => setTimeout(r, 1000));
      await lab.startAgent(node);
      const done = await del;
      t.is(done.code, 0, done.stdout);
    } finally {
      if (!lab.state.procs.some((p) => p.name === lab.agentProcName(node)))
        await lab.startAgent(node);
      await lab.waitAgentReady(node);
    }
  },
);

/** cnitool on a node, for a network and a pod namespace, as a container runtime would call plugins. */
function cnitoolOn(node: string, network: string, netns: string, pod: string, capArgs?: object) {
  const env = systemEnv({
    CNI_PATH: '/opt/cni/bin',
    NETCONFPATH: '/etc/cni/net.d',
    CNI_ARGS: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${pod}`,
    ...(capArgs ? { CAP_ARGS: JSON.stringify(capArgs) } : {}),
  });
  return (verb: string) =>
    lab.execInNode(node, [toolPath('cnitool'), verb, network, `/run/netns/${netns}`], {
      env,
      allowFailure: true,
      timeoutMs: 30_000,
    });
}

test.serial('cnitool drives ADD, CHECK, STATUS, GC and DEL on several nodes', async (t) => {
  // The installed conflist chains portmap and bandwidth at 1.0.0, which has no GC or
  // STATUS; wiremesh alone is what `install-cni --chain none` writes, 1.1.0 offered.
  const alone = { ...wiremeshConflist({ chain: [] }), name: 'wmtool' };
  for (const node of lab.plan.nodes) {
    await lab.execInNode(node.name, ['sh', '-c', 'cat > /etc/cni/net.d/15-wmtool.conflist'], {
      input: JSON.stringify(alone),
    });
    const netns = `wmp-${lab.plan.name}-tool-${node.index}`;
    await defaultRunner.run(['ip', 'netns', 'add', netns]);
    const cnitool = cnitoolOn(node.name, 'wmtool', netns, `tool-${node.index}`);
    try {
      const add = await cnitool('add');
      t.is(add.code, 0, `${node.name} ADD: ${add.stderr}`);
      const checked = await cnitool('check');
      t.is(checked.code, 0, `${node.name} CHECK: ${checked.stdout} ${checked.stderr}`);
      t.is((await cnitool('status')).code, 0, `${node.name} STATUS`);
      // Break the attachment: CHECK must notice.
      await defaultRunner.run(['ip', 'netns', 'exec', netns, 'ip', 'route', 'del', 'default']);
      t.not((await cnitool('check')).code, 0, `${node.name} CHECK notices a missing default route`);
      // cnitool's GC lists no valid attachment: this network's attachments on the node go.
      t.is((await cnitool('gc')).code, 0, `${node.name} GC`);
      const after = await cnitool('check');
      t.regex(
        after.stdout + after.stderr,
        /no wiremesh attachment/,
        `${node.name}: unknown after GC`,
      );
      t.is((await cnitool('del')).code, 0, `${node.name} DEL after GC`);
      t.is((await cnitool('del')).code, 0, `${node.name} DEL twice`);
    } finally {
      await cnitool('del');
      await defaultRunner.run(['ip', 'netns', 'del', netns], { allowFailure: true });
      await lab.execInNode(node.name, ['rm', '-f', '/etc/cni/net.d/15-wmtool.conflist']);
    }
  }
});

test.serial('portmap chained after wiremesh forwards a host port to a pod', async (t) => {
  const node = lab.plan.nodes[2];
  const client = lab.plan.nodes[0];
  if (!node || !client) throw new Error('need 3 nodes');
  // A second network on the node: wiremesh, then the reference portmap (nftables backend).
  const chain = {
    cniVersion: '1.1.0',
    name: 'wmchain',
    plugins: [
      { type: 'wiremesh' },
      { type: 'portmap', backend: 'nftables', capabilities: { portMappings: true } },
    ],
  };
  await lab.execInNode(node.name, ['sh', '-c', 'cat > /etc/cni/net.d/20-wmchain.conflist'], {
    input: JSON.stringify(chain),
  });
  const netns = `wmp-${lab.plan.name}-chain`;
  await defaultRunner.run(['ip', 'netns', 'add', netns]);
  const cnitool = cnitoolOn(node.name, 'wmchain', netns, 'chained', {
    portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }],
  });
  try {
    const add = await cnitool('add');
    t.is(add.code, 0, add.stderr);
    const server = `chained-http-${node.name}`;
    await lab.spawnInNode(node.name, server, [
      'nsenter',
      `--net=/run/netns/${netns}`,
      'socat',
      'TCP-LISTEN:80,fork,reuseaddr',
      'SYSTEM:echo hello-from-the-pod',
    ]);
    await eventually('the pod server', async () =>
      (
        await defaultRunner.run(['ip', 'netns', 'exec', netns, 'ss', '-Hltn', 'sport = :80'])
      ).stdout.includes(':80'),
    );
    const reply = await lab.execInNode(
      client.name,
      ['socat', '-T', '5', '-', `TCP:${node.underlayIP}:8080`],
      {
        input: '',
        timeoutMs: 10_000,
      },
    );
    t.is(
      reply.stdout.trim(),
      'hello-from-the-pod',
      'port 8080 on the node reaches port 80 in the pod',
    );
    await lab.stopProcess(server);
    t.is((await cnitool('del')).code, 0, 'DEL through the chain');
  } finally {
    await cnitool('del');
    await defaultRunner.run(['ip', 'netns', 'del', netns], { allowFailure: true });
    await lab.execInNode(node.name, ['rm', '-f', '/etc/cni/net.d/20-wmchain.conflist']);
  }
});
