// The informers list Pods, Nodes and IPAM blocks through fields (ListFields): what
// their transforms keep must come out the same from the cut text as from the whole.
import test from 'ava';
import { ListSplitter, type ListFields } from '../kube/liststream.ts';
import { podRecordForPolicy, POD_FIELDS_FOR_POLICY } from '../policy/index.ts';
import { simulatedNode, podStatus } from '../bench/limits-objects.ts';
import { NODE_FIELDS_FOR_MESH, trimNodeForMesh } from './meshnode.ts';
import { BLOCK_FIELDS_FOR_MESH, blockClaimFromK8s, trimBlockClaim } from './blocks.ts';
import { ipamBlockToK8s } from '../ipam/k8s.ts';

/** Every item of a List of `objects`, read through `fields`. */
function listed(objects: readonly object[], fields: ListFields): unknown[] {
  const items: unknown[] = [];
  const s = new ListSplitter((i) => items.push(i), fields);
  s.write(Buffer.from(JSON.stringify({ kind: 'List', metadata: {}, items: objects })));
  s.end();
  return items;
}

const managedFields = [{ manager: 'kubelet', operation: 'Update', fieldsV1: { 'f:status': {} } }];

const pods: object[] = [
  {
    metadata: {
      name: 'web-0',
      namespace: 'shop',
      resourceVersion: '17',
      labels: { app: 'web', tier: 'front' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      ownerReferences: [{ kind: 'StatefulSet', name: 'web', uid: 'u' }],
      managedFields,
    },
    spec: {
      nodeName: 'n1',
      initContainers: [
        { name: 'init', image: 'i', ports: [{ name: 'never', containerPort: 1 }] },
        {
          name: 'proxy',
          restartPolicy: 'Always',
          ports: [{ name: 'proxy', containerPort: 15001, protocol: 'TCP' }],
          env: [{ name: 'X', value: 'y' }],
        },
      ],
      containers: [
        {
          name: 'app',
          image: 'app:v1',
          command: ['/app', '--serve'],
          env: [{ name: 'A', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }],
          ports: [
            { name: 'http', containerPort: 8080 },
            { name: 'dns', containerPort: 53, protocol: 'UDP' },
            { name: 'bad', containerPort: 70000 },
          ],
          volumeMounts: [{ name: 'data', mountPath: '/data' }],
          resources: { requests: { cpu: '100m' } },
        },
      ],
      volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'd' } }],
      tolerations: [{ key: 'k', operator: 'Exists' }],
    },
    ...podStatus('10.0.1.7', '192.168.0.2'),
  },
  {
    metadata: { name: 'dual', namespace: 'shop', labels: { app: 'dual' } },
    spec: { nodeName: 'n2', containers: [{ name: 'c' }] },
    status: { phase: 'Running', podIP: '10.0.2.1', podIPs: [{ ip: '10.0.2.1' }, { ip: 'nope' }] },
  },
  {
    metadata: { name: 'host', namespace: 'kube-system', labels: { k: 'v' } },
    spec: { hostNetwork: true, nodeName: 'n1', containers: [] },
    status: { phase: 'Running', podIP: '192.168.0.2' },
  },
  {
    metadata: { name: 'done', namespace: 'jobs', labels: { bad: 7 } },
    spec: { containers: [{ name: 'c', ports: 'not a list' }] },
    status: { phase: 'Pending' },
  },
];

test('a pod read through POD_FIELDS_FOR_POLICY is the same pod to policy, problems included', (t) => {
  const whole = pods.map((p) => podRecordForPolicy(p));
  t.deepEqual(
    listed(pods, POD_FIELDS_FOR_POLICY).map((p) => podRecordForPolicy(p as object)),
    whole,
  );
  // Not vacuous: ports, sidecar ports, both addresses and the problems are in it.
  t.deepEqual(
    whole[0]?.pod?.ports.map((p) => p.name),
    ['dns', 'http', 'proxy'],
  );
  t.true(whole.some((r) => r.problems.length > 0));
});

test('a Node read through NODE_FIELDS_FOR_MESH trims to the same Node, and drops its images', (t) => {
  const nodes = [0, 1, 300].map((i) => ({
    ...simulatedNode(i),
    metadata: { ...simulatedNode(i).metadata, managedFields },
  }));
  const read = listed(JSON.parse(JSON.stringify(nodes)) as object[], NODE_FIELDS_FOR_MESH);
  t.deepEqual(
    read.map((n) => trimNodeForMesh(n as never)),
    (JSON.parse(JSON.stringify(nodes)) as never[]).map((n) => trimNodeForMesh(n)),
  );
  t.deepEqual((read[0] as { status: { images: unknown } }).status.images, []);
});

test('an IPAM block read through BLOCK_FIELDS_FOR_MESH is the same claim, without its allocations', (t) => {
  const allocations = new Map(
    Array.from({ length: 3 }, (_, i) => [
      `h${i}`,
      {
        handle: `h${i}`,
        address: `10.0.0.${i + 1}`,
        namespace: 'ns',
        pod: `p${i}`,
        containerID: 'c',
        ifName: 'eth0',
        allocatedAt: 0,
      },
    ]),
  );
  const blocks = [
    {
      ...ipamBlockToK8s({ cidr: '10.0.0.0/26', pool: 'default', node: 'n1', allocations }, 'uid-1'),
      metadata: {
        name: '10-0-0-0-26',
        creationTimestamp: '2026-01-01T00:00:00Z',
        resourceVersion: '5',
        managedFields,
      },
    },
  ];
  const read = listed(blocks, BLOCK_FIELDS_FOR_MESH);
  const claim = (b: object) => blockClaimFromK8s(trimBlockClaim(b));
  t.deepEqual(
    read.map((b) => claim(b as object)),
    blocks.map(claim),
  );
  t.truthy(claim(blocks[0] as object));
  t.deepEqual((read[0] as { spec: { allocations: unknown } }).spec.allocations, {});
});
