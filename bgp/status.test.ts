// birdc's answers, as captured from BIRD 2.0.12 in bird.netns.test.ts (run it with
// WIREMESH_BGP_CAPTURE=DIR to refresh bgp/fixtures/), read into plain values.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseBgpSessions, parseConfigureReply, parseProtocols, parseRouteCount } from './index.ts';

const fixture = (name: string) => readFileSync(join(import.meta.dirname, 'fixtures', name), 'utf8');

test('show protocols: one entry per protocol, the since column with its space', (t) => {
  const protocols = parseProtocols(fixture('show-protocols.txt'));
  t.deepEqual(
    protocols.map((p) => [p.name, p.proto, p.table, p.state, p.info]),
    [
      ['wm_device', 'Device', '---', 'up', ''],
      ['wm_direct', 'Direct', '---', 'up', ''],
      ['wm_kernel', 'Kernel', 'wm_kernel4', 'up', ''],
      ['wm_pipe', 'Pipe', '---', 'up', 'master4 <=> wm_kernel4'],
      ['wm_blocks', 'Static', 'master4', 'up', ''],
      ['node_b', 'BGP', '---', 'up', 'Established'],
      ['tor', 'BGP', '---', 'up', 'Established'],
    ],
  );
  t.regex(protocols[0]?.since ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
});

test('show protocols all: sessions with neighbour and route counts', (t) => {
  const sessions = parseBgpSessions(fixture('show-protocols-all.txt'));
  t.deepEqual(
    sessions.map(({ since: _since, ...rest }) => rest),
    [
      {
        name: 'node_b',
        proto: 'BGP',
        table: '---',
        state: 'up',
        info: 'Established',
        description: 'mesh 198.18.252.130 AS 64512',
        neighborAddress: '198.18.252.130',
        neighborAS: 64512,
        importedRoutes: 1,
        exportedRoutes: 1,
        preferredRoutes: 1,
      },
      {
        name: 'tor',
        proto: 'BGP',
        table: '---',
        state: 'up',
        info: 'Established',
        description: 'external 198.18.252.1 AS 65000',
        neighborAddress: '198.18.252.1',
        neighborAS: 65000,
        importedRoutes: 1,
        exportedRoutes: 1,
        preferredRoutes: 1,
      },
    ],
  );
  const all = parseProtocols(fixture('show-protocols-all.txt'));
  t.like(
    all.find((p) => p.name === 'wm_kernel'),
    { importedRoutes: 1, exportedRoutes: 2 },
  );
  t.like(
    all.find((p) => p.name === 'wm_pipe'),
    { importedRoutes: 0, exportedRoutes: 2 },
  );
});

test('show protocols all: a session that went down, with its last error', (t) => {
  const [s] = parseBgpSessions(fixture('show-protocols-all-down.txt'));
  t.like(s, {
    name: 'node_b',
    state: 'start',
    info: 'Active',
    lastError: 'Received: Administrative shutdown',
  });
  t.is(s?.importedRoutes, undefined, 'a channel that is down has no Routes line');
});

test('show protocols: the last error from the info column', (t) => {
  const line =
    'node_b     BGP        ---        start  2026-12-06 05:12:21  Active        Socket: Connection refused';
  t.like(parseProtocols(line)[0], { info: 'Active', lastError: 'Socket: Connection refused' });
});

test('a line that is not a protocol is an error, not a silent skip', (t) => {
  t.throws(() => parseProtocols('BIRD 2.0.12 ready.\nSyntax error\n'), {
    message: /unexpected line in BIRD's protocol list: "Syntax error"/,
  });
});

test('show route count', (t) => {
  t.deepEqual(parseRouteCount(fixture('show-route-count.txt')), [
    { table: 'master4', routes: 3, total: 3, networks: 3 },
    { table: 'master6', routes: 0, total: 0, networks: 0 },
    { table: 'wm_kernel4', routes: 4, total: 4, networks: 4 },
  ]);
});

test('configure replies', (t) => {
  t.deepEqual(parseConfigureReply(fixture('configure-ok.txt')), {
    ok: true,
    message: 'Reconfigured',
  });
  t.deepEqual(parseConfigureReply(fixture('configure-error.txt')), {
    ok: false,
    message: 'bird.conf:148:10 syntax error, unexpected CF_SYM_UNDEFINED',
  });
  for (const ok of [
    'Reconfiguration in progress',
    'Reconfiguration already in progress, queueing new config',
  ])
    t.true(parseConfigureReply(`BIRD 2.0.12 ready.\n${ok}\n`).ok);
  t.deepEqual(parseConfigureReply('BIRD 2.0.12 ready.\nReconfiguration ignored, shutting down\n'), {
    ok: false,
    message: 'Reconfiguration ignored, shutting down',
  });
  t.deepEqual(parseConfigureReply(''), { ok: false, message: 'no reply from BIRD' });
});
