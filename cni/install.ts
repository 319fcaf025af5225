// `wiremesh install-cni`: what the DaemonSet's init container runs on every node.
// It puts the relay binary in the CNI bin directory as `wiremesh` and writes the
// conflist `10-wiremesh.conflist`, both atomically (write aside, fsync, rename), so
// a container runtime never sees half a binary or half a configuration.
//
// The conflist's cniVersion is 1.0.0, not the 1.1.0 the plugin speaks best: the
// runtime picks the version of every request from it, and the runtimes of current
// distributions (containerd 1.6 and podman 4 on Debian 12, libcni before 1.2) know
// results up to 1.0.0 only and refuse a 1.1.0 one ("unsupported CNI result version").
// The agent answers each request in the version its config asks for (0.3.0 to 1.1.0,
// cni/result.ts). `cniVersions` (spec 1.1) offers 1.1.0 besides to runtimes that read
// it (libcni 1.2 and later pick the highest they know; older ones ignore the key), so
// they get GC and STATUS; but only without chained plugins, whose binaries are the
// node's own and may predate 1.1.0, and would fail every pod's ADD if asked in it.
//
// portmap (hostPort) and bandwidth (the kubernetes.io/ingress-bandwidth and
// egress-bandwidth annotations) are chained by default, as a kubelet's pod spec
// expects them to work. A node's own binaries of them are kept (kubeadm nodes have
// them from kubernetes-cni, and other conflists may rely on their version); a node
// without them gets the image's copies (`pluginsDir`), and a node where neither
// exists fails the install, naming the plugin, rather than every pod's ADD.
import { access, constants, copyFile, open, rename, chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** The conflist's cniVersion: what runtimes with libcni before 1.2 accept results in. */
export const CONFLIST_VERSION = '1.0.0';

export type ChainedPlugin = 'portmap' | 'bandwidth';

/** What the installed conflist chains after wiremesh unless told otherwise. */
export const DEFAULT_CHAIN: readonly ChainedPlugin[] = ['portmap', 'bandwidth'];

export interface InstallOptions {
  relay: string;
  binDir: string;
  confDir: string;
  /** Reference plugins chained after wiremesh (in binDir, or copied there from pluginsDir). */
  chain: readonly ChainedPlugin[];
  /** Where copies of the chained plugins are for nodes that have none (the image's). */
  pluginsDir?: string;
  mtu?: number;
}

export function wiremeshConflist(options: Pick<InstallOptions, 'chain' | 'mtu'>): object {
  const plugins: object[] = [{ type: 'wiremesh', ...(options.mtu ? { mtu: options.mtu } : {}) }];
  if (options.chain.includes('portmap'))
    plugins.push({ type: 'portmap', snat: true, capabilities: { portMappings: true } });
  if (options.chain.includes('bandwidth'))
    plugins.push({ type: 'bandwidth', capabilities: { bandwidth: true } });
  const versions = options.chain.length === 0 ? { cniVersions: ['1.0.0', '1.1.0'] } : {};
  return { cniVersion: CONFLIST_VERSION, ...versions, name: 'wiremesh', plugins };
}

async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** Copy a binary into place atomically (aside, 0755, fsync, rename). */
async function installBinary(from: string, to: string): Promise<void> {
  const tmp = `${to}.tmp`;
  await rm(tmp, { force: true });
  await copyFile(from, tmp);
  await chmod(tmp, 0o755);
  const fh = await open(tmp, 'r');
  await fh.sync();
  await fh.close();
  await rename(tmp, to);
}

export async function installCni(
  options: InstallOptions,
): Promise<{ binary: string; conflist: string; plugins: string[] }> {
  await mkdir(options.binDir, { recursive: true });
  await mkdir(options.confDir, { recursive: true });
  const plugins: string[] = [];
  for (const plugin of options.chain) {
    const target = join(options.binDir, plugin);
    if (await isExecutable(target)) continue;
    const ours = options.pluginsDir ? join(options.pluginsDir, plugin) : undefined;
    if (!ours || !(await isExecutable(ours)))
      throw new Error(
        `the ${plugin} CNI plugin is chained but is neither in ${options.binDir} nor in ${options.pluginsDir ?? '(no plugins directory given)'}`,
      );
    await installBinary(ours, target);
    plugins.push(target);
  }
  const binary = join(options.binDir, 'wiremesh');
  await installBinary(options.relay, binary);
  const conflist = join(options.confDir, '10-wiremesh.conflist');
  await writeAtomic(conflist, JSON.stringify(wiremeshConflist(options), null, 2) + '\n', 0o644);
  return { binary, conflist, plugins };
}
