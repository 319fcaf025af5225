// Kernel tier: compiled policy fragments, composed into the agent's table, are
// accepted by the real nft (nftables 1.0.6 here) through the table driver, in a
// throwaway network namespace per test (the admin tiers' goto chains and maps too);
// a pod joining afterwards is applied as an increment. No traffic is sent: the e2e
// netpol and anp suites probe real connections.
import test, { type ExecutionContext } from 'ava';
import { PrefixRunner, defaultRunner as runner } from '../sys/index.ts';
import { NftCli, TableDriver } from '../nftables/index.ts';
import { requireNft, throwawayNetns } from '../nftables/testing.ts';
import { composeTable } from '../agent/nftable.ts';
import { compilePolicies } from './compile.ts';
import {
  adminRule,
  anp,
  labels,
  nsSubject,
  policy,
  upstreamNamespaces,
  upstreamPods,
} from './fixtures.ts';
import { policySnapshot } from '../bench/policy.ts';

const tag = process.pid % 100000;

test.before(() => requireNft('policy/compile.netns.test.ts'));

async function driverInNetns(t: ExecutionContext): Promise<TableDriver> {
  const name = await throwawayNetns(t, `wmpol-${tag}`);
  return new TableDriver(new NftCli(new PrefixRunner(runner, ['ip', 'netns', 'exec', name])));
}

test('every rule shape the compiler emits is accepted by nft, and an added pod is an increment', async (t) => {
  const driver = await driverInNetns(t);
  const policies = [
    policy({
      name: 'web',
      podSelector: labels({ pod: 'a' }),
      policyTypes: ['Ingress', 'Egress'],
      ingress: [
        {
          peers: [
            { podSelector: labels({ pod: 'b' }) },
            { ipBlock: { cidr: '100.64.0.0/16', except: ['100.64.2.0/24'] } },
            { ipBlock: { cidr: 'fd00::/8', except: ['fd00:64:2::/48'] } },
          ],
          ports: [
            { protocol: 'TCP', port: 80 },
            { protocol: 'UDP', port: 'serve-81-udp' },
            { protocol: 'SCTP', port: 80, endPort: 90 },
            { protocol: 'UDP' },
          ],
        },
      ],
      egress: [
        {
          peers: [{ namespaceSelector: labels({ ns: 'y' }) }],
          ports: [{ protocol: 'TCP', port: 'serve-80-tcp' }],
        },
        { peers: [], ports: [{ protocol: 'SCTP', port: 'serve-81-sctp' }] },
        { peers: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['100.64.0.0/10'] } }], ports: [] },
      ],
    }),
    policy({ name: 'deny-all', namespace: 'y', policyTypes: ['Ingress', 'Egress'] }),
  ];
  const pods = upstreamPods();
  const first = compilePolicies({ self: 'n1', pods, namespaces: upstreamNamespaces(), policies });
  t.deepEqual(first.problems, []);
  t.is((await driver.apply(composeTable({ policy: first.table }))).mode, 'full');
  t.true((await driver.verify()).inSync);

  const joined = [
    ...pods,
    { ...pods[0], name: 'a2', ips: ['100.64.1.9', 'fd00:64:1::9'] } as (typeof pods)[number],
  ];
  const second = compilePolicies({
    self: 'n1',
    pods: joined,
    namespaces: upstreamNamespaces(),
    policies,
  });
  t.deepEqual(second.table.chains, first.table.chains, 'a new pod changes no chain');
  const report = await driver.apply(composeTable({ policy: second.table }));
  t.not(report.mode, 'full');
  t.true((await driver.verify()).inSync);
});

test('a fragment of 1,000 pods x 100 policies loads in one transaction', async (t) => {
  const driver = await driverInNetns(t);
  const snapshot = policySnapshot({
    namespaces: 10,
    podsPerNamespace: 100,
    policiesPerNamespace: 10,
    nodes: 5,
  });
  const { table, problems, stats } = compilePolicies({ ...snapshot, self: 'node-0' });
  t.deepEqual(problems, []);
  t.true(stats.elements > 1000);
  t.is((await driver.apply(composeTable({ policy: table }))).mode, 'full');
  t.true((await driver.verify()).inSync);
});

test('the admin tiers (ANP groups with goto, BANP, admin maps) load through the driver', async (t) => {
  const driver = await driverInNetns(t);
  const everyPod = { namespaceSelector: labels({}) };
  const input = {
    pods: upstreamPods(),
    namespaces: upstreamNamespaces(),
    policies: [policy({ name: 'deny' })],
    adminPolicies: [
      anp({
        name: 'allow-y',
        priority: 10,
        subject: nsSubject('x'),
        ingress: [adminRule('Allow', [{ namespaceSelector: labels({ ns: 'y' }) }])],
        egress: [
          adminRule(
            'Pass',
            [{ ipBlock: { cidr: 'fd00::/8', except: [] } }],
            [{ protocol: 'TCP', port: 80, endPort: 81 }],
          ),
        ],
      }),
      anp({
        name: 'deny-rest',
        priority: 20,
        subject: nsSubject('x', 'a'),
        ingress: [adminRule('Deny', [everyPod], [{ protocol: 'UDP', port: 'serve-81-udp' }])],
      }),
    ],
    baselinePolicy: {
      name: 'default',
      subject: { namespaceSelector: labels({}), podSelector: labels({}) },
      ingress: [adminRule('Deny', [everyPod])],
      egress: [adminRule('Allow', [{ ipBlock: { cidr: '10.0.0.0/8', except: [] } }])],
    },
  };
  const first = compilePolicies({ ...input, self: 'n1' });
  t.deepEqual(first.problems, []);
  t.is((await driver.apply(composeTable({ policy: first.table }))).mode, 'full');
  t.true((await driver.verify()).inSync);
  // A label change moves x/a out of 'deny-rest': applied as an increment.
  const relabelled = input.pods.map((p) =>
    p.namespace === 'x' && p.name === 'a' ? { ...p, labels: { pod: 'a2' } } : p,
  );
  const second = compilePolicies({ ...input, pods: relabelled, self: 'n1' });
  const report = await driver.apply(composeTable({ policy: second.table }));
  t.not(report.mode, 'full');
  t.true((await driver.verify()).inSync);
});
