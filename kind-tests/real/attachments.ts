// What the real-node suites read of a node's attachments: the allocations in the
// IPAMBlock objects (as any user would, with kubectl) and the host ends of the pairs
// on a node.
import type { KindDriver } from '../kind-driver.ts';

export interface HeldAddress {
  handle: string;
  node: string;
  address: string;
  namespace: string;
  pod: string;
  containerID: string;
  podUID: string;
}

type AllocationObject = Partial<Record<'namespace' | 'pod' | 'containerID' | 'podUID', string>> & {
  address: string;
};

/** Every allocation of every IPAMBlock, with its block's node. */
export async function allocations(driver: KindDriver): Promise<HeldAddress[]> {
  const blocks = await driver.kubectl.json<{
    items: { spec: { node: string; allocations?: Record<string, AllocationObject> } }[];
  }>(['get', 'ipamblocks.wiremesh.io']);
  return blocks.items.flatMap((b) =>
    Object.entries(b.spec.allocations ?? {}).map(([handle, a]) => ({
      handle,
      node: b.spec.node,
      address: a.address,
      namespace: a.namespace ?? '',
      pod: a.pod ?? '',
      containerID: a.containerID ?? '',
      podUID: a.podUID ?? '',
    })),
  );
}

/** The names of the links in a node's network namespace. */
export async function nodeLinks(driver: KindDriver, node: string): Promise<Set<string>> {
  const res = await driver.execInNode(node, ['ip', '-j', 'link', 'show']);
  return new Set((JSON.parse(res.stdout) as { ifname: string }[]).map((l) => l.ifname));
}
