// The install manifests against the lab's real kube-apiserver: every object of
// deploy/*.yaml passes a server-side dry run, then a real apply.
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  KubeConfig,
  KubernetesObjectApi,
  loadAllYaml,
  type KubernetesObject,
} from '@kubernetes/client-node';
import { LabDriver } from './lab-driver.ts';
import { DEPLOY_DIR, waitForResource } from '../lab/manifests.ts';

let driver: LabDriver | undefined;
let client: KubernetesObjectApi;

test.before(async () => {
  driver = await LabDriver.fresh({ name: 'e2edepl', nodes: 1, podsPerNode: 0, agents: false });
  const kc = new KubeConfig();
  kc.loadFromFile(driver.lab.state.kubeconfig);
  client = KubernetesObjectApi.makeApiClient(kc);
});

test.after.always(async () => {
  if (driver) await driver.close();
});

const order = ['crds.yaml', 'rbac.yaml', 'default-pool.yaml', 'daemonset.yaml'];

test.serial('every manifest is accepted by a server-side dry run, then applied', async (t) => {
  const files = readdirSync(DEPLOY_DIR).filter((f) => f.endsWith('.yaml'));
  t.deepEqual([...files].sort(), [...order].sort(), 'every manifest in deploy/ is covered');
  for (const file of order) {
    const objs = (
      loadAllYaml(readFileSync(join(DEPLOY_DIR, file), 'utf8')) as (KubernetesObject | null)[]
    ).filter((o): o is KubernetesObject => o !== null);
    t.true(objs.length > 0, file);
    if (file === 'default-pool.yaml') {
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
