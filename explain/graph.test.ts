// The mesh graph of the test cluster, rendered by Graphviz's real `dot` and checked
// by parsing the SVG: every node, every edge with its colour, and the problems.
import test from 'ava';
import { handshakeAges, planGraph, renderDot, type AgentFacts } from './graph.ts';
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
