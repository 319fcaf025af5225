// The mesh graph of the test cluster, rendered by Graphviz's real `dot` and checked
// by parsing the SVG: every node, every edge with its colour, and the problems.
import test from 'ava';
import { handshakeAges, planGraph, renderDot, type AgentFacts } from './graph.ts';
import { admitClusterBlocks } from './snapshot.ts';
import { snapshot } from './fixtures.ts';
import { renderSvg } from '../cli/graph.ts';
import { parseGraphSvg as parseSvg } from './svg.ts';

const fresh: AgentFacts = { handshakeAge: new Map([['n2', 12]]) };

test('every node and edge is in the SVG, coloured by encryption, with the problems', async (t) => {
  const g = planGraph(
    snapshot([]),
    new Map([
      ['n1', fresh],
      ['n2', { handshakeAge: new Map([['n1', 12]]) }],
    ]),
  );
  const svg = await renderSvg(renderDot(g));
  const items = parseSvg(svg);
  const n1 = items.find((i) => i.kind === 'node' && i.title === 'n1');
  t.truthy(n1);
  t.true(n1?.texts.includes('100.64.1.1/32 (default)'));
  t.truthy(items.find((i) => i.kind === 'node' && i.title === 'n2'));
  const edge = items.find((i) => i.kind === 'edge' && i.title === 'n1--n2');
  t.is(edge?.stroke, 'darkgreen');
  t.true(edge?.texts.includes('default: wireguard'));
});

test('an agent that does not answer, a stale handshake and a blocked Required pool are marked', async (t) => {
  const stale = planGraph(
    snapshot([]),
    new Map([
      ['n1', { handshakeAge: new Map([['n2', 600]]) }],
      ['n2', null],
    ]),
  );
  let items = parseSvg(await renderSvg(renderDot(stale)));
  t.true(items.find((i) => i.title === 'n2')?.texts.includes('! agent not answering'));
  const edge = items.find((i) => i.kind === 'edge');
  t.true(edge?.texts.includes('! n1: no handshake with n2 for 600 s'));
  const blocked = planGraph(
    snapshot([], [], { n2Key: false }),
    new Map([
      ['n1', fresh],
      ['n2', fresh],
    ]),
  );
  items = parseSvg(await renderSvg(renderDot(blocked)));
  const b = items.find((i) => i.kind === 'edge');
  t.is(b?.stroke, 'red');
  t.true(b?.texts.includes('! a Required pool is blocked'));
  t.true(items.find((i) => i.title === 'n2')?.texts.includes('! no WireGuard key'));
  const plain = planGraph(
    snapshot([], [], {
      pool: { encryption: 'None', encryptionMode: 'Preferred', encapsulation: 'VXLAN' },
    }),
    new Map([
      ['n1', fresh],
      ['n2', fresh],
    ]),
  );
  items = parseSvg(await renderSvg(renderDot(plain)));
  t.is(items.find((i) => i.kind === 'edge')?.stroke, 'darkorange');
});

test('handshake ages are read from the metrics text', (t) => {
  const ages = handshakeAges(
    [
      'wiremesh_wireguard_peer_latest_handshake_age_seconds{peer="b",public_key="x"} 42',
      'wiremesh_wireguard_peer_latest_handshake_age_seconds{peer="c",public_key="y"} +Inf',
    ].join('\n'),
  );
  t.deepEqual(
    [...ages],
    [
      ['b', 42],
      ['c', Infinity],
    ],
  );
});

test('a Peer and a remote cluster are drawn with an edge from every node, their handshakes from the agents', async (t) => {
  const s = snapshot([]);
  s.peers = [
    {
      name: 'laptop',
      uid: 'u',
      publicKey: `${'D'.repeat(42)}A=`,
      endpoint: null,
      allowedIPs: ['10.99.0.1/32'],
      persistentKeepalive: 25,
    },
  ];
  const remote = {
    name: 'west',
    nodes: [{ ...s.nodes[0]!, name: 'w1', publicKey: `${'E'.repeat(42)}A=` }],
    blocks: [{ ...s.blocks[0]!, name: 'x', cidr: '100.96.0.0/26', node: 'w1', pool: 'default' }],
    error: null,
  };
  const broken = { name: 'east', nodes: [], blocks: [], error: 'no answer in 5000 ms' };
  const g = planGraph(
    s,
    new Map([
      [
        'n1',
        {
          handshakeAge: new Map([
            ['n2', 5],
            ['peer/laptop', 7],
            ['west/w1', Infinity],
          ]),
        },
      ],
      [
        'n2',
        {
          handshakeAge: new Map([
            ['n1', 5],
            ['west/w1', 9],
          ]),
        },
      ],
    ]),
    [remote, broken],
  );
  const items = parseSvg(await renderSvg(renderDot(g)));
  const peer = items.find((i) => i.kind === 'node' && i.title === 'peer/laptop');
  t.deepEqual(peer?.texts, ['peer/laptop', '10.99.0.1/32', '! no endpoint: it connects first']);
  t.deepEqual(items.find((i) => i.kind === 'node' && i.title === 'west/w1')?.texts, [
    'west/w1',
    '100.96.0.0/26 (default)',
  ]);
  const edge = (title: string) => items.find((i) => i.kind === 'edge' && i.title === title);
  t.deepEqual(edge('n1--peer/laptop')?.texts, ['wireguard']);
  t.deepEqual(edge('n2--peer/laptop')?.texts, ['wireguard', '! n2: not programmed']);
  t.deepEqual(edge('n1--west/w1')?.texts, ['wireguard', '! n1: no handshake ever']);
  t.deepEqual(edge('n2--west/w1')?.texts, ['wireguard']);
  t.is(edge('n2--west/w1')?.stroke, 'darkgreen');
  t.true(renderDot(g).includes('cannot be read: no answer in 5000 ms'));
  t.is(items.filter((i) => i.kind === 'edge').length, 1 + 2 + 2);
});

test('IPAMBlocks are admitted as the agents admit them; a refused one is marked on its node', (t) => {
  const s = snapshot([]);
  const raw = (name: string, cidr: string, node: string, ts: string) => ({
    metadata: { name, creationTimestamp: ts },
    spec: { cidr, node, pool: 'default' },
  });
  const { blocks, refused } = admitClusterBlocks(
    [
      raw('100-64-1-0-26', '100.64.1.0/26', 'n1', '2026-01-01T00:00:00Z'),
      raw('100-64-1-0-26x', '100.64.1.0/26', 'n2', '2026-01-02T00:00:00Z'),
      raw('100-64-2-0-26', '100.64.2.0/26', 'ghost', '2026-01-01T00:00:00Z'),
    ],
    s.nodes,
    [{ ...s.pools[0]!, blockSize: 26 }],
  );
  t.deepEqual(
    blocks.map((b) => `${b.cidr} ${b.node}`),
    ['100.64.1.0/26 n1'],
  );
  t.deepEqual(refused.map((r) => `${r.cidr} ${r.node} ${r.reason}`).sort(), [
    '100.64.1.0/26 n2 InvalidBlockName',
    '100.64.2.0/26 ghost UnknownNode',
  ]);
  s.refusedBlocks = refused;
  const g = planGraph(s, new Map());
  t.true(
    g.nodes
      .find((n) => n.name === 'n2')
      ?.problems.includes('refused block 100.64.1.0/26: InvalidBlockName'),
  );
});
