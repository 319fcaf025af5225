// A small cluster for explain's and graph's tests: the upstream x/y/z pods of
// policy/fixtures.ts on nodes n1 and n2, one host block per pod address, pools
// `default` (IPv4) and `v6`, Required WireGuard unless told otherwise.
import type { ClusterSnapshot } from './snapshot.ts';
import { upstreamNamespaces, upstreamPods } from '../policy/fixtures.ts';
import type { MeshNode } from '../agent/meshnode.ts';
import type { IpPool, IpamBlock } from '../ipam/index.ts';
import type { AdminNetworkPolicy, NetworkPolicy } from '../policy/index.ts';

const KEY = (c: string) => `${c.repeat(42)}A=`;

function node(name: string, ip: string, key: string | null): MeshNode {
  return {
    name,
    uid: name,
    createdAt: name === 'n1' ? 1 : 2,
    internalIPs: [ip],
    publicKey: key,
    endpoint: key ? `${ip}:51825` : null,
    endpointOverride: null,
    persistentKeepalive: 0,
    hostEncryption: false,
    problems: [],
  };
}

function pool(name: string, cidr: string, p: Partial<IpPool> = {}): IpPool {
  return {
    name,
    uid: name,
    createdAt: 0,
    cidr,
    family: cidr.includes(':') ? 6 : 4,
    blockSize: cidr.includes(':') ? 122 : 26,
    nodeSelector: { matchLabels: {}, matchExpressions: [] },
    encryption: 'WireGuard',
    encryptionMode: 'Required',
    encapsulation: 'None',
    natOutgoing: false,
    disabled: false,
    ...p,
  };
}

export function snapshot(
  policies: NetworkPolicy[],
  adminPolicies: AdminNetworkPolicy[] = [],
  opts: { n2Key?: boolean; pool?: Partial<IpPool> } = {},
): ClusterSnapshot {
  const pods = upstreamPods();
  // One host block per pod address: the fixture's addresses mix the two nodes in a /24.
  const blocks: IpamBlock[] = pods.flatMap((p) =>
    p.ips.map((ip) => ({
      name: ip,
      cidr: ip.includes(':') ? `${ip}/128` : `${ip}/32`,
      family: ip.includes(':') ? 6 : 4,
      pool: ip.includes(':') ? 'v6' : 'default',
      node: p.node,
      allocations: new Map(),
      resourceVersion: '',
      uid: ip,
      problems: [],
    })),
  );
  return {
    nodes: [
      node('n1', '198.18.9.11', KEY('B')),
      node('n2', '198.18.9.12', opts.n2Key === false ? null : KEY('C')),
    ],
    pools: [pool('default', '100.64.0.0/16', opts.pool), pool('v6', 'fd00:64::/32', opts.pool)],
    blocks,
    refusedBlocks: [],
    peers: [],
    pods,
    namespaces: upstreamNamespaces(),
    policies,
    adminPolicies,
    baselinePolicy: null,
  };
}
