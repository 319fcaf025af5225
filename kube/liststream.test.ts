import test from 'ava';
import { ListSplitter, type ListFields } from './liststream.ts';

const list = {
  kind: 'PodList',
  apiVersion: 'v1',
  metadata: { resourceVersion: '42', continue: '' },
  items: [
    {
      metadata: {
        name: 'a',
        annotations: { quoted: 'say "}" and "]"', slash: 'ends in \\', both: '\\"}' },
      },
    },
    { metadata: { name: 'é-ü-雪-🙂' }, spec: { containers: [{ name: 'c', ports: [] }] } },
    { metadata: { name: 'c', annotations: { items: '[{"x":1}]' } }, items: [{ nested: true }] },
    {
      metadata: {
        name: 'd',
        annotations: { managedFields: 'a value, kept' },
        managedFields: [{ manager: 'kubectl', fieldsV1: { 'f:metadata': { 'f:labels': {} } } }],
        labels: { after: 'kept' },
      },
      spec: { managedFields: ['not metadata: kept'] },
    },
  ],
};

/** What comes out: the items, with metadata.managedFields (never parsed) empty. */
const expected = list.items.map((item) =>
  'managedFields' in item.metadata
    ? { ...item, metadata: { ...item.metadata, managedFields: [] } }
    : item,
);

function split(text: string, at: number[]) {
  const items: unknown[] = [];
  const s = new ListSplitter((i) => items.push(i));
  const bytes = Buffer.from(text);
  let from = 0;
  for (const cut of [...at, bytes.length]) {
    s.write(bytes.subarray(from, cut));
    from = cut;
  }
  return { items, rest: s.end() };
}

test('the items come one by one (their managedFields empty), and the rest of the answer at the end, wherever the bytes are cut', (t) => {
  const text = JSON.stringify(list, null, 1);
  const length = Buffer.byteLength(text);
  // Every single cut, including inside multi-byte characters and escapes.
  for (let cut = 0; cut <= length; cut++) {
    const { items, rest } = split(text, [cut]);
    t.deepEqual(items, expected, `cut at byte ${cut}`);
    t.deepEqual(rest, { kind: 'PodList', apiVersion: 'v1', metadata: list.metadata, items: [] });
  }
  // Byte by byte.
  const { items } = split(
    text,
    Array.from({ length }, (_, i) => i),
  );
  t.deepEqual(items, expected);
});

test('only the top-level items array is split, wherever the metadata stands', (t) => {
  const text = JSON.stringify({
    kind: 'items',
    other: [{ metadata: { name: 'not-an-item' } }],
    items: [],
    metadata: { resourceVersion: '7' },
  });
  const { items, rest } = split(text, [5, 17]);
  t.deepEqual(items, []);
  t.deepEqual(rest, {
    kind: 'items',
    other: [{ metadata: { name: 'not-an-item' } }],
    items: [],
    metadata: { resourceVersion: '7' },
  });
});

test('an answer cut short or malformed is an error, not a short list', (t) => {
  const text = JSON.stringify(list);
  const cutAt = text.indexOf('"c"');
  const s = new ListSplitter(() => {});
  s.write(Buffer.from(text.slice(0, cutAt)));
  t.throws(() => s.end(), { message: /cut short after \d+ bytes/ });
  const bad = new ListSplitter(() => {});
  t.throws(() => bad.write(Buffer.from('{"items":[{"a":tru}]}')), { instanceOf: SyntaxError });
});

/** What the splitter should hand over for `fields`, written from ListFields' contract. */
function keep(value: unknown, fields: ListFields | true): unknown {
  if (fields === true || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((e) => keep(e, fields));
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => {
      if (v === null || typeof v !== 'object') return [k, v];
      if (!Object.hasOwn(fields, k)) return [k, Array.isArray(v) ? [] : {}];
      return [k, keep(v, fields[k] as ListFields | true)];
    }),
  );
}

const pod = {
  metadata: {
    name: 'web-0',
    namespace: 'shop',
    labels: { app: 'web', 'a/b': 'x"}' },
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"spec":{}}' },
    ownerReferences: [{ kind: 'StatefulSet', name: 'web' }],
    managedFields: [{ manager: 'kubelet', fieldsV1: { 'f:status': {} } }],
  },
  spec: {
    nodeName: 'n1',
    containers: [
      {
        name: 'app',
        env: [{ name: 'A', value: '[{' }],
        ports: [{ name: 'http', containerPort: 80 }],
        resources: { limits: { cpu: '1' } },
      },
    ],
    volumes: [{ name: 'v', configMap: { name: 'c' } }],
  },
  status: {
    phase: 'Running',
    podIP: '10.0.0.5',
    podIPs: [{ ip: '10.0.0.5' }, { ip: 'fd00::5' }],
    conditions: [{ type: 'Ready', status: 'True' }],
  },
};
const podFields: ListFields = {
  metadata: { labels: true },
  spec: { containers: { ports: true } },
  status: { podIPs: true },
};

test('with fields, values outside them come out empty wherever the bytes are cut; scalars stay', (t) => {
  const text = JSON.stringify({
    kind: 'PodList',
    metadata: { resourceVersion: '9' },
    items: [pod, pod],
  });
  const want = keep(pod, podFields);
  t.deepEqual((want as typeof pod).spec.volumes, []);
  t.deepEqual((want as typeof pod).spec.containers[0]?.env, []);
  t.is((want as typeof pod).status.phase, 'Running');
  for (let cut = 0; cut <= text.length; cut++) {
    const items: unknown[] = [];
    const s = new ListSplitter((i) => items.push(i), podFields);
    s.write(Buffer.from(text.slice(0, cut)));
    s.write(Buffer.from(text.slice(cut)));
    t.deepEqual(s.end(), { kind: 'PodList', metadata: { resourceVersion: '9' }, items: [] });
    t.deepEqual(items, [want, want], `cut at ${cut}`);
  }
});

test('fields: random objects, random fields, random cuts agree with the contract', (t) => {
  // A small generator with a seed, so a failure can be replayed.
  let seed = 12345;
  const rnd = (k: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % k;
  };
  // Few names, so that the fields and the objects meet often.
  const names = ['a', 'items', 'x"y', 'é', '\\', 'managedFields'];
  const value = (d: number): unknown => {
    const r = rnd(d > 3 ? 4 : 7);
    if (r === 0) return rnd(1000) - 500;
    if (r === 1) return `s${names[rnd(names.length)]}{[`;
    if (r === 2) return rnd(2) === 0 ? null : true;
    if (r === 3) return names[rnd(names.length)];
    if (r === 4) return Array.from({ length: rnd(4) }, () => value(d + 1));
    return Object.fromEntries(
      Array.from({ length: rnd(4) }, () => [names[rnd(names.length)], value(d + 1)]),
    ) as unknown;
  };
  const fieldsOf = (d: number): ListFields =>
    Object.fromEntries(
      Array.from({ length: rnd(3) }, (): [string, ListFields | true] => [
        names[rnd(names.length)] as string,
        d > 2 || rnd(3) === 0 ? true : fieldsOf(d + 1),
      ]),
    );
  for (let round = 0; round < 2000; round++) {
    const items = Array.from({ length: 1 + rnd(3) }, () => ({
      metadata: value(1),
      spec: value(1),
      [names[rnd(names.length)] as string]: value(1),
    }));
    const fields = fieldsOf(0);
    const text = Buffer.from(JSON.stringify({ items, metadata: { resourceVersion: '1' } }));
    const got: unknown[] = [];
    const s = new ListSplitter((i) => got.push(i), fields);
    let from = 0;
    while (from < text.length) {
      const to = Math.min(text.length, from + 1 + rnd(40));
      s.write(text.subarray(from, to));
      from = to;
    }
    s.end();
    t.deepEqual(
      got,
      items.map((i) => keep(i, fields)),
      `round ${round}: ${JSON.stringify(fields)}`,
    );
  }
});

test('fields are matched on the keys as text: escapes, \\u escapes and multi-byte characters', (t) => {
  const text = String.raw`{"items":[{"a\u0026b":{"x":[1]},"x\"y":{"x":[2],"z":[3]},"é":{"x":[4]},"\\":{"x":[5]},"averyveryveryveryveryveryveryveryverylongkey":{"x":[6]}}]}`;
  const fields: ListFields = { 'a&b': true, 'x"y': { x: true }, é: true, '\\': true };
  const got: unknown[] = [];
  const s = new ListSplitter((i) => got.push(i), fields);
  s.write(Buffer.from(text));
  s.end();
  t.deepEqual(got, [
    {
      'a&b': { x: [1] },
      'x"y': { x: [2], z: [] },
      é: { x: [4] },
      '\\': { x: [5] },
      averyveryveryveryveryveryveryveryverylongkey: {},
    },
  ]);
});
