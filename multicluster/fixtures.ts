// Test fixtures for multicluster: valid keys, remote nodes, pools and blocks built
// the way the boundary would build them, so planner tests read as tables.
import { generateKeyPair } from '../crypto/keys.ts';
import type { MeshNode } from '../agent/meshnode.ts';
import type { IpPool, IpamBlock } from '../ipam/types.ts';
import { blockName } from '../ipam/cidr.ts';
import type { ExternalPeer, RemoteClusterSnapshot } from './types.ts';

/** A valid public key, the same for the same seed. */
export function testKey(seed: number): string {
  return generateKeyPair(() => new Uint8Array(32).fill(seed)).publicKey;
}

export function remoteNode(name: string, seed: number, extra: Partial<MeshNode> = {}): MeshNode {
  return {
    name,
    uid: `uid-${name}`,
    createdAt: 0,
    internalIPs: [],
    publicKey: testKey(seed),
    endpoint: null,
    endpointOverride: null,
    persistentKeepalive: 0,
    hostEncryption: false,
    problems: [],
    ...extra,
  };
}

export function pool(name: string, cidr: string): IpPool {
  return {
    name,
    uid: `uid-${name}`,
    createdAt: 0,
    cidr,
    family: cidr.includes(':') ? 6 : 4,
    blockSize: cidr.includes(':') ? 122 : 26,
    nodeSelector: { matchLabels: {}, matchExpressions: [] },
    encryption: 'WireGuard',
    encryptionMode: 'Preferred',
    encapsulation: 'None',
    natOutgoing: false,
    disabled: false,
  };
}

export function block(cidr: string, poolName: string, node: string): IpamBlock {
  return {
    name: blockName(cidr),
    cidr,
    family: cidr.includes(':') ? 6 : 4,
    pool: poolName,
    node,
    allocations: new Map(),
    resourceVersion: '1',
    uid: `uid-${cidr}`,
    problems: [],
  };
}

export function snapshot(
  name: string,
  parts: Partial<RemoteClusterSnapshot> = {},
): RemoteClusterSnapshot {
  return {
    name,
    importPools: null,
    synced: true,
    reachable: true,
    lastError: null,
    nodes: [],
    pools: [],
    blocks: [],
    problems: [],
    ...parts,
  };
}

export function externalPeer(
  name: string,
  seed: number,
  extra: Partial<ExternalPeer> = {},
): ExternalPeer {
  return {
    name,
    uid: `uid-${name}`,
    publicKey: testKey(seed),
    endpoint: null,
    allowedIPs: ['100.126.0.1/32'],
    persistentKeepalive: 0,
    ...extra,
  };
}
