import test from 'ava';
import { ListSplitter } from './liststream.ts';

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
