// The Kubernetes boundary for multi-cluster: RemoteCluster and Peer objects become
// RemoteCluster and ExternalPeer, validated as they go. Specs are untrusted even
// though the apiserver checks the schema (an older CRD, a direct etcd write): a
// Peer with any fault is refused whole (half a peer could route what it should
// not), and so is a RemoteCluster whose Secret reference or pool list is unusable.
// A public key must decode to exactly 32 bytes (crypto/), an endpoint must parse
// (agent/endpoint.ts), allowed IPs must be canonical CIDRs (ipam/cidr.ts).
import { parsePublicKey } from '../crypto/keys.ts';
import { parseEndpoint } from '../agent/endpoint.ts';
import { parseCanonicalCidr } from '../ipam/cidr.ts';
import { isRecord } from '../ipam/selector.ts';
import {
  DEFAULT_SECRET_KEY,
  DEFAULT_SECRET_NAMESPACE,
  type ExternalPeer,
  type MultiClusterProblem,
  type RemoteCluster,
} from './types.ts';

const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SECRET_KEY = /^(?=.{1,253}$)[-._a-zA-Z0-9]+$/;

interface Meta {
  name: string;
  uid: string;
  generation: number;
  resourceVersion: string;
}

function metaOf(obj: Record<string, unknown>): Meta {
  const m = isRecord(obj.metadata) ? obj.metadata : {};
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  return {
    name: str(m.name),
    uid: str(m.uid),
    generation:
      typeof m.generation === 'number' && Number.isInteger(m.generation) ? m.generation : 0,
    resourceVersion: str(m.resourceVersion),
  };
}

/** A RemoteCluster object as a RemoteCluster, or null with the reasons it was refused. */
export function remoteClusterFromK8s(raw: unknown): {
  cluster: RemoteCluster | null;
  problems: MultiClusterProblem[];
} {
  const obj = isRecord(raw) ? raw : {};
  const meta = metaOf(obj);
  const object = `RemoteCluster/${meta.name || '?'}`;
  const problems: MultiClusterProblem[] = [];
  const refuse = (reason: MultiClusterProblem['reason'], message: string) =>
    problems.push({ object, reason, message });
  const spec = isRecord(obj.spec) ? obj.spec : {};
  if (!DNS_SUBDOMAIN.test(meta.name)) refuse('InvalidName', 'the object has no valid name');

  const ref = isRecord(spec.kubeconfigSecretRef) ? spec.kubeconfigSecretRef : null;
  const secretRef = {
    namespace: ref?.namespace ?? DEFAULT_SECRET_NAMESPACE,
    name: ref?.name,
    key: ref?.key ?? DEFAULT_SECRET_KEY,
  };
  if (!ref) refuse('InvalidSecretRef', 'spec.kubeconfigSecretRef is missing');
  else if (typeof secretRef.namespace !== 'string' || !DNS_LABEL.test(secretRef.namespace))
    refuse('InvalidSecretRef', 'spec.kubeconfigSecretRef.namespace is not a namespace name');
  else if (typeof secretRef.name !== 'string' || !DNS_SUBDOMAIN.test(secretRef.name))
    refuse('InvalidSecretRef', 'spec.kubeconfigSecretRef.name is not a Secret name');
  else if (typeof secretRef.key !== 'string' || !SECRET_KEY.test(secretRef.key))
    refuse('InvalidSecretRef', 'spec.kubeconfigSecretRef.key is not a Secret key');

  let importPools: string[] | null = null;
  if (spec.importPools !== undefined && spec.importPools !== null) {
    const list = spec.importPools;
    if (
      !Array.isArray(list) ||
      list.length === 0 ||
      list.length > 64 ||
      !list.every((p) => typeof p === 'string' && DNS_SUBDOMAIN.test(p))
    ) {
      refuse(
        'InvalidImportPools',
        'spec.importPools must list 1 to 64 pool names (leave it out to import every pool)',
      );
    } else importPools = [...new Set(list as string[])].sort();
  }
  if (problems.length) return { cluster: null, problems };
  return {
    cluster: {
      name: meta.name,
      uid: meta.uid,
      generation: meta.generation,
      resourceVersion: meta.resourceVersion,
      secretRef: secretRef as RemoteCluster['secretRef'],
      importPools,
    },
    problems,
  };
}

/** A Peer object as an ExternalPeer, or null with the reasons it was refused. */
export function peerFromK8s(raw: unknown): {
  peer: ExternalPeer | null;
  problems: MultiClusterProblem[];
} {
  const obj = isRecord(raw) ? raw : {};
  const meta = metaOf(obj);
  const object = `Peer/${meta.name || '?'}`;
  const problems: MultiClusterProblem[] = [];
  const refuse = (reason: MultiClusterProblem['reason'], message: string) =>
    problems.push({ object, reason, message });
  const spec = isRecord(obj.spec) ? obj.spec : {};
  if (!DNS_SUBDOMAIN.test(meta.name)) refuse('InvalidName', 'the object has no valid name');

  const key = parsePublicKey(spec.publicKey);
  if (!key.ok) refuse('InvalidPublicKey', `spec.publicKey ${key.reason}`);

  let endpoint: string | null = null;
  if (spec.endpoint !== undefined && spec.endpoint !== null) {
    const parsed = parseEndpoint(spec.endpoint);
    if (parsed.ok) endpoint = parsed.endpoint;
    else refuse('InvalidEndpoint', `spec.endpoint ${parsed.reason}`);
  }

  const allowedIPs: string[] = [];
  if (!Array.isArray(spec.allowedIPs) || spec.allowedIPs.length === 0) {
    refuse('InvalidAllowedIPs', 'spec.allowedIPs must list at least one CIDR');
  } else if (spec.allowedIPs.length > 64) {
    refuse('InvalidAllowedIPs', 'spec.allowedIPs lists more than 64 CIDRs');
  } else {
    for (const item of spec.allowedIPs as unknown[]) {
      const cidr = parseCanonicalCidr(item as string);
      if (cidr.ok) allowedIPs.push(item as string);
      else refuse('InvalidAllowedIPs', `spec.allowedIPs: ${cidr.reason}`);
    }
  }

  let persistentKeepalive = 0;
  const ka = spec.persistentKeepalive;
  if (ka !== undefined && ka !== null) {
    if (typeof ka === 'number' && Number.isInteger(ka) && ka >= 0 && ka <= 65535)
      persistentKeepalive = ka;
    else
      refuse('InvalidKeepalive', 'spec.persistentKeepalive must be whole seconds from 0 to 65535');
  }

  if (problems.length || !key.ok) return { peer: null, problems };
  return {
    peer: {
      name: meta.name,
      uid: meta.uid,
      publicKey: key.key,
      endpoint,
      allowedIPs: [...new Set(allowedIPs)].sort(),
      persistentKeepalive,
    },
    problems,
  };
}
