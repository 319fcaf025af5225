// The install manifests against the lab's real kube-apiserver: every object of the
// deploy/ parts passes a server-side dry run, then a real apply; the combined
// deploy/wiremesh.yaml goes through a real kubectl (dry run, apply, diff, and one
// `kubectl apply` on a cluster without wiremesh, as a user runs it, through the kind
// script's own apply step); the default pool, which the manifest leaves to the
// agents, is created with the agent's own ServiceAccount as racing agents do; and
// the kind driver's kubectl steps that need no kind node (apply, wait, list nodes
// and pods, namespaces) run against the same apiserver.
// Lab-only: it tests the manifests and the kind script's kubectl steps against
// the lab's apiserver, which is what stands in for kind here.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import {
  KubeConfig,
  KubernetesObjectApi,
  loadAllYaml,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { LabDriver } from './lab-driver.ts';
import { Kubectl, probePod, nodeProbeDaemonSet, E2E_NAMESPACE } from './kind-driver.ts';
import { DEPLOY_DIR, serviceAccountToken, waitForResource } from '../lab/manifests.ts';
import { kubeconfigYaml, labPki } from '../lab/pki.ts';
import { kubeClient as labCoreClient } from '../lab/kube.ts';
import { COMBINED_MANIFEST, MANIFEST_PARTS } from '../install/index.ts';
import { DEFAULT_AGENT_SETTINGS } from '../install/settings.ts';
import { ensureDefaultPools } from '../agent/defaultpool.ts';
import { kubeClientFromKubeconfig } from '../kube/index.ts';
import { defaultRunner, systemEnv, toolPath } from '../sys/index.ts';

const RUN_SH = new URL('./kind/run.sh', import.meta.url).pathname;
const COMBINED = join(DEPLOY_DIR, COMBINED_MANIFEST);

let driver: LabDriver | undefined;
let client: KubernetesObjectApi;
let kubectl: Kubectl;

test.before(async () => {
  // The real kubectl of the same release as the apiserver, built by hack/build-tools.sh.
  const binary = toolPath('kubectl');
  driver = await LabDriver.fresh({ name: 'e2edepl', nodes: 2, podsPerNode: 0, agents: false });
  const kc = new KubeConfig();
  kc.loadFromFile(driver.lab.state.kubeconfig);
  client = KubernetesObjectApi.makeApiClient(kc);
  kubectl = new Kubectl(driver.lab.state.kubeconfig, binary);
});

test.after.always(async () => {
  if (driver) await driver.close();
});

/**
 * The lab runs no kube-controller-manager, so a deleted namespace would stay
 * Terminating for ever. Do what its namespace controller does once the manifest's
 * own objects in it are gone: clear the finalizers through the finalize subresource.
 */
async function finalizeNamespaces(objs: readonly KubernetesObject[]): Promise<void> {
  for (const o of objs) {
    const name = o.metadata?.name;
    if (o.kind !== 'Namespace' || !name) continue;
    const got = await kubectl.run(['get', 'namespace', name, '-o', 'json'], {
      allowFailure: true,
    });
    if (got.code !== 0) continue;
    const ns = JSON.parse(got.stdout) as { spec?: { finalizers?: string[] } };
    ns.spec = { ...ns.spec, finalizers: [] };
    await kubectl.run(['replace', '--raw', `/api/v1/namespaces/${name}/finalize`, '-f', '-'], {
      input: JSON.stringify(ns),
    });
  }
}

/** deploy/'s manifests that are not parts of the combined one (full paths, sorted). */
function extraManifests(): string[] {
  return readdirSync(DEPLOY_DIR)
    .filter((f) => f.endsWith('.yaml'))
    .filter((f) => f !== COMBINED_MANIFEST && !(MANIFEST_PARTS as readonly string[]).includes(f))
    .sort()
    .map((f) => join(DEPLOY_DIR, f));
}

function objects(path: string): KubernetesObject[] {
  return (loadAllYaml(readFileSync(path, 'utf8')) as (KubernetesObject | null)[]).filter(
    (o): o is KubernetesObject => o !== null,
  );
}

test.serial('every manifest part is accepted by a server-side dry run, then applied', async (t) => {
  // The parts of the combined manifest first, in its order; any other manifest
  // (e.g. optional CRDs) after them: every file of deploy/ is covered.
  const extra = extraManifests().map((f) => basename(f));
  for (const file of [...MANIFEST_PARTS, ...extra]) {
    const objs = objects(join(DEPLOY_DIR, file));
    t.true(objs.length > 0, file);
    if (objs.some((o) => o.apiVersion?.startsWith('wiremesh.io/'))) {
      await waitForResource(driver?.lab.state.kubeconfig ?? '', {
        group: 'wiremesh.io',
        version: 'v1alpha1',
        plural: 'ippools',
      });
    }
    for (const obj of objs) {
      const what = `${file}: ${obj.kind}/${obj.metadata?.name}`;
      await t.notThrowsAsync(client.create(obj, undefined, 'All'), `${what} (dry run)`);
      await t.notThrowsAsync(client.create(obj), `${what} (apply)`);
    }
  }
  const ds = await client.read({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'wiremesh-agent', namespace: 'kube-system' },
  });
  t.is(ds.metadata?.name, 'wiremesh-agent');
});

test.serial(
  'deploy/wiremesh.yaml through kubectl: server dry run, apply, and no diff from the parts',
  async (t) => {
    const dry = await kubectl.run(['apply', '--dry-run=server', '-f', COMBINED]);
    t.regex(
      dry.stdout,
      /daemonset\.apps\/wiremesh-agent (configured|unchanged) \(server dry run\)/,
    );
    const applied = await kubectl.apply(COMBINED);
    t.is(applied.length, objects(COMBINED).length, applied.join('\n'));
    // The combined manifest holds what the parts hold: the server sees no difference.
    const diff = await kubectl.run(['diff', '-f', COMBINED], { allowFailure: true });
    t.is(diff.code, 0, diff.stdout + diff.stderr);
  },
);

test.serial(
  "the default pool: agents racing with the agent's ServiceAccount create it once",
  async (t) => {
    const lab = driver?.lab;
    if (!lab) throw new Error('no lab');
    await kubectl.wait(['crd/ippools.wiremesh.io'], 'condition=established');
    // The first test applied deploy/default-pool.yaml too: a cluster without a pool.
    await kubectl.run(['delete', 'ippools.wiremesh.io', 'default-ipv4', '--ignore-not-found']);
    const token = await serviceAccountToken(
      labCoreClient(lab.state.kubeconfig),
      'kube-system',
      'wiremesh-agent',
      600,
    );
    const kubeconfig = await kubeconfigYaml(
      lab.state.apiserverURL,
      labPki(join(lab.plan.dataDir, 'pki')).caCert,
      { name: 'wiremesh-agent', token },
    );
    const cidrs = DEFAULT_AGENT_SETTINGS.defaultPoolCIDRs;
    // What each agent does after its pool watch listed none.
    // Before the uninstall test below: deleting every binding whose paramKind is
    // ConfigMap stops the apiserver's ConfigMap parameter informer for good in
    // Kubernetes releases with that upstream bug, so after a reinstall this
    // policy denies with "no params found" until the kube-apiserver restarts.
    const outcomes = await Promise.all(
      (driver?.nodeNames() ?? []).map(() =>
        ensureDefaultPools(kubeClientFromKubeconfig(kubeconfig), cidrs, () => 0),
      ),
    );
    t.deepEqual(
      outcomes.flatMap((o) => o.created),
      ['default-ipv4'],
    );
    t.is(outcomes.flatMap((o) => o.existed).length, outcomes.length - 1);
    const pool = await kubectl.json<{ spec: Record<string, unknown> }>([
      'get',
      'ippools.wiremesh.io',
      'default-ipv4',
    ]);
    t.like(pool.spec, {
      cidr: cidrs[0],
      blockSize: 26,
      encryption: 'WireGuard',
      encryptionMode: 'Required',
    });
  },
);

test.serial(
  "one `kubectl apply -f deploy/wiremesh.yaml` on a cluster without wiremesh: the kind script's apply step",
  async (t) => {
    // Everything the first test applied: the combined manifest and the optional files
    // outside it (the AdminNetworkPolicy CRDs), so the cluster has no wiremesh left.
    for (const file of [COMBINED, ...extraManifests()]) {
      await kubectl.run(['delete', '-f', file, '--ignore-not-found', '--wait=false'], {
        timeoutMs: 120_000,
      });
      await finalizeNamespaces(objects(file));
      await kubectl.run(['delete', '-f', file, '--ignore-not-found', '--wait=true'], {
        timeoutMs: 120_000,
      });
    }
    t.is((await kubectl.run(['get', 'crd', '-o', 'name'])).stdout.trim(), '');
    const res = await defaultRunner.run([RUN_SH, 'apply'], {
      env: systemEnv({
        KUBECTL: toolPath('kubectl'),
        KUBECONFIG: driver?.lab.state.kubeconfig ?? '',
      }),
      timeoutMs: 180_000,
      allowFailure: true,
    });
    // kind-tests/kind/run.sh's apply step must not look for the default pool: on a
    // real cluster the agents make it once they run (the lab here runs none).
    t.is(res.code, 0, res.stderr);
    // The CRDs in one apply, and nothing that needs them established first.
    t.regex(
      res.stdout,
      /customresourcedefinition\.apiextensions\.k8s\.io\/ippools\.wiremesh\.io created/,
    );
    // No custom resource in the manifest: the agents make the default pool.
    t.notRegex(res.stdout, /ippool\.wiremesh\.io\//);
    t.regex(res.stdout, /configmap\/wiremesh-config created/);
    for (const node of driver?.nodeNames() ?? [])
      t.regex(res.stdout, new RegExp(`^${node}\\s`, 'm'));
  },
);

test.serial("the kind driver's kubectl steps that need no kind node", async (t) => {
  t.deepEqual(await kubectl.nodeNames(), [...(driver?.nodeNames() ?? [])].sort());
  await kubectl.wait(
    ['crd/ippools.wiremesh.io', 'crd/ipamblocks.wiremesh.io'],
    'condition=established',
  );
  await kubectl.ensureNamespace(E2E_NAMESPACE);
  await kubectl.ensureNamespace(E2E_NAMESPACE); // already there: not an error
  // What the controller-manager does in a real cluster (the lab runs none).
  await kubectl.run(['create', 'serviceaccount', 'default', '-n', E2E_NAMESPACE]);
  const [node] = driver?.nodeNames() ?? [];
  if (!node) throw new Error('no node');
  // The objects the driver creates are valid for the apiserver (no kubelet runs them here).
  await kubectl.apply('-', JSON.stringify(nodeProbeDaemonSet(E2E_NAMESPACE)));
  await kubectl.apply('-', JSON.stringify(probePod(node, E2E_NAMESPACE, 'probe-a', { role: 'a' })));
  const pods = await kubectl.pods(E2E_NAMESPACE, 'role=a');
  t.deepEqual(
    pods.map((p) => [p.metadata.name, p.spec.nodeName]),
    [['probe-a', node]],
  );
  await kubectl.wait(['pod/probe-a'], 'create', { namespace: E2E_NAMESPACE, timeoutSeconds: 10 });
  // The lab runs no namespace controller: deletion starts and stays Terminating.
  await kubectl.deleteNamespace(E2E_NAMESPACE, false);
  const ns = await kubectl.json<{ status: { phase: string } }>(['get', 'namespace', E2E_NAMESPACE]);
  t.is(ns.status.phase, 'Terminating');
});
