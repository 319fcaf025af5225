import test from 'ava';
import { dropOrigin, parseDropLine } from './droplog.ts';
import { compilePolicies, namespaceFromK8s } from '../policy/index.ts';
import {
  labels,
  podAddress,
  policy,
  upstreamNamespaces,
  upstreamPods,
} from '../policy/fixtures.ts';

test('tcpdump lines of the NFLOG group parse into flows', (t) => {
  t.deepEqual(parseDropLine('IP 100.64.1.2.43210 > 100.64.2.3.8080: tcp 0'), {
    src: '100.64.1.2',
    dst: '100.64.2.3',
    proto: 'tcp',
    sport: 43210,
    dport: 8080,
  });
  t.like(parseDropLine('IP6 fd00:64:1::1.5353 > fd00:64:2::2.53: UDP, length 2'), {
    src: 'fd00:64:1::1',
    dst: 'fd00:64:2::2',
    proto: 'udp',
    dport: 53,
  });
  t.like(parseDropLine('IP 100.64.1.1 > 100.64.1.2: ICMP echo request, id 1, seq 1, length 64'), {
    proto: 'icmp',
    dst: '100.64.1.2',
  });
  t.is(parseDropLine('tcpdump: listening on nflog:2310'), null);
  t.is(parseDropLine('IP 1.2.3.4.5 > 5.6.7.8.9: GRE'), null);
});

test('the log rule is only in the chains of namespaces that ask, and the flow is attributed', (t) => {
  const policies = [policy({ name: 'deny', namespace: 'x', podSelector: labels({ pod: 'b' }) })];
  const compile = (logX: boolean) =>
    compilePolicies({
      self: 'n2',
      pods: upstreamPods(),
      namespaces: upstreamNamespaces().map((n) =>
        n.name === 'x' && logX ? { ...n, logDrops: true } : n,
      ),
      policies,
    });
  const logRules = (r: ReturnType<typeof compile>) =>
    r.table.chains.flatMap((c) => c.rules).filter((rule) => rule.includes(' log group '));
  t.deepEqual(logRules(compile(false)), []);
  const on = compile(true);
  t.deepEqual(logRules(on), ['limit rate 10/second burst 20 packets log group 2310']);
  const flow = parseDropLine(
    `IP ${podAddress('y', 'a', 4)}.40000 > ${podAddress('x', 'b', 4)}.80: tcp 0`,
  );
  if (!flow) throw new Error('no flow');
  t.like(dropOrigin(on.table, on.origins, flow, false), {
    tier: 'NetworkPolicy',
    direction: 'ingress',
    policies: [{ namespace: 'x', name: 'deny' }],
  });
});

test('the namespace annotation wiremesh.io/log-drops: "true" asks for the log', (t) => {
  const ns = (annotations: Record<string, string>) =>
    namespaceFromK8s({ metadata: { name: 'x', annotations } }).namespace;
  t.is(ns({ 'wiremesh.io/log-drops': 'true' })?.logDrops, true);
  t.is(ns({ 'wiremesh.io/log-drops': 'yes' })?.logDrops, undefined);
  t.is(ns({})?.logDrops, undefined);
});
