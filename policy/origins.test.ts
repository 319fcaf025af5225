// The rule origins: every policy rule of the fragment names the policy and rule it
// stands for, drops carry a counter, and tracing a packet through the fragment gives
// the rule that decided it.
import test from 'ava';
import { compilePolicies, POLICY_FORWARD_CHAIN } from './compile.ts';
import {
  adminRule,
  anp,
  labels,
  nsSubject,
  podAddress,
  policy,
  upstreamNamespaces,
  upstreamPods,
} from './fixtures.ts';
import { traceVerdict } from './nftsim.ts';

const compile = (
  self: string,
  extra: Parameters<typeof compilePolicies>[0]['adminPolicies'] = [],
) =>
  compilePolicies({
    self,
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    policies: [
      policy({
        name: 'allow-from-y',
        namespace: 'x',
        podSelector: labels({ pod: 'a' }),
        ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
      }),
    ],
    adminPolicies: extra,
  });

const nodeOf = (id: string) =>
  upstreamPods().find((p) => `${p.namespace}/${p.name}` === id)?.node ?? '';

function decide(from: string, to: string, admin: Parameters<typeof compile>[1] = []) {
  const [fns, fpod] = from.split('/') as [string, string];
  const [tns, tpod] = to.split('/') as [string, string];
  const dst = compile(nodeOf(to), admin);
  const pkt = {
    src: podAddress(fns, fpod, 4),
    dst: podAddress(tns, tpod, 4),
    proto: 'tcp' as const,
    dport: 80,
  };
  const { verdict, tags } = traceVerdict(dst.table, POLICY_FORWARD_CHAIN, pkt);
  const last = tags.at(-1);
  return { verdict, origin: last ? dst.origins[last] : undefined };
}

test('every policy rule carries a comment naming its origin, and drops a counter', (t) => {
  const { table, origins } = compile(nodeOf('x/a'));
  const policyRules = table.chains.filter((c) => c.name.startsWith('pol-')).flatMap((c) => c.rules);
  t.true(policyRules.length > 0);
  for (const rule of policyRules) {
    const tag = / comment "(wm-[0-9a-f]{12})"$/.exec(rule)?.[1];
    t.truthy(tag && origins[tag], rule);
    if (rule.includes(' drop ')) t.regex(rule, /counter drop/);
  }
});

test('the trace names the NetworkPolicy peer that allowed and the policy whose default deny dropped', (t) => {
  const allowed = decide('y/b', 'x/a');
  t.is(allowed.verdict, 'accept');
  t.like(allowed.origin, { tier: 'NetworkPolicy', action: 'Allow', rule: 0, peer: 0 });
  t.deepEqual(allowed.origin?.policies, [{ namespace: 'x', name: 'allow-from-y' }]);
  const dropped = decide('z/b', 'x/a');
  t.is(dropped.verdict, 'drop');
  t.like(dropped.origin, { tier: 'NetworkPolicy', action: 'Deny', direction: 'ingress' });
  t.is(dropped.origin?.rule, undefined);
  // A pod no policy selects: no rule decided.
  t.deepEqual(decide('z/b', 'x/b'), { verdict: 'accept', origin: undefined });
});

test('the trace names the AdminNetworkPolicy rule that denied', (t) => {
  const admin = [
    anp({
      name: 'no-y',
      priority: 5,
      subject: nsSubject('x'),
      ingress: [
        { ...adminRule('Deny', [{ namespaceSelector: labels({ ns: 'y' }) }]), name: 'deny-y' },
      ],
    }),
  ];
  const d = decide('y/b', 'x/a', admin);
  t.is(d.verdict, 'drop');
  t.like(d.origin, {
    tier: 'AdminNetworkPolicy',
    action: 'Deny',
    rule: 0,
    ruleName: 'deny-y',
    peer: 0,
  });
  t.deepEqual(d.origin?.policies, [{ namespace: '', name: 'no-y' }]);
});
