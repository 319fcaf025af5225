// The Kubernetes boundary for nodes: a V1Node becomes a MeshNode, the agent's own
// type, validated as it goes. Annotations are untrusted: a key must be exactly 32
// bytes of canonical base64, an endpoint must parse, a keepalive must be a small
// whole number; anything refused is kept as a problem for an Event and a log line.
// A MeshNode carries no addresses to route from annotations: what is routed to a
// peer comes from elsewhere (the planner's tunnel addresses, later IPAM blocks).
import type { V1Node } from '@kubernetes/client-node';
import ipaddr from 'ipaddr.js';
import { parsePublicKey } from '../crypto/index.ts';
import {
  ANNOTATION_PUBLIC_KEY,
  ANNOTATION_ENDPOINT,
  ANNOTATION_ENDPOINT_OVERRIDE,
  ANNOTATION_PERSISTENT_KEEPALIVE,
  ANNOTATION_HOST_ENCRYPTION,
} from './annotations.ts';
import { parseEndpoint } from './endpoint.ts';
import { sameButVersion } from '../kube/informer.ts';

export type ProblemReason =
  'InvalidPublicKey' | 'InvalidEndpoint' | 'InvalidKeepalive' | 'DuplicatePublicKey' | 'NoEndpoint';

export interface NodeProblem {
  reason: ProblemReason;
  message: string;
}

export interface MeshNode {
  name: string;
  uid: string;
  /** Creation time in ms since the epoch; older nodes win address collisions. */
  createdAt: number;
  internalIPs: string[];
  /** Validated public key, or null if absent or refused. */
  publicKey: string | null;
  /** The published endpoint annotation (validated), or null. */
  endpoint: string | null;
  /** The operator's override (validated), or null. */
  endpointOverride: string | null;
  persistentKeepalive: number;
  /** The node routes host-to-host traffic through the mesh (its agent says so). */
  hostEncryption: boolean;
  problems: NodeProblem[];
}

export function meshNodeFromK8s(node: V1Node): MeshNode {
  const meta = node.metadata ?? {};
  const annotations = meta.annotations ?? {};
  const problems: NodeProblem[] = [];

  let publicKey: string | null = null;
  const rawKey = annotations[ANNOTATION_PUBLIC_KEY];
  if (rawKey !== undefined) {
    const parsed = parsePublicKey(rawKey);
    if (parsed.ok) publicKey = parsed.key;
    else
      problems.push({
        reason: 'InvalidPublicKey',
        message: `annotation ${ANNOTATION_PUBLIC_KEY} ${parsed.reason}`,
      });
  }

  const endpointOf = (key: string): string | null => {
    const raw = annotations[key];
    if (raw === undefined) return null;
    const parsed = parseEndpoint(raw);
    if (parsed.ok) return parsed.endpoint;
    problems.push({ reason: 'InvalidEndpoint', message: `annotation ${key} ${parsed.reason}` });
    return null;
  };
  const endpoint = endpointOf(ANNOTATION_ENDPOINT);
  const endpointOverride = endpointOf(ANNOTATION_ENDPOINT_OVERRIDE);

  let persistentKeepalive = 0;
  const rawKeepalive = annotations[ANNOTATION_PERSISTENT_KEEPALIVE];
  if (rawKeepalive !== undefined) {
    if (/^[0-9]{1,5}$/.test(rawKeepalive) && Number(rawKeepalive) <= 65535) {
      persistentKeepalive = Number(rawKeepalive);
    } else {
      problems.push({
        reason: 'InvalidKeepalive',
        message: `annotation ${ANNOTATION_PERSISTENT_KEEPALIVE} must be whole seconds from 0 to 65535`,
      });
    }
  }

  const internalIPs = (node.status?.addresses ?? [])
    .filter((a) => a.type === 'InternalIP' && ipaddr.isValid(a.address))
    .map((a) => ipaddr.parse(a.address).toString());

  const created = meta.creationTimestamp ? new Date(meta.creationTimestamp).getTime() : 0;
  return {
    name: meta.name ?? '',
    uid: meta.uid ?? '',
    createdAt: Number.isFinite(created) ? created : 0,
    internalIPs,
    publicKey,
    endpoint,
    endpointOverride,
    persistentKeepalive,
    hostEncryption: annotations[ANNOTATION_HOST_ENCRYPTION] === 'true',
    problems,
  };
}

/**
 * When this agent first saw each node publish its current key: of two nodes claiming
 * one key, the first to publish it keeps it (agent/plan.ts duplicateKeyLosers). Fed
 * from the node watch's events, so two publications a moment apart are told apart
 * even when one pass plans both. In memory: an agent that starts sees every key at
 * once, and creation order decides for it.
 */
export class KeyObservations {
  private readonly seen = new Map<string, { key: string; at: number }>();

  /** Record the nodes' keys (the raw annotation; null: none) as seen at `now`. */
  observe(nodes: readonly { name: string; key: string | null }[], now: number): void {
    const present = new Set<string>();
    for (const { name, key } of nodes) {
      if (key === null) continue;
      present.add(name);
      if (this.seen.get(name)?.key !== key) this.seen.set(name, { key, at: now });
    }
    for (const name of this.seen.keys()) if (!present.has(name)) this.seen.delete(name);
  }

  /** First sighting of each node's current key, for the planner. */
  times(): Map<string, number> {
    return new Map([...this.seen].map(([name, s]) => [name, s.at]));
  }
}

/**
 * What the agent keeps of a Node in its cache: identity, labels (pool node
 * selectors), wiremesh's own annotations and the addresses. A kubelet's Node also
 * carries its images, conditions and capacity, several kilobytes that every agent
 * would otherwise hold for every node of the cluster.
 */
export function trimNodeForMesh(node: V1Node): V1Node {
  const meta = node.metadata ?? {};
  const annotations = Object.fromEntries(
    Object.entries(meta.annotations ?? {}).filter(([k]) => k.startsWith('wiremesh.io/')),
  );
  return {
    metadata: {
      name: meta.name,
      uid: meta.uid,
      resourceVersion: meta.resourceVersion,
      creationTimestamp: meta.creationTimestamp,
      ...(meta.labels ? { labels: meta.labels } : {}),
      annotations,
    },
    status: { addresses: node.status?.addresses ?? [] },
  };
}

/** The parts of a Node trimNodeForMesh keeps beyond single values: a list reads only these. */
export const NODE_FIELDS_FOR_MESH = {
  metadata: { labels: true, annotations: true },
  status: { addresses: true },
} as const;

/**
 * True when two trimmed Nodes are the same to the agent: a kubelet's status report
 * (heartbeats, images, conditions) changes nothing kept, and must not start a pass.
 */
export const sameNodeForMesh: (a: V1Node, b: V1Node) => boolean = sameButVersion;
