// Kernel tier: lab node namespaces against the real kernel, in throwaway names.
import test from 'ava';
import { mkdir, rm, rmdir, writeFile, readdir } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { defaultRunner as runner, requireRoot } from '../sys/index.ts';
import {
  createBridge,
  createNodeNamespaces,
  nodeExecPrefix,
  ensurePrivateRunRoot,
  releaseRunRoot,
  releaseMountNamespace,
  deleteNetns,
  listNetns,
  listLinks,
  listMountPoints,
  netnsPids,
} from './nodes.ts';
import { LAB_ROOT_RUN } from './plan.ts';
import { killPids } from './procs.ts';

const tag = `k${process.pid % 100000}`;
const bridge = `wmk-${tag}-br`;
const dir = `${LAB_ROOT_RUN}/_${tag}`;
const data = `/tmp/wiremesh-netns-test-${tag}`;
const nodes = ['a', 'b'].map((n, i) => ({
  netns: `wmk-${tag}-${n}`,
  hostVeth: `wmk-${tag}-${n}`,
  address: `198.18.250.${11 + i}/24`,
  mountFile: `${dir}/${n}`,
  privateDirs: { '/var/lib/wiremesh': `${data}/${n}/state` },
}));
let runRootWasMounted = false;
let createdStateDir = false;
let createdRunRoot = false;

async function cleanup(): Promise<void> {
  for (const n of nodes) {
    await killPids(await netnsPids(runner, n.netns));
    await releaseMountNamespace(runner, n.mountFile);
    await deleteNetns(runner, n.netns);
  }
  await deleteNetns(runner, `wmk-${tag}-late`);
  if ((await listLinks(runner)).includes(bridge)) await runner.run(['ip', 'link', 'del', bridge]);
  await rm(dir, { recursive: true, force: true });
  await rm(data, { recursive: true, force: true });
  const others = await readdir(LAB_ROOT_RUN).catch(() => []);
  if (!runRootWasMounted && others.length === 0) await releaseRunRoot(runner);
  if (createdRunRoot) await rmdir(LAB_ROOT_RUN).catch(() => {});
  if (createdStateDir) await rmdir('/var/lib/wiremesh').catch(() => {});
}

test.before(async () => {
  requireRoot('the kernel tests');
  runRootWasMounted = (await listMountPoints()).includes(LAB_ROOT_RUN);
  createdRunRoot = !existsSync(LAB_ROOT_RUN);
  createdStateDir = !existsSync('/var/lib/wiremesh');
  await ensurePrivateRunRoot(runner);
  await mkdir(dir, { recursive: true });
  await mkdir('/var/lib/wiremesh', { recursive: true });
  await createBridge(runner, bridge, '198.18.250.1/24');
  for (const n of nodes) await createNodeNamespaces(runner, { ...n, bridge });
});

test.after.always(cleanup);

const inNode = (i: number, argv: string[]) => {
  const n = nodes[i];
  if (!n) throw new Error(`no node ${i}`);
  return runner.run([...nodeExecPrefix(n.netns, n.mountFile), ...argv]);
};

test.serial('two nodes reach each other and the gateway over the underlay bridge', async (t) => {
  t.regex(
    (await inNode(0, ['ping', '-c', '1', '-W', '2', '198.18.250.12'])).stdout,
    / 0% packet loss/,
  );
  t.regex(
    (await inNode(1, ['ping', '-c', '1', '-W', '2', '198.18.250.1'])).stdout,
    / 0% packet loss/,
  );
});

test.serial('a node has no default route, so nothing it sends can leave the machine', async (t) => {
  const routes = JSON.parse(
    (await inNode(0, ['ip', '-j', 'route', 'show', 'default'])).stdout,
  ) as unknown[];
  t.deepEqual(routes, []);
});

test.serial("each node's state directory is its own", async (t) => {
  await inNode(0, ['sh', '-c', 'echo a > /var/lib/wiremesh/marker']);
  t.is((await inNode(0, ['cat', '/var/lib/wiremesh/marker'])).stdout, 'a\n');
  t.is((await inNode(1, ['ls', '-A', '/var/lib/wiremesh'])).stdout, '');
  t.false(existsSync('/var/lib/wiremesh/marker'), 'the host does not see it');
});

test.serial("a node's /sys shows its own links", async (t) => {
  t.deepEqual(
    (await inNode(0, ['ls', '/sys/class/net'])).stdout.split('\n').filter(Boolean).sort(),
    ['eth0', 'lo'],
  );
});

test.serial(
  'a network namespace created after the node appears inside it (host-to-node propagation)',
  async (t) => {
    const late = `wmk-${tag}-late`;
    await runner.run(['ip', 'netns', 'add', late]);
    t.true((await inNode(0, ['ls', '/run/netns'])).stdout.split('\n').includes(late));
    await writeFile(`${data}/probe`, '');
  },
);

test.serial('cleanup removes every namespace, link and mount it made', async (t) => {
  await cleanup();
  t.deepEqual(
    (await listNetns(runner)).filter((n) => n.startsWith(`wmk-${tag}`)),
    [],
  );
  t.deepEqual(
    (await listLinks(runner)).filter((l) => l.startsWith(`wmk-${tag}`)),
    [],
  );
  t.deepEqual(
    (await listMountPoints()).filter((m) => m.startsWith(dir)),
    [],
  );
});
