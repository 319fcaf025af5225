// What a real-node lab writes for containerd, the kubelet and kubeadm, as pure
// functions of the lab's plan (unit-tested; lab/cluster.ts writes and runs them).
// A node here is what a kubeadm user has: containerd with the CRI plugin and runc,
// a kubelet restarted by a supervisor (systemd's job on a real machine), and
// kubeadm's own configuration files. Where the lab differs from a real machine,
// the reason is written beside it; none of it reaches what users install.
import { stringify } from 'yaml';
import type { LabPlan, NodePlan } from './plan.ts';
import { SERVICE_CIDR } from './controlplane.ts';

export const KUBERNETES_VERSION = 'v1.33.13';
export const PAUSE_IMAGE = 'registry.k8s.io/pause:3.10';
export const CONTAINERD_SOCKET = '/run/containerd/containerd.sock';
/** The kubelet's DNS configuration for pods with dnsPolicy Default (CoreDNS's upstream). */
export const NODE_RESOLV_CONF = '/run/wiremesh-lab-resolv.conf';

/**
 * Directories each real node has to itself: bound over the host's paths in the
 * node's mount namespace, so kubeadm, the kubelet and containerd find a machine
 * of their own (/run and /tmp are private tmpfs mounts instead).
 */
export const REAL_NODE_PRIVATE_DIRS = [
  '/etc/kubernetes',
  '/etc/containerd',
  '/etc/cni/net.d',
  '/opt/cni/bin',
  '/var/lib/kubelet',
  '/var/lib/etcd',
  '/var/lib/containerd',
  '/var/lib/cni',
  '/var/lib/wiremesh',
  '/var/log/pods',
  '/var/log/containers',
] as const;

/**
 * Host-wide sysctls the kubelet sets at start (its "kernel tunables"). A node of
 * the lab is a namespace on a shared machine, so the kubelet gets files of its
 * own over them: it may read and write them without touching the host.
 */
export const KUBELET_HOST_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
] as const;

/** The node's cgroup parent in every v1 hierarchy: one per node, so kubelets never meet. */
export function nodeCgroupRoot(plan: LabPlan, node: NodePlan): string {
  return `/wiremesh-lab-${plan.name}-${node.index}`;
}

/** Where the nodes find the lab's resolver: a lab address nobody answers, so no query leaves. */
export function nodeResolvConf(plan: LabPlan): string {
  return `# wiremesh lab: pods' upstream DNS is an unused underlay address; nothing leaves the machine\nnameserver ${plan.gatewayIP.replace(/\.1$/, '.254')}\n`;
}

export function containerdConfig(runcBinary: string): string {
  // The CRI plugin's settings that matter here; everything else is containerd's default.
  return `# containerd of a wiremesh lab node (containerd 1.6 from Debian).
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "${CONTAINERD_SOCKET}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # Root on these test machines lacks CAP_SYS_RESOURCE: containerd keeps a container's
  # oom_score_adj at or above its own instead of asking the kernel for less.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # A test-environment shim in front of runc (lab/runc-shim): it drops
        # CAP_SYS_RESOURCE from privileged containers, which root here cannot grant.
        BinaryName = "${runcBinary}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
`;
}

/**
 * The kubelet as systemd runs it on a kubeadm machine: started once kubeadm has
 * written its configuration, with kubeadm's flags, and started again whenever it
 * exits (kubeadm restarts it by killing it).
 */
export function kubeletSupervisor(kubelet: string): string {
  return [
    'while :; do',
    '  if [ -f /var/lib/kubelet/config.yaml ]; then',
    '    KUBELET_KUBEADM_ARGS=',
    '    [ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env',
    // Word splitting of kubeadm's flags is what systemd's unit does too.
    `    ${kubelet} --config=/var/lib/kubelet/config.yaml --kubeconfig=/etc/kubernetes/kubelet.conf --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf $KUBELET_KUBEADM_ARGS`,
    '  fi',
    '  sleep 1',
    'done',
  ].join('\n');
}

function nodeRegistration(plan: LabPlan, node: NodePlan): object {
  return {
    name: node.name,
    criSocket: `unix://${CONTAINERD_SOCKET}`,
    // Pods run on the control-plane node too: the lab's nodes are few.
    taints: [],
    kubeletExtraArgs: [
      { name: 'node-ip', value: node.underlayIP },
      { name: 'cgroup-root', value: nodeCgroupRoot(plan, node) },
    ],
    // The machine checks (swap, kernel modules, systemd, ports of other labs) do not
    // describe a node that is a namespace; everything kubeadm then does is real.
    ignorePreflightErrors: ['all'],
  };
}

const KUBELET_CONFIGURATION = {
  apiVersion: 'kubelet.config.k8s.io/v1beta1',
  kind: 'KubeletConfiguration',
  cgroupDriver: 'cgroupfs',
  failSwapOn: false,
  resolvConf: NODE_RESOLV_CONF,
  // Under /var/lib/kubelet (the node's own), not the host's /usr/libexec.
  volumePluginDir: '/var/lib/kubelet/volumeplugins',
  // Many labs share one disk: neither image garbage collection nor disk pressure
  // may remove the images that were imported (there is no registry to pull them again).
  imageGCHighThresholdPercent: 100,
  imageGCLowThresholdPercent: 99,
  evictionHard: {
    'memory.available': '100Mi',
    'nodefs.available': '1%',
    'imagefs.available': '1%',
    'nodefs.inodesFree': '1%',
  },
  serializeImagePulls: false,
};

export function kubeadmInitConfig(plan: LabPlan, token: string): string {
  const [first] = plan.nodes;
  if (!first) throw new Error('a lab needs at least one node');
  const docs: object[] = [
    {
      apiVersion: 'kubeadm.k8s.io/v1beta4',
      kind: 'InitConfiguration',
      bootstrapTokens: [{ token, ttl: '24h0m0s', usages: ['signing', 'authentication'] }],
      localAPIEndpoint: { advertiseAddress: first.underlayIP, bindPort: 6443 },
      nodeRegistration: nodeRegistration(plan, first),
    },
    {
      apiVersion: 'kubeadm.k8s.io/v1beta4',
      kind: 'ClusterConfiguration',
      clusterName: plan.name,
      kubernetesVersion: KUBERNETES_VERSION,
      controlPlaneEndpoint: `${first.underlayIP}:6443`,
      networking: { serviceSubnet: SERVICE_CIDR, dnsDomain: 'cluster.local' },
      apiServer: {
        // The kubelets by address: a node name looked up in the machine's DNS would
        // send a query off the machine.
        extraArgs: [{ name: 'kubelet-preferred-address-types', value: 'InternalIP' }],
      },
      controllerManager: {
        extraArgs: [{ name: 'flex-volume-plugin-dir', value: '/var/lib/kubelet/volumeplugins' }],
      },
    },
    KUBELET_CONFIGURATION,
    {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'nftables',
      // The conntrack table's size and timeouts are host-wide settings: leave them.
      conntrack: {
        maxPerCore: 0,
        min: 0,
        tcpEstablishedTimeout: '0s',
        tcpCloseWaitTimeout: '0s',
      },
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

export function kubeadmJoinConfig(
  plan: LabPlan,
  node: NodePlan,
  token: string,
  caCertHash: string,
): string {
  const [first] = plan.nodes;
  if (!first) throw new Error('a lab needs at least one node');
  return stringify({
    apiVersion: 'kubeadm.k8s.io/v1beta4',
    kind: 'JoinConfiguration',
    discovery: {
      bootstrapToken: {
        apiServerEndpoint: `${first.underlayIP}:6443`,
        token,
        caCertHashes: [caCertHash],
      },
    },
    nodeRegistration: nodeRegistration(plan, node),
  });
}

/** A bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`) from random bytes. */
export function bootstrapToken(random: Uint8Array): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  if (random.length < 22) throw new Error('bootstrapToken needs 22 random bytes');
  const chars = [...random.slice(0, 22)].map((b) => alphabet[b % alphabet.length]).join('');
  return `${chars.slice(0, 6)}.${chars.slice(6)}`;
}
