import test from 'ava';
import { FakeRemoteApi } from './fake.ts';
import { RemoteClusterStatusWriter, mergeConditions, statusWriterNode } from './status.ts';
import { REMOTECLUSTER_PATH, type DesiredCondition, type RemoteClusterReport } from './types.ts';

const connected = (status: 'True' | 'False'): DesiredCondition => ({
  type: 'Connected',
  status,
  reason: status === 'True' ? 'Watching' : 'Unreachable',
  message: '',
});

test('a condition keeps its transition time while its status stays', (t) => {
  const t0 = new Date('2025-01-01T00:00:00.123Z');
  const t1 = new Date('2025-01-01T00:05:00Z');
  const first = mergeConditions([], [connected('True')], 1, t0);
  t.deepEqual(first, [
    { ...connected('True'), lastTransitionTime: '2025-01-01T00:00:00Z', observedGeneration: 1 },
  ]);
  const same = mergeConditions(
    first,
    [{ ...connected('True'), message: 'watching 3 nodes' }],
    2,
    t1,
  );
  t.is(same[0]?.lastTransitionTime, '2025-01-01T00:00:00Z');
  t.is(same[0]?.observedGeneration, 2);
  t.is(
    mergeConditions(first, [connected('False')], 1, t1)[0]?.lastTransitionTime,
    '2025-01-01T00:05:00Z',
  );
});

test('the status writer patches only what changed, on the status subresource', async (t) => {
  const api = new FakeRemoteApi();
  api.put(REMOTECLUSTER_PATH, { metadata: { name: 'b', generation: 2 }, spec: {} });
  const writer = new RemoteClusterStatusWriter(api);
  const report: RemoteClusterReport = {
    name: 'b',
    nodes: 2,
    blocks: 3,
    conditions: [
      connected('True'),
      { type: 'CIDRConflict', status: 'False', reason: 'NoOverlap', message: '' },
    ],
  };
  t.true(await writer.write(report, 2, new Date('2025-01-01T00:00:00Z')));
  const stored = api.get(REMOTECLUSTER_PATH, 'b')?.status as Record<string, unknown>;
  t.like(stored, { observedGeneration: 2, nodes: 2, blocks: 3 });
  t.deepEqual(
    (stored.conditions as { type: string; status: string }[]).map((c) => `${c.type}=${c.status}`),
    ['Connected=True', 'CIDRConflict=False'],
  );
  t.false(
    await writer.write(report, 2, new Date('2025-01-01T00:01:00Z')),
    'a resync writes nothing',
  );
  t.true(await writer.write({ ...report, nodes: 3 }, 2));
  t.false(
    await writer.write({ ...report, name: 'gone' }, 1),
    'a deleted RemoteCluster is no error',
  );
  t.is(api.calls.filter((c) => c.startsWith('PATCH')).length, 2);
  t.true(api.calls.filter((c) => c.startsWith('PATCH')).every((c) => c.endsWith('/b/status')));
});

test('one writer per cluster, the same on every node', (t) => {
  t.is(statusWriterNode(['b-node2', 'a-node3', 'a-node1']), 'a-node1');
  t.is(statusWriterNode([]), undefined);
});
