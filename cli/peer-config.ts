// `wiremesh peer-config --peer NAME`: the wg-quick configuration for a Peer object
// (a WireGuard peer outside Kubernetes), from the cluster's Nodes, IPAMBlocks and
// settings; multicluster/peerconfig.ts renders it. The peer's private key is never
// in the cluster: the output has a placeholder, or the key from --private-key-file
// (a file of the user's, checked against the Peer's public key, never logged).
import { parseArgs } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import type { V1Node } from '@kubernetes/client-node';
import { kubeClient, KubeApiError } from '../kube/index.ts';
import { meshNodeFromK8s } from '../agent/meshnode.ts';
import { assignTunnelAddresses } from '../agent/plan.ts';
import { ipamBlockFromK8s } from '../ipam/k8s.ts';
import { parsePrivateKey } from '../crypto/keys.ts';
import { DEFAULT_AGENT_SETTINGS } from '../install/settings.ts';
import { peerFromK8s } from '../multicluster/k8s.ts';
import { renderPeerConfig } from '../multicluster/peerconfig.ts';
import { PEER_PATH } from '../multicluster/types.ts';

const USAGE =
  'usage: wiremesh peer-config --peer NAME [--kubeconfig FILE] [--private-key-file FILE] [--tunnel-cidr CIDR]';

export async function runPeerConfig(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      peer: { type: 'string' },
      kubeconfig: { type: 'string', default: process.env.KUBECONFIG },
      'private-key-file': { type: 'string' },
      'tunnel-cidr': { type: 'string' },
    },
  });
  if (!values.peer) throw new Error(USAGE);
  const home = `${process.env.HOME ?? '/root'}/.kube/config`;
  const kube = kubeClient(values.kubeconfig ?? (existsSync(home) ? home : undefined));

  let raw: unknown;
  try {
    raw = await kube.request('GET', `${PEER_PATH}/${encodeURIComponent(values.peer)}`);
  } catch (e) {
    if (e instanceof KubeApiError && e.status === 404)
      throw new Error(`no Peer named ${values.peer}`, { cause: e });
    throw e;
  }
  const { peer, problems } = peerFromK8s(raw);
  if (!peer) {
    throw new Error(`Peer ${values.peer} is refused: ${problems.map((p) => p.message).join('; ')}`);
  }

  let privateKey: string | undefined;
  if (values['private-key-file']) {
    const parsed = parsePrivateKey(readFileSync(values['private-key-file'], 'utf8').trim());
    if (!parsed.ok)
      throw new Error(`${values['private-key-file']}: the private key ${parsed.reason}`);
    privateKey = parsed.key;
  }

  const nodes = (await kube.request<{ items: V1Node[] }>('GET', '/api/v1/nodes')).items.map(
    meshNodeFromK8s,
  );
  const blockItems = (
    await kube.request<{ items: unknown[] }>('GET', '/apis/wiremesh.io/v1alpha1/ipamblocks')
  ).items;
  const blocks = new Map<string, string[]>();
  for (const item of blockItems) {
    const { block } = ipamBlockFromK8s(item);
    if (block) blocks.set(block.node, [...(blocks.get(block.node) ?? []), block.cidr]);
  }
  const tunnelCIDR = values['tunnel-cidr'] ?? (await configuredTunnelCidr(kube));
  const config = renderPeerConfig({
    peer,
    nodes,
    blocks,
    tunnelAddresses: assignTunnelAddresses(nodes, tunnelCIDR),
    ...(privateKey ? { privateKey } : {}),
    source: kube.server,
  });
  process.stdout.write(config);
  return 0;
}

/** The agents' tunnel range: the wiremesh-config ConfigMap's, else the default. */
async function configuredTunnelCidr(kube: ReturnType<typeof kubeClient>): Promise<string> {
  try {
    const cm = await kube.request<{ data?: Record<string, string> }>(
      'GET',
      '/api/v1/namespaces/kube-system/configmaps/wiremesh-config',
    );
    return cm.data?.['tunnel-cidr']?.trim() || DEFAULT_AGENT_SETTINGS.tunnelCIDR;
  } catch (e) {
    if (e instanceof KubeApiError && (e.status === 404 || e.status === 403))
      return DEFAULT_AGENT_SETTINGS.tunnelCIDR;
    throw e;
  }
}
