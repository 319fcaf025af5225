// Fuzz of the AdminNetworkPolicy / BaselineAdminNetworkPolicy translation (k8s.ts):
// cluster-admin objects, but read from a CRD whose version we do not control.
// Starting from valid policies changed in a few places, the translation never throws
// and always fails closed: a kept rule is either fully valid or the deny-everything
// stand-in (never an Allow that was only half read), a priority is in range or the
// -1 stand-in with a problem, each problem names the field at fault, and what comes
// out compiles without a problem of its own.
import test from 'ava';
import { expect, fuzz, mutate, type Rng } from '../sys/fuzz.ts';
import { checkAdminRule } from './check.ts';
import { compilePolicies } from './compile.ts';
import { upstreamNamespaces, upstreamPods } from './fixtures.ts';
import { adminNetworkPolicyFromK8s, baselineAdminNetworkPolicyFromK8s } from './admin-k8s.ts';
import type { AdminRule, PolicyProblem } from './types.ts';

const ANP = {
  apiVersion: 'policy.networking.k8s.io/v1alpha1',
  kind: 'AdminNetworkPolicy',
  metadata: { name: 'p' },
  spec: {
    priority: 7,
    subject: { pods: { namespaceSelector: { matchLabels: { ns: 'x' } }, podSelector: {} } },
    ingress: [
      {
        name: 'in',
        action: 'Pass',
        from: [
          { namespaces: { matchLabels: { ns: 'y' } } },
          {
            pods: {
              namespaceSelector: {},
              podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['a'] }] },
            },
          },
        ],
        ports: [
          { portNumber: { port: 80 } },
          { portRange: { protocol: 'UDP', start: 1000, end: 2000 } },
          { namedPort: 'serve-81-udp' },
        ],
      },
      { action: 'Allow', from: [{ namespaces: {} }] },
    ],
    egress: [
      { action: 'Deny', to: [{ networks: ['10.0.0.0/8', 'fd00::/8'] }] },
      {
        name: 'dns',
        action: 'Allow',
        to: [{ namespaces: {} }],
        ports: [{ portNumber: { protocol: 'UDP', port: 53 } }],
      },
    ],
  },
};

const NEAR: unknown[] = [
  'Allow',
  'Deny',
  'Pass',
  'allow',
  'TCP',
  'UDP',
  'SCTP',
  'ICMP',
  0,
  1000,
  1001,
  65535,
  65536,
  '10.0.0.1/8',
  '10.0.0.0/33',
  '::/0',
  { namespaces: {} },
  { networks: ['192.0.2.0/24'] },
  { pods: { podSelector: {} } },
  { portNumber: { port: 0 } },
  { portRange: { start: 2000, end: 1000 } },
  { namedPort: 'NOT_A_NAME' },
  { matchExpressions: [{ key: 'k', operator: 'Exists', values: ['v'] }] },
];

const STAND_IN: AdminRule = { name: '', action: 'Deny', peers: [], ports: [] };

function isStandIn(rule: AdminRule): boolean {
  return rule.action === 'Deny' && rule.peers.length === 0 && rule.ports.length === 0;
}

function checkRules(rules: AdminRule[], dir: 'ingress' | 'egress', baseline: boolean): void {
  for (const [i, rule] of rules.entries()) {
    if (isStandIn(rule)) continue;
    const fault = checkAdminRule(rule, `spec.${dir}[${i}]`, dir, baseline);
    expect(fault === null, `kept a rule that is not valid: ${fault ?? ''}`);
    expect(rule.peers.length > 0, `a ${rule.action} rule with no peers matches everything`);
  }
}

function checkProblems(problems: PolicyProblem[]): void {
  for (const p of problems) {
    expect(/spec|metadata\.name/.test(p.message), `'${p.message}' names no field`);
  }
}

function generate(rng: Rng): { raw: unknown; baseline: boolean } {
  const baseline = rng.chance(0.3);
  const valid = baseline
    ? {
        ...ANP,
        kind: 'BaselineAdminNetworkPolicy',
        metadata: { name: 'default' },
        spec: {
          subject: ANP.spec.subject,
          ingress: [ANP.spec.ingress[1]],
          egress: ANP.spec.egress,
        },
      }
    : ANP;
  return { raw: mutate(rng, valid, NEAR), baseline };
}

test('fuzz: admin policies translate failing closed, never half-read', (t) => {
  let clean = 0;
  let refused = 0;
  fuzz(0x616e7020, 3000, generate, ({ raw, baseline }) => {
    const obj = typeof raw === 'object' && raw !== null ? raw : {};
    if (baseline) {
      const { policy, problems } = baselineAdminNetworkPolicyFromK8s(obj);
      checkProblems(problems);
      if (!policy) {
        expect(problems.length > 0, 'refused without a problem');
        refused++;
        return;
      }
      checkRules(policy.ingress, 'ingress', true);
      checkRules(policy.egress, 'egress', true);
      if (problems.length === 0) clean++;
      const compiled = compilePolicies({
        self: 'n1',
        pods: upstreamPods(),
        namespaces: upstreamNamespaces(),
        policies: [],
        baselinePolicy: policy,
      });
      // The one problem the compiler adds by design: the singleton's name.
      const own = compiled.problems.filter(
        (p) => !(policy.name !== 'default' && /must be named 'default'/.test(p.message)),
      );
      expect(own.length === 0, `compile: ${own[0]?.message ?? ''}`);
      return;
    }
    const { policy, problems } = adminNetworkPolicyFromK8s(obj);
    checkProblems(problems);
    if (!policy) {
      expect(problems.length > 0, 'refused without a problem');
      refused++;
      return;
    }
    const pr = policy.priority;
    expect(
      (Number.isInteger(pr) && pr >= 0 && pr <= 1000) || (pr === -1 && problems.length > 0),
      `priority ${pr}`,
    );
    if (pr === -1) {
      expect(
        JSON.stringify([policy.ingress, policy.egress]) ===
          JSON.stringify([[STAND_IN], [STAND_IN]]),
        'an unreadable priority without deny-all',
      );
    }
    checkRules(policy.ingress, 'ingress', false);
    checkRules(policy.egress, 'egress', false);
    if (problems.length === 0) clean++;
    const compiled = compilePolicies({
      self: 'n1',
      pods: upstreamPods(),
      namespaces: upstreamNamespaces(),
      policies: [],
      adminPolicies: [policy],
    });
    expect(compiled.problems.length === 0, `compile: ${compiled.problems[0]?.message ?? ''}`);
  });
  t.true(clean > 200, `only ${clean} policies read without a problem`);
  t.true(refused > 20, `only ${refused} policies refused`);
});
