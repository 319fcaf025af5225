// IPAM end to end against a real kube-apiserver (a 2-node lab, no agents): the
// CRDs of deploy/crds.yaml are accepted and their schema and CEL rules refuse
// invalid objects; two nodes' NodeIpam race to claim the blocks of one small pool
// through the real API (one owner per block, no address twice, a clear error when
// the pool is full); allocations reach the IPAMBlock objects on sync; a crashed
// node restarts from its journal and serves with the apiserver unreachable; and
// release plus garbage collection give the addresses and the blocks back.
// Lab-only: it runs NodeIpam in-process against the lab's apiserver, without agents.
import test from 'ava';
import { kubeClientForServer } from '../kube/index.ts';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
  loadAllYaml,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Lab } from '../lab/index.ts';
import { DEPLOY_DIR } from '../lab/manifests.ts';
import { LabDriver } from './lab-driver.ts';
import { eventually } from './probes.ts';
import {
  KubeBlockApi,
  NodeIpam,
  PoolExhaustedError,
  IpamApiError,
  blockName,
  type AllocateRequest,
  type AllocateResult,
  type IpamBlock,
} from '../ipam/index.ts';

let driver: LabDriver | undefined;
let lab: Lab;
let kc: KubeConfig;
let objects: CustomObjectsApi;
let stateRoot = '';
const GROUP = { group: 'wiremesh.io', version: 'v1alpha1' };
const POOL = 'race';
const POOL_CIDR = '100.127.240.0/28'; // 4 blocks of /30, outside every lab range

test.before(async () => {
  driver = await LabDriver.fresh({ name: 'e2eipam', nodes: 2, podsPerNode: 0, agents: false });
  lab = driver.lab;
  kc = new KubeConfig();
  kc.loadFromFile(lab.state.kubeconfig);
  objects = kc.makeApiClient(CustomObjectsApi);
  stateRoot = await mkdtemp(join(tmpdir(), 'wiremesh-e2eipam-'));
  await applyCrds(join(DEPLOY_DIR, 'crds.yaml'));
});

test.after.always(async () => {
  if (driver) await driver.close().catch(() => {});
  if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
});

/**
 * kubectl-apply-like creation of the CRDs. Through client-node's typed models, as
 * loadAllYaml deserialises them: a plain YAML object would be serialised by those
 * models too, and fields whose JSON names differ from the model's (default, enum,
 * x-kubernetes-validations) would be silently dropped.
 */
async function applyCrds(path: string): Promise<void> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  for (const obj of loadAllYaml(await readFile(path, 'utf8')) as KubernetesObject[]) {
    await client.create(obj);
    const name = obj.metadata?.name ?? '';
    await eventually(`CRD ${name} to be Established`, async () => {
      const crd = await ext.readCustomResourceDefinition({ name });
      return !!crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    });
  }
}

function nodeNames(): [string, string] {
  const [a, b] = lab.plan.nodes;
  if (!a || !b) throw new Error('the lab has fewer than 2 nodes');
  return [a.name, b.name];
}

async function createPool(
  name: string,
  spec: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  return (await objects.createClusterCustomObject({
    ...GROUP,
    plural: 'ippools',
    body: { apiVersion: 'wiremesh.io/v1alpha1', kind: 'IPPool', metadata: { name }, spec },
  })) as Record<string, unknown>;
}

async function rejection(
  p: Promise<unknown>,
  what = 'it',
): Promise<{ code: number | undefined; body: string }> {
  try {
    await p;
  } catch (e) {
    // The apiserver's Status message, as kubectl prints it.
    const err = e as { code?: number; body?: unknown };
    const raw = typeof err.body === 'string' ? err.body : JSON.stringify(err.body);
    let body = raw;
    try {
      body = (JSON.parse(raw) as { message?: string }).message ?? raw;
    } catch {
      /* not a Status */
    }
    return { code: err.code, body };
  }
  throw new Error(`the apiserver accepted ${what}`);
}

async function listBlocks(): Promise<IpamBlock[]> {
  return (await KubeBlockApi.fromFile(lab.state.kubeconfig).listBlocks()).blocks;
}

const req = (node: string, i: number): AllocateRequest => ({
  handle: `wiremesh.${node}-${i}.eth0`,
  namespace: 'default',
  pod: `${node}-${i}`,
  // A runtime's container ID, never the pod's name: an allocation whose pod name is
  // its container ID is one made without Kubernetes (podman), which GC never collects.
  containerID: `ctr-${node}-${i}`,
  ifName: 'eth0',
});

function nodeIpam(node: string, api = KubeBlockApi.fromFile(lab.state.kubeconfig)): NodeIpam {
  return new NodeIpam({ node, stateDir: join(stateRoot, node), api });
}

test.serial('the CRDs are accepted; an IPPool gets its defaults from the schema', async (t) => {
  const pool = await createPool('defaults', { cidr: '100.127.0.0/24' });
  t.deepEqual(pool.spec, {
    cidr: '100.127.0.0/24',
    encryption: 'WireGuard',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
    natOutgoing: false,
    disabled: false,
  });
  const { pools } = await KubeBlockApi.fromFile(lab.state.kubeconfig).listPools();
  t.like(
    pools.find((p) => p.name === 'defaults'),
    { cidr: '100.127.0.0/24', family: 4, blockSize: 26 },
  );
  await objects.deleteClusterCustomObject({ ...GROUP, plural: 'ippools', name: 'defaults' });
});

const invalidPools: [string, Record<string, unknown>, RegExp][] = [
  ['not a CIDR', { cidr: 'nope' }, /must be a network address in canonical form/],
  ['host bits set', { cidr: '100.127.0.1/24' }, /must be a network address in canonical form/],
  ['IPv6 not canonical', { cidr: 'fd00:64:0::/48' }, /canonical form/],
  [
    'blockSize 40',
    { cidr: '100.127.0.0/24', blockSize: 40 },
    /blockSize must be 20 to 32 for an IPv4 pool/,
  ],
  ['IPv6 blockSize 100', { cidr: 'fd00:64::/48', blockSize: 100 }, /116 to 128 for an IPv6 pool/],
  [
    'block larger than the pool',
    { cidr: '100.127.0.0/28', blockSize: 26 },
    /not be shorter than the pool's own prefix/,
  ],
  [
    'pool smaller than the default block',
    { cidr: '100.127.0.0/28' },
    /smaller than the default block size/,
  ],
  [
    'unknown encryption',
    { cidr: '100.127.0.0/24', encryption: 'IPsec' },
    /Unsupported value: "IPsec"/,
  ],
  [
    'Required without encryption',
    { cidr: '100.127.0.0/24', encryption: 'None', encryptionMode: 'Required' },
    /encryptionMode Required needs encryption WireGuard/,
  ],
  [
    'unknown encapsulation',
    { cidr: '100.127.0.0/24', encapsulation: 'GRE' },
    /Unsupported value: "GRE"/,
  ],
  [
    'In without values',
    { cidr: '100.127.0.0/24', nodeSelector: { matchExpressions: [{ key: 'a', operator: 'In' }] } },
    /In and NotIn need values/,
  ],
  ['no cidr', { blockSize: 26 }, /spec.cidr: Required value/],
];

test.serial('invalid IPPools are refused by the apiserver with a validation error', async (t) => {
  for (const [what, spec, message] of invalidPools) {
    const r = await rejection(createPool('invalid', spec), what);
    t.is(r.code, 422, what);
    t.regex(r.body, message, what);
  }
  // cidr and blockSize are immutable.
  await createPool('fixed', { cidr: '100.127.1.0/24', blockSize: 28 });
  const read = async () =>
    (await objects.getClusterCustomObject({ ...GROUP, plural: 'ippools', name: 'fixed' })) as {
      metadata: Record<string, unknown>;
      spec: Record<string, unknown>;
    };
  for (const [change, message] of [
    [{ cidr: '100.127.2.0/24' }, /cidr is immutable/],
    [{ blockSize: 27 }, /blockSize is immutable/],
  ] as const) {
    const cur = await read();
    const r = await rejection(
      objects.replaceClusterCustomObject({
        ...GROUP,
        plural: 'ippools',
        name: 'fixed',
        body: {
          apiVersion: 'wiremesh.io/v1alpha1',
          kind: 'IPPool',
          metadata: cur.metadata,
          spec: { ...cur.spec, ...change },
        },
      }),
    );
    t.is(r.code, 422);
    t.regex(r.body, message);
  }
  await objects.deleteClusterCustomObject({ ...GROUP, plural: 'ippools', name: 'fixed' });
});

test.serial(
  'IPAMBlocks: the name follows the CIDR, addresses lie in the block, a block is created once',
  async (t) => {
    const body = (name: string, spec: Record<string, unknown>) => ({
      ...GROUP,
      plural: 'ipamblocks',
      body: { apiVersion: 'wiremesh.io/v1alpha1', kind: 'IPAMBlock', metadata: { name }, spec },
    });
    const spec = { cidr: 'fd00:64::/122', pool: 'p', node: 'n' };
    const wrongName = await rejection(objects.createClusterCustomObject(body('my-block', spec)));
    t.is(wrongName.code, 422);
    t.regex(wrongName.body, /the name must be derived from spec.cidr/);
    const outside = await rejection(
      objects.createClusterCustomObject(
        body(blockName(spec.cidr), {
          ...spec,
          allocations: { 'net.c.eth0': { address: 'fd00:65::1' } },
        }),
      ),
    );
    t.is(outside.code, 422);
    t.regex(outside.body, /every allocated address must lie inside the block's cidr/);
    await objects.createClusterCustomObject(body(blockName(spec.cidr), spec));
    const again = await rejection(
      objects.createClusterCustomObject(body(blockName(spec.cidr), { ...spec, node: 'other' })),
    );
    t.is(again.code, 409, 'a second claim of the same block conflicts');
    const api = KubeBlockApi.fromFile(lab.state.kubeconfig);
    const err = await t.throwsAsync(
      api.createBlock({ ...spec, node: 'other', allocations: new Map() }),
      {
        instanceOf: IpamApiError,
      },
    );
    t.is(err?.reason, 'AlreadyExists');
    // A write computed from a stale resourceVersion is refused (the CAS that sync relies on).
    const cur = await api.getBlock(blockName(spec.cidr));
    t.truthy(cur);
    await api.updateAllocations(blockName(spec.cidr), new Map(), cur?.resourceVersion ?? '');
    const stale = await t.throwsAsync(
      api.updateAllocations(blockName(spec.cidr), new Map(), cur?.resourceVersion ?? ''),
      { instanceOf: IpamApiError },
    );
    t.is(stale?.reason, 'Conflict');
    await api.deleteBlock(blockName(spec.cidr), { uid: cur?.uid ?? '' });
    t.is(await api.getBlock(blockName(spec.cidr)), null);
  },
);

let first: NodeIpam[] = [];
let allocated: (AllocateResult & { node: string; handle: string })[] = [];

test.serial(
  'two nodes race for the blocks of a small pool: one owner per block, no address twice, a clear error when full',
  async (t) => {
    await createPool(POOL, { cidr: POOL_CIDR, blockSize: 30 });
    const nodes = nodeNames().map((n) => nodeIpam(n));
    first = nodes;
    await Promise.all(nodes.map((n) => n.start()));
    const results = await Promise.all(
      nodes.flatMap((ipam) =>
        Array.from({ length: 10 }, (_, i) =>
          ipam.allocate(req(ipam.node, i)).then(
            (r) => ({ node: ipam.node, handle: req(ipam.node, i).handle, r }),
            (e: unknown) => ({ node: ipam.node, handle: req(ipam.node, i).handle, r: e as Error }),
          ),
        ),
      ),
    );
    allocated = results.flatMap(({ node, handle, r }) =>
      r instanceof Error ? [] : [{ node, handle, ...r }],
    );
    const failed = results.flatMap(({ r }) => (r instanceof Error ? [r] : []));
    const blocks = (await listBlocks()).filter((b) => b.pool === POOL);
    t.deepEqual(
      blocks.map((b) => b.cidr).sort(),
      ['100.127.240.0/30', '100.127.240.12/30', '100.127.240.4/30', '100.127.240.8/30'],
      'every block of the pool is claimed',
    );
    // No borrowing: a node fills the blocks it holds and claims another only when they
    // are full, so it gives out min(10, 4 x its blocks) addresses; the rest fail.
    const expected = nodes.reduce(
      (n, ipam) => n + Math.min(10, 4 * blocks.filter((b) => b.node === ipam.node).length),
      0,
    );
    t.is(allocated.length, expected);
    t.is(failed.length, 20 - expected);
    t.true(allocated.length >= 14, `${allocated.length} of 16 addresses given out`);
    t.is(new Set(allocated.map((a) => a.address)).size, allocated.length, 'no address twice');
    for (const e of failed) {
      t.true(e instanceof PoolExhaustedError);
      t.regex(
        e.message,
        /^IP pool 'race' \(100\.127\.240\.0\/28, \/30 blocks\) is exhausted: node /,
      );
    }
    for (const a of allocated) {
      t.is(
        blocks.find((b) => b.cidr === a.block)?.node,
        a.node,
        `${a.address} comes from a block of ${a.node}`,
      );
    }
    for (const ipam of nodes) {
      t.deepEqual(
        ipam
          .blocks()
          .map((b) => b.cidr)
          .sort(),
        blocks
          .filter((b) => b.node === ipam.node)
          .map((b) => b.cidr)
          .sort(),
        `${ipam.node} holds exactly the blocks the API says it owns`,
      );
    }
  },
);

test.serial('after sync the IPAMBlock objects carry every allocation', async (t) => {
  for (const ipam of first) t.like(await ipam.sync(), { lost: [] });
  const blocks = (await listBlocks()).filter((b) => b.pool === POOL);
  const inApi = blocks.flatMap((b) =>
    [...b.allocations.values()].map((a) => ({
      node: b.node,
      handle: a.handle,
      address: a.address,
      pod: a.pod,
    })),
  );
  t.deepEqual(
    inApi.sort((x, y) => (x.handle < y.handle ? -1 : 1)),
    allocated
      .map((a) => ({
        node: a.node,
        handle: a.handle,
        address: a.address,
        pod: a.handle.split('.')[1] ?? '',
      }))
      .sort((x, y) => (x.handle < y.handle ? -1 : 1)),
  );
  for (const ipam of first) t.like(await ipam.sync(), { updated: 0, created: 0 });
});

test.serial(
  'a crashed node restarts from its journal, and serves with the apiserver unreachable',
  async (t) => {
    const [n1] = nodeNames();
    const crashed = first.find((n) => n.node === n1);
    const mine = allocated.filter((a) => a.node === n1);
    const gone = mine[0];
    if (!crashed || !gone) throw new Error('node 1 allocated nothing');
    t.true(await crashed.release(gone.handle));
    // The process dies here: the release is journaled, not synced. (The old instance is
    // only closed so the test leaks no file handle; close does not sync.)
    await crashed.close();

    const down = kubeClientForServer('https://127.0.0.1:1');
    const offline = nodeIpam(n1, new KubeBlockApi(down));
    await offline.start();
    for (const a of mine.slice(1))
      t.is(offline.find(a.handle)?.address, a.address, `${a.handle} replayed`);
    t.is(offline.find(gone.handle), null, 'the release survived the crash');
    const fresh = await offline.allocate(req(n1, 100));
    t.true(
      offline.blocks().some((b) => b.cidr === fresh.block),
      'from a block node 1 holds, without the apiserver',
    );
    t.false(
      allocated.some((a) => a !== gone && a.address === fresh.address),
      'an address no one else holds',
    );
    if (offline.usage().blocks.every((b) => b.allocated === b.capacity)) {
      t.is(fresh.address, gone.address, 'the freed address, the only one free');
    }
    await t.throwsAsync(offline.sync(), { message: /IPAM sync of node .* failed/ });
    await offline.close();

    const back = nodeIpam(n1);
    await back.start(); // replays, then syncs
    first = first.map((n) => (n.node === n1 ? back : n));
    const blocks = (await listBlocks()).filter((b) => b.node === n1);
    const handles = blocks.flatMap((b) => [...b.allocations.keys()]);
    t.true(handles.includes(req(n1, 100).handle));
    t.false(handles.includes(gone.handle));
    allocated = [
      ...allocated.filter((a) => a !== gone),
      { node: n1, handle: req(n1, 100).handle, ...fresh },
    ];
  },
);

test.serial('release and garbage collection give the addresses and the blocks back', async (t) => {
  const [n1, n2] = nodeNames();
  const ipam1 = first.find((n) => n.node === n1);
  const ipam2 = first.find((n) => n.node === n2);
  if (!ipam1 || !ipam2) throw new Error('no NodeIpam');
  // DEL for one pod of n2; GC for the rest (no pod of theirs exists).
  const del = allocated.find((a) => a.node === n2);
  if (del) t.true(await ipam2.release(del.handle));
  const gc1 = await ipam1.collectGarbage({ uids: new Set(), names: new Set() }, 0);
  const gc2 = await ipam2.collectGarbage({ uids: new Set(), names: new Set() }, 0);
  t.true(gc1.releasedHandles.length > 0 && gc2.releasedHandles.length > 0);
  // Each node keeps one empty block of the pool it still uses.
  t.is(ipam1.blocks().length, 1);
  t.is(ipam2.blocks().length, 1);
  await ipam1.sync();
  await ipam2.sync();
  let blocks = (await listBlocks()).filter((b) => b.pool === POOL);
  t.is(blocks.length, 2);
  t.deepEqual(
    blocks.map((b) => b.allocations.size),
    [0, 0],
  );

  // Disabled, the pool is no longer used by anyone: the last blocks go too.
  const pool = (await objects.getClusterCustomObject({
    ...GROUP,
    plural: 'ippools',
    name: POOL,
  })) as {
    spec: Record<string, unknown>;
  };
  await objects.replaceClusterCustomObject({
    ...GROUP,
    plural: 'ippools',
    name: POOL,
    body: { ...pool, spec: { ...pool.spec, disabled: true } },
  });
  for (const ipam of [ipam1, ipam2]) {
    await ipam.refresh();
    t.is(
      (await ipam.collectGarbage({ uids: new Set(), names: new Set() }, 0)).releasedBlocks.length,
      1,
    );
    t.like(await ipam.sync(), { deleted: 1 });
  }
  blocks = (await listBlocks()).filter((b) => b.pool === POOL);
  t.deepEqual(blocks, []);
  await ipam1.close();
  await ipam2.close();
});
