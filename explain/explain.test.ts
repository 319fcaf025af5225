// explain over the upstream x/y/z model (policy/fixtures.ts): its verdict for every
// cell of the matrix is the one the compiled tables give (the same walk the policy
// tests make), every drop names a policy, and the path follows the pools.
import test from 'ava';
import { explainFlow, parsePortProtocol, PolicyCompiler } from './explain.ts';
import { snapshot } from './fixtures.ts';
import {
  POD_IDS,
  adminRule,
  anp,
  labels,
  makeCluster,
  matrix,
  nsSubject,
  policy,
  upstreamPods,
} from '../policy/fixtures.ts';
import type { AdminNetworkPolicy, NetworkPolicy } from '../policy/index.ts';

const cases: [string, NetworkPolicy[], AdminNetworkPolicy[]][] = [
  ['no policy', [], []],
  ['default deny ingress in x', [policy({ name: 'deny', namespace: 'x' })], []],
  [
    'x/a admits y, egress of z denied',
    [
      policy({
        name: 'allow-y',
        namespace: 'x',
        podSelector: labels({ pod: 'a' }),
        ingress: [{ peers: [{ namespaceSelector: labels({ ns: 'y' }) }], ports: [] }],
      }),
      policy({ name: 'no-egress', namespace: 'z', policyTypes: ['Egress'] }),
    ],
    [],
  ],
  [
    'an ANP denies y to x over a NetworkPolicy allowing all',
    [policy({ name: 'all', namespace: 'x', ingress: [{ peers: [], ports: [] }] })],
    [
      anp({
        name: 'deny-y',
        priority: 1,
        subject: nsSubject('x'),
        ingress: [adminRule('Deny', [{ namespaceSelector: labels({ ns: 'y' }) }])],
      }),
    ],
  ],
];

for (const [title, policies, admin] of cases) {
  test(`explain gives the compiled tables' verdict on every cell, and names a policy for each drop: ${title}`, (t) => {
    const s = snapshot(policies, admin);
    const compiler = new PolicyCompiler(s);
    const { reach } = makeCluster(policies, upstreamPods(), { adminPolicies: admin });
    const explained = (from: string, to: string) => {
      const e = explainFlow(s, { from, to, protocol: 'TCP', port: 80 }, compiler);
      if (e.verdict === 'drop' && from !== to) {
        const decided = [e.egress, e.ingress].find((d) => d.verdict === 'drop');
        t.truthy(decided?.origin?.policies[0]?.name, `${from} -> ${to}: no policy named`);
      }
      return e.verdict === 'allow';
    };
    t.is(
      matrix((from, to) => from === to || explained(from, to)),
      matrix((from, to) => from === to || reach({ from, to })),
    );
  });
}

test('the deciding rule is named: NetworkPolicy peer, default deny, ANP rule', (t) => {
  const s = snapshot(cases[2]?.[1] ?? []);
  const allowed = explainFlow(s, { from: 'y/b', to: 'x/a', protocol: 'TCP', port: 80 });
  t.is(allowed.ingress.text, 'allowed by NetworkPolicy x/allow-y spec.ingress[0] from[0]');
  t.is(allowed.egress.text, 'allowed: no policy selects y/b for egress');
  const denied = explainFlow(s, { from: 'z/b', to: 'x/a', protocol: 'TCP', port: 80 });
  t.is(denied.verdict, 'drop');
  t.is(
    denied.egress.text,
    'dropped: NetworkPolicy z/no-egress selects the pod for egress and no rule allows it',
  );
  t.is(denied.ingress.verdict, 'not reached');
  const anpCase = snapshot(cases[3]?.[1] ?? [], cases[3]?.[2] ?? []);
  const byAnp = explainFlow(anpCase, { from: '100.64.2.2', to: 'x/a', protocol: 'UDP', port: 81 });
  t.is(
    byAnp.ingress.text,
    'dropped by AdminNetworkPolicy deny-y spec.ingress[0] (deny-rule) from[0]',
  );
  t.is(byAnp.from.kind, 'pod');
});

test('the path: WireGuard between nodes, veths on one node, blocked without a peer key', (t) => {
  const across = explainFlow(snapshot([]), { from: 'x/a', to: 'x/b', protocol: 'ICMP' });
  t.like(across.path, { kind: 'wireguard', device: 'wiremesh.wg', encrypted: true });
  const v6 = explainFlow(snapshot([]), { from: 'fd00:64:1::1', to: 'x/b', protocol: 'ICMP' });
  t.is(v6.to.kind === 'pod' ? v6.to.ip : '', 'fd00:64:1::2');
  const local = explainFlow(snapshot([]), { from: 'x/b', to: 'y/c', protocol: 'ICMP' });
  t.like(local.path, { kind: 'local', encrypted: false });
  const blocked = explainFlow(snapshot([], [], { n2Key: false }), {
    from: 'x/a',
    to: 'x/b',
    protocol: 'TCP',
    port: 80,
  });
  t.is(blocked.path.kind, 'blocked');
  t.is(blocked.verdict, 'drop');
  const vxlan = explainFlow(
    snapshot([], [], {
      pool: { encryption: 'None', encryptionMode: 'Preferred', encapsulation: 'VXLAN' },
    }),
    { from: 'x/a', to: 'x/b', protocol: 'ICMP' },
  );
  t.like(vxlan.path, { kind: 'vxlan', device: 'wiremesh.vxlan', encrypted: false });
  // A destination in a block the agents refuse has no path, and explain says why.
  const forged = snapshot([]);
  const target = explainFlow(forged, { from: 'x/a', to: 'x/b', protocol: 'ICMP' }).to;
  const held = forged.blocks.find((b) => target.kind === 'pod' && b.cidr === `${target.ip}/32`);
  forged.blocks = forged.blocks.filter((b) => b !== held);
  forged.refusedBlocks = [
    {
      block: 'forged',
      cidr: held?.cidr ?? '',
      node: 'n2',
      reason: 'InvalidBlockName',
      message: 'IPAMBlock forged: its name must be something else; it is not routed',
    },
  ];
  const refused = explainFlow(forged, { from: 'x/a', to: 'x/b', protocol: 'ICMP' });
  t.like(refused.path, { kind: 'underlay', encrypted: false });
  t.regex(refused.path.text, /lies in a refused block: IPAMBlock forged/);
});

test('endpoints: unknown pods and mixed families are refused; PORT/PROTO parses', (t) => {
  t.throws(() => explainFlow(snapshot([]), { from: 'x/nope', to: 'x/a', protocol: 'ICMP' }), {
    message: /no pod x\/nope/,
  });
  t.throws(
    () => explainFlow(snapshot([]), { from: '100.64.1.1', to: 'fd00:64:1::2', protocol: 'ICMP' }),
    {
      message: /different address families/,
    },
  );
  const node = explainFlow(snapshot([]), { from: '198.18.9.12', to: 'x/b', protocol: 'ICMP' });
  t.is(node.ingress.text, "traffic from a pod's own node is always allowed");
  t.deepEqual(parsePortProtocol('80/TCP'), { protocol: 'TCP', port: 80 });
  t.deepEqual(parsePortProtocol('udp/53'), { protocol: 'UDP', port: 53 });
  t.deepEqual(parsePortProtocol(undefined), { protocol: 'ICMP' });
  t.throws(() => parsePortProtocol('80/HTTP'));
  t.throws(() => parsePortProtocol('TCP'));
  t.true(POD_IDS.length === 9);
});
