import test from 'ava';
import { parseAllDocuments, parse } from 'yaml';
import { planLab } from './plan.ts';
import {
  bootstrapToken,
  containerdConfig,
  kubeadmInitConfig,
  kubeadmJoinConfig,
  kubeletSupervisor,
  nodeCgroupRoot,
  nodeResolvConf,
} from './kubeadm.ts';

const plan = planLab('lab', 2, 3);
const token = 'abcdef.0123456789abcdef';

test('init: the first node advertises its underlay address, services in the lab range', (t) => {
  const docs = parseAllDocuments(kubeadmInitConfig(plan, token)).map(
    (d) => d.toJS() as Record<string, unknown> & { kind: string },
  );
  t.deepEqual(
    docs.map((d) => d.kind),
    ['InitConfiguration', 'ClusterConfiguration', 'KubeletConfiguration', 'KubeProxyConfiguration'],
  );
  const [init, cluster, kubelet, proxy] = docs as unknown as [
    {
      localAPIEndpoint: { advertiseAddress: string };
      nodeRegistration: {
        name: string;
        kubeletExtraArgs: { name: string; value: string }[];
        taints: unknown[];
      };
      bootstrapTokens: { token: string }[];
    },
    {
      controlPlaneEndpoint: string;
      networking: { serviceSubnet: string };
      apiServer: { extraArgs: { name: string; value: string }[] };
    },
    { cgroupDriver: string; resolvConf: string },
    { mode: string; conntrack: { maxPerCore: number } },
  ];
  t.is(init.localAPIEndpoint.advertiseAddress, '198.18.2.11');
  t.is(init.nodeRegistration.name, 'lab-node1');
  t.deepEqual(init.nodeRegistration.taints, []);
  t.is(init.bootstrapTokens[0]?.token, token);
  t.deepEqual(init.nodeRegistration.kubeletExtraArgs, [
    { name: 'node-ip', value: '198.18.2.11' },
    { name: 'cgroup-root', value: '/wiremesh-lab-lab-1' },
  ]);
  t.is(cluster.controlPlaneEndpoint, '198.18.2.11:6443');
  t.is(cluster.networking.serviceSubnet, '100.96.0.0/12');
  t.true(
    cluster.apiServer.extraArgs.some(
      (a) => a.name === 'kubelet-preferred-address-types' && a.value === 'InternalIP',
    ),
  );
  t.is(kubelet.cgroupDriver, 'cgroupfs');
  t.is(proxy.mode, 'nftables');
  // Zero keeps kube-proxy off the host-wide conntrack table size.
  t.is(proxy.conntrack.maxPerCore, 0);
});

test('join: each node registers under its own name, address and cgroup, pinned to the CA', (t) => {
  const node = plan.nodes[2]!;
  const join = parse(kubeadmJoinConfig(plan, node, token, 'sha256:00ff')) as {
    discovery: { bootstrapToken: { apiServerEndpoint: string; caCertHashes: string[] } };
    nodeRegistration: { name: string; kubeletExtraArgs: { name: string; value: string }[] };
  };
  t.is(join.discovery.bootstrapToken.apiServerEndpoint, '198.18.2.11:6443');
  t.deepEqual(join.discovery.bootstrapToken.caCertHashes, ['sha256:00ff']);
  t.is(join.nodeRegistration.name, 'lab-node3');
  t.deepEqual(join.nodeRegistration.kubeletExtraArgs, [
    { name: 'node-ip', value: '198.18.2.13' },
    { name: 'cgroup-root', value: nodeCgroupRoot(plan, node) },
  ]);
  t.not(nodeCgroupRoot(plan, node), nodeCgroupRoot(plan, plan.nodes[0]!));
});

test('containerd runs runc through the given binary, with the lab CNI directories', (t) => {
  const toml = containerdConfig('/cache/bin/wiremesh-runc-shim');
  t.regex(toml, /BinaryName = "\/cache\/bin\/wiremesh-runc-shim"/);
  t.regex(toml, /SystemdCgroup = false/);
  t.regex(toml, /sandbox_image = "registry.k8s.io\/pause:3.10"/);
  t.regex(toml, /conf_dir = "\/etc\/cni\/net.d"/);
});

test('the kubelet supervisor waits for kubeadm and restarts the kubelet', (t) => {
  const script = kubeletSupervisor('/k/kubelet');
  t.regex(script, /while :; do/);
  t.regex(script, /-f \/var\/lib\/kubelet\/config.yaml/);
  t.regex(
    script,
    /\/k\/kubelet --config=\/var\/lib\/kubelet\/config.yaml .*\$KUBELET_KUBEADM_ARGS/,
  );
});

test("bootstrap tokens have kubeadm's form", (t) => {
  const tok = bootstrapToken(new Uint8Array(22).map((_, i) => i * 37));
  t.regex(tok, /^[a-z0-9]{6}\.[a-z0-9]{16}$/);
  t.throws(() => bootstrapToken(new Uint8Array(4)));
});

test("the nodes resolve through an unused lab address, never the machine's resolver", (t) => {
  t.is(
    nodeResolvConf(plan)
      .split('\n')
      .find((l) => l.startsWith('nameserver')),
    'nameserver 198.18.2.254',
  );
});
