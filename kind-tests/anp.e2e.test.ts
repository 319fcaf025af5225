// AdminNetworkPolicy and BaselineAdminNetworkPolicy end to end, on the netpol
// suite's model and harness (kind-tests/netpol/: namespaces x, y, z labelled
// `ns: <name>`, pods a, b, c labelled `pod: <name>`, probed as a whole matrix until
// one round matches the truth table). The lab's agents start before the ANP CRDs
// exist (the lab applies only wiremesh's own), so the suite also shows an agent
// picking the resources up once deploy/anp-crds.yaml is applied. Each case creates
// real policy.networking.k8s.io/v1alpha1 objects through the API (strict field
// validation) and deletes them afterwards; they are cluster-scoped, so the suite
// deletes them itself even when a case fails.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { LabDriver } from './lab-driver.ts';
import {
  ALL,
  NetpolHarness,
  networkPolicy,
  nsLabel,
  peer,
  podLabel,
  type Expectation,
  type PortProtocol,
  type TruthTable,
} from './netpol/index.ts';
import { eventually } from './probes.ts';
import { applyManifestFile, DEPLOY_DIR } from '../lab/manifests.ts';

const API = '/apis/policy.networking.k8s.io/v1alpha1';
const STRICT = { query: { fieldValidation: 'Strict' } };
const ON: PortProtocol[] = [
  { protocol: 'TCP', port: 80 },
  { protocol: 'UDP', port: 81 },
  { protocol: 'SCTP', port: 80 },
];
// The agents list the CRDs again with a back-off up to 60 s after finding them
// missing; after that every change is a watch event.
const FIRST_DEADLINE_MS = 90_000;

let driver: LabDriver | undefined;
let harness: NetpolHarness | undefined;
let first = true;

const h = (): NetpolHarness => {
  if (!harness) throw new Error('the netpol harness is not set up');
  return harness;
};

test.before(async () => {
  driver = await LabDriver.open({
    name: 'anp',
    nodes: 3,
    podsPerNode: 0,
    agents: true,
    cni: 'wiremesh',
  });
  await applyManifestFile(driver.kubeconfig, join(DEPLOY_DIR, 'anp-crds.yaml'));
  const shared = Boolean(process.env.WIREMESH_E2E_LAB);
  harness = await NetpolHarness.setUp({
    driver,
    namespaceSuffix: shared ? `-${randomBytes(2).toString('hex')}` : '',
  });
  const api = harness.api;
  for (const plural of ['adminnetworkpolicies', 'baselineadminnetworkpolicies']) {
    await eventually(`${plural} to be served`, async () =>
      api.request('GET', `${API}/${plural}`).then(
        () => true,
        () => false,
      ),
    );
  }
  await harness.expectAllowAll('every prober server answers', 60_000);
});

async function deleteAdminPolicies(): Promise<void> {
  if (!harness) return;
  for (const plural of ['adminnetworkpolicies', 'baselineadminnetworkpolicies']) {
    await harness.api.request('DELETE', `${API}/${plural}`).catch(() => {});
  }
}

test.after.always(async () => {
  try {
    await deleteAdminPolicies();
    if (harness) await harness.tearDown();
  } finally {
    if (driver) await driver.close();
  }
});

test.afterEach.always(async () => {
  await deleteAdminPolicies();
  if (harness) await harness.reset();
});

/** The namespaces selector of a logical namespace (its `ns` label survives a suffix). */
const ns = (logical: string) => ({ matchLabels: nsLabel(logical).matchLabels ?? {} });

async function createAnp(name: string, spec: Record<string, unknown>): Promise<void> {
  await h().api.request(
    'POST',
    `${API}/adminnetworkpolicies`,
    {
      apiVersion: 'policy.networking.k8s.io/v1alpha1',
      kind: 'AdminNetworkPolicy',
      metadata: { name },
      spec,
    },
    STRICT,
  );
}

async function createBanp(spec: Record<string, unknown>, name = 'default'): Promise<void> {
  await h().api.request(
    'POST',
    `${API}/baselineadminnetworkpolicies`,
    {
      apiVersion: 'policy.networking.k8s.io/v1alpha1',
      kind: 'BaselineAdminNetworkPolicy',
      metadata: { name },
      spec,
    },
    STRICT,
  );
}

async function expectTable(t: ExecutionContext, what: string, table: TruthTable): Promise<void> {
  const expectations: Expectation[] = [{ on: ON, table }];
  const v = await h().expectReachability(what, expectations, first ? FIRST_DEADLINE_MS : 30_000);
  first = false;
  t.log(`${what}: matched after ${v.rounds} round(s), ${v.ms} ms`);
  t.pass();
}

test.serial(
  'the apiserver validates the CRDs: priority bounds, actions, the BANP name',
  async (t) => {
    const bad = (p: Promise<unknown>) => t.throwsAsync(p, { message: /422|Invalid/ });
    const subject = { namespaces: ns('x') };
    await bad(createAnp('too-low', { priority: 1001, subject }));
    await bad(
      createAnp('bad-action', {
        priority: 1,
        subject,
        ingress: [{ action: 'Reject', from: [{ namespaces: {} }] }],
      }),
    );
    await bad(
      createAnp('two-subjects', {
        priority: 1,
        subject: { ...subject, pods: { namespaceSelector: {}, podSelector: {} } },
      }),
    );
    await bad(createBanp({ subject, ingress: [{ action: 'Pass', from: [{ namespaces: {} }] }] }));
    await bad(createBanp({ subject }, 'not-default'));
  },
);

test.serial('an ANP Deny overrides a NetworkPolicy that allows everything', async (t) => {
  await h().applyPolicy(
    networkPolicy('allow-all', h().ns('y'), { podSelector: ALL, ingress: [{}] }),
  );
  await createAnp('deny-x-to-y', {
    priority: 10,
    subject: { namespaces: ns('y') },
    ingress: [{ name: 'no-x', action: 'Deny', from: [{ namespaces: ns('x') }] }],
  });
  await expectTable(
    t,
    'ANP deny x -> y over NP allow-all',
    h().table(true).expectPeer('x', 'y', false),
  );
});

test.serial('an ANP Pass hands over to NetworkPolicy, skipping a lower Deny', async (t) => {
  await createAnp('pass-y', {
    priority: 10,
    subject: { namespaces: ns('x') },
    ingress: [{ action: 'Pass', from: [{ namespaces: ns('y') }] }],
  });
  await createAnp('deny-all', {
    priority: 20,
    subject: { namespaces: ns('x') },
    ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
  });
  await h().applyPolicy(
    networkPolicy('from-y-b', h().ns('x'), {
      podSelector: ALL,
      ingress: [{ from: [peer({ namespaces: nsLabel('y'), pods: podLabel('b') })] }],
    }),
  );
  await expectTable(
    t,
    'ANP pass y, deny all; NP admits y/b',
    h().table(true).expectAllIngress('x', false).expectPeer('y/b', 'x', true),
  );
});

test.serial('the BANP denies where no NetworkPolicy selects the pod', async (t) => {
  await createBanp({
    subject: { namespaces: ns('x') },
    ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
  });
  await h().applyPolicy(
    networkPolicy('a-from-y', h().ns('x'), {
      podSelector: podLabel('a'),
      ingress: [{ from: [peer({ namespaces: nsLabel('y') })] }],
    }),
  );
  await expectTable(
    t,
    'BANP deny into x; NP on x/a admits y',
    h().table(true).expectAllIngress('x', false).expectPeer('y', 'x/a', true),
  );
});

test.serial('an ANP Allow overrides the BANP deny', async (t) => {
  await createBanp({
    subject: { namespaces: ns('x') },
    ingress: [{ action: 'Deny', from: [{ namespaces: {} }] }],
  });
  await createAnp('allow-z', {
    priority: 1,
    subject: { namespaces: ns('x') },
    ingress: [{ action: 'Allow', from: [{ namespaces: ns('z') }] }],
  });
  await expectTable(
    t,
    'ANP allow z over BANP deny into x',
    h().table(true).expectAllIngress('x', false).expectPeer('z', 'x', true),
  );
});
