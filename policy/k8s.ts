// The Kubernetes boundary of policy/: NetworkPolicy, Pod and Namespace objects
// become the compiler's own types, validated as they go. Objects arrive as JSON
// from the API (the agent does not load @kubernetes/client-node at run time; its
// types are imported for their shape only) and are untrusted: an old apiserver,
// a direct etcd write or a newer API version can hand us fields we do not
// understand.
//
// Fail closed, never open. A NetworkPolicy with any malformed or unsupported
// field becomes its safe equivalent, with a problem to log and report as an Event:
// it still isolates the pods it selects, for the directions it declares, and it
// allows nothing. When its podSelector cannot be read, it isolates every pod of
// its namespace; when its policyTypes cannot be read, both directions. A policy
// is never dropped whole (that would silently open its pods) and never half
// applied (dropping one bad `except` or port would allow more than was asked).
//
// Pods: host-network pods are left out (their addresses are the node's; upstream
// leaves their policy undefined), and so are pods that have finished (Succeeded,
// Failed), whose addresses may already belong to a new pod. A malformed address
// or port of a pod is dropped with a problem; the rest of the pod stands.
import type { V1Namespace, V1NetworkPolicy, V1Pod } from '@kubernetes/client-node';
import { checkPolicy } from './check.ts';
import { memoised } from '../ipam/index.ts';
import { cachedAddress } from './ranges.ts';
import {
  NO_PROBLEMS,
  POLICY_TYPES,
  PROTOCOLS,
  type IpBlock,
  type LabelSelector,
  type NamedPort,
  type NetworkPolicy,
  type PolicyNamespace,
  type PolicyPeer,
  type PolicyPod,
  type PolicyPort,
  type PolicyProblem,
  type PolicyRule,
  type PolicyType,
  type Protocol,
  type SelectorOperator,
} from './types.ts';

const OPERATORS: readonly SelectorOperator[] = ['In', 'NotIn', 'Exists', 'DoesNotExist'];
export const EVERYTHING: LabelSelector = { matchLabels: {}, matchExpressions: [] };

/** A field we cannot read; `unsupported` when it is well-formed but unknown to us. */
export class Fault extends Error {
  readonly unsupported: boolean;
  constructor(message: string, unsupported = false) {
    super(message);
    this.unsupported = unsupported;
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function absent(v: unknown): v is undefined | null {
  return v === undefined || v === null;
}

export function only(obj: Record<string, unknown>, known: readonly string[], where: string): void {
  for (const key of Object.keys(obj).sort()) {
    if (!known.includes(key) && !absent(obj[key])) {
      throw new Fault(`${where}.${key} is not supported by this version of wiremesh`, true);
    }
  }
}

export function list(v: unknown, where: string): unknown[] {
  if (absent(v)) return [];
  if (!Array.isArray(v)) throw new Fault(`${where} must be a list`);
  return v as unknown[];
}

function stringMap(v: unknown, where: string): Record<string, string> {
  if (absent(v)) return {};
  if (!isRecord(v)) throw new Fault(`${where} must map strings to strings`);
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(v)) {
    if (typeof value !== 'string')
      throw new Fault(`${where}[${JSON.stringify(k)}] must be a string`);
    out[k] = value;
  }
  return out;
}

/** A metav1.LabelSelector, with upstream's validation of operators and values. */
export function labelSelectorFromK8s(v: unknown, where: string): LabelSelector {
  if (absent(v)) return EVERYTHING;
  if (!isRecord(v)) throw new Fault(`${where} must be an object`);
  only(v, ['matchLabels', 'matchExpressions'], where);
  const matchLabels = stringMap(v.matchLabels, `${where}.matchLabels`);
  const matchExpressions = list(v.matchExpressions, `${where}.matchExpressions`).map((e, i) => {
    const at = `${where}.matchExpressions[${i}]`;
    if (!isRecord(e) || typeof e.key !== 'string' || e.key === '') {
      throw new Fault(`${at} needs a key`);
    }
    only(e, ['key', 'operator', 'values'], at);
    if (!OPERATORS.includes(e.operator as SelectorOperator)) {
      throw new Fault(`${at}.operator must be one of ${OPERATORS.join(', ')}`);
    }
    const operator = e.operator as SelectorOperator;
    const values = list(e.values, `${at}.values`);
    if (!values.every((x): x is string => typeof x === 'string')) {
      throw new Fault(`${at}.values must be strings`);
    }
    const wantsValues = operator === 'In' || operator === 'NotIn';
    if (wantsValues !== values.length > 0) {
      throw new Fault(`${at}: In and NotIn need values; Exists and DoesNotExist take none`);
    }
    return { key: e.key, operator, values };
  });
  return { matchLabels, matchExpressions };
}

function peerFromK8s(v: unknown, where: string): PolicyPeer {
  if (!isRecord(v)) throw new Fault(`${where} must be an object`);
  only(v, ['podSelector', 'namespaceSelector', 'ipBlock'], where);
  const peer: PolicyPeer = {};
  if (!absent(v.podSelector))
    peer.podSelector = labelSelectorFromK8s(v.podSelector, `${where}.podSelector`);
  if (!absent(v.namespaceSelector)) {
    peer.namespaceSelector = labelSelectorFromK8s(
      v.namespaceSelector,
      `${where}.namespaceSelector`,
    );
  }
  if (!absent(v.ipBlock)) {
    const b = v.ipBlock;
    if (!isRecord(b) || typeof b.cidr !== 'string') {
      throw new Fault(`${where}.ipBlock needs a cidr`);
    }
    only(b, ['cidr', 'except'], `${where}.ipBlock`);
    const except = list(b.except, `${where}.ipBlock.except`);
    if (!except.every((e): e is string => typeof e === 'string')) {
      throw new Fault(`${where}.ipBlock.except must be a list of CIDRs`);
    }
    peer.ipBlock = { cidr: b.cidr, except } satisfies IpBlock;
  }
  return peer;
}

function portFromK8s(v: unknown, where: string): PolicyPort {
  if (!isRecord(v)) throw new Fault(`${where} must be an object`);
  only(v, ['protocol', 'port', 'endPort'], where);
  const protocol = absent(v.protocol) ? 'TCP' : v.protocol;
  if (!PROTOCOLS.includes(protocol as Protocol)) {
    throw new Fault(
      `${where}.protocol ${JSON.stringify(protocol)} is not one of ${PROTOCOLS.join(', ')}`,
    );
  }
  const port: PolicyPort = { protocol: protocol as Protocol };
  if (!absent(v.port)) {
    if (typeof v.port !== 'number' && typeof v.port !== 'string') {
      throw new Fault(`${where}.port must be a number or a port name`);
    }
    port.port = v.port;
  }
  if (!absent(v.endPort)) {
    if (typeof v.endPort !== 'number') throw new Fault(`${where}.endPort must be a number`);
    port.endPort = v.endPort;
  }
  return port;
}

function rulesFromK8s(v: unknown, where: string, peersKey: 'from' | 'to'): PolicyRule[] {
  return list(v, where).map((r, i) => {
    const at = `${where}[${i}]`;
    if (!isRecord(r)) throw new Fault(`${at} must be an object`);
    only(r, [peersKey, 'ports'], at);
    return {
      peers: list(r[peersKey], `${at}.${peersKey}`).map((p, j) =>
        peerFromK8s(p, `${at}.${peersKey}[${j}]`),
      ),
      ports: list(r.ports, `${at}.ports`).map((p, j) => portFromK8s(p, `${at}.ports[${j}]`)),
    };
  });
}

function policyTypesFromK8s(spec: Record<string, unknown>): PolicyType[] {
  const raw = list(spec.policyTypes, 'spec.policyTypes');
  for (const t of raw) {
    if (!POLICY_TYPES.includes(t as PolicyType)) {
      throw new Fault(`spec.policyTypes has '${String(t)}'; allowed are Ingress, Egress`);
    }
  }
  if (raw.length > 0) return [...new Set(raw as PolicyType[])].sort();
  // Upstream defaulting: Ingress always, Egress when egress rules are present.
  return Array.isArray(spec.egress) && spec.egress.length > 0 ? ['Egress', 'Ingress'] : ['Ingress'];
}

export function metaOf(obj: unknown): { namespace: string; name: string; labels: unknown } {
  const meta = isRecord(obj) && isRecord(obj.metadata) ? obj.metadata : {};
  return {
    namespace: typeof meta.namespace === 'string' ? meta.namespace : '',
    name: typeof meta.name === 'string' ? meta.name : '',
    labels: meta.labels,
  };
}

/**
 * A NetworkPolicy object as the compiler's NetworkPolicy. `policy` is null only
 * when the object has no namespace or name (it cannot have come from the API).
 */
export function networkPolicyFromK8s(obj: Readonly<V1NetworkPolicy> | object): {
  policy: NetworkPolicy | null;
  problems: PolicyProblem[];
} {
  const { namespace, name } = metaOf(obj);
  const problem = (reason: PolicyProblem['reason'], message: string): PolicyProblem => ({
    kind: 'NetworkPolicy',
    namespace,
    name,
    reason,
    message,
  });
  if (!namespace || !name) {
    return {
      policy: null,
      problems: [problem('InvalidPolicy', 'metadata.namespace and metadata.name are required')],
    };
  }
  const spec = isRecord(obj) && isRecord(obj.spec) ? obj.spec : null;
  // What is known of the policy so far, for its fail-closed equivalent.
  let podSelector = EVERYTHING;
  let policyTypes: PolicyType[] = ['Egress', 'Ingress'];
  const failClosed = (fault: unknown) => {
    const unsupported = fault instanceof Fault && fault.unsupported;
    const text = fault instanceof Error ? fault.message : String(fault);
    return {
      policy: { namespace, name, podSelector, policyTypes, ingress: [], egress: [] },
      problems: [
        problem(
          unsupported ? 'UnsupportedField' : 'InvalidPolicy',
          `${text}; the policy isolates the pods it selects (${describe(podSelector, policyTypes)}) and allows nothing`,
        ),
      ],
    };
  };
  try {
    if (!spec) throw new Fault('spec must be an object');
    podSelector = labelSelectorFromK8s(spec.podSelector, 'spec.podSelector');
    policyTypes = policyTypesFromK8s(spec);
    only(spec, ['podSelector', 'policyTypes', 'ingress', 'egress'], 'spec');
    const policy: NetworkPolicy = {
      namespace,
      name,
      podSelector,
      policyTypes,
      ingress: rulesFromK8s(spec.ingress, 'spec.ingress', 'from'),
      egress: rulesFromK8s(spec.egress, 'spec.egress', 'to'),
    };
    const fault = checkPolicy(policy);
    if (fault) throw new Fault(fault);
    return { policy, problems: [] };
  } catch (e) {
    if (!(e instanceof Fault)) throw e;
    return failClosed(e);
  }
}

function describe(selector: LabelSelector, types: PolicyType[]): string {
  const all =
    Object.keys(selector.matchLabels).length === 0 && selector.matchExpressions.length === 0;
  return `${all ? 'every pod of the namespace' : 'its podSelector'}, ${types.join(' and ')}`;
}

/**
 * A Pod object as a PolicyPod, or null for pods policy does not apply to
 * (host network, finished) and objects without a namespace or name.
 */
export function podFromK8s(obj: Readonly<V1Pod> | object): {
  pod: PolicyPod | null;
  problems: PolicyProblem[];
} {
  const { namespace, name, labels } = metaOf(obj);
  const problems: PolicyProblem[] = [];
  const problem = (message: string) =>
    problems.push({ kind: 'Pod', namespace, name, reason: 'InvalidPod', message });
  if (!namespace || !name) {
    problem('metadata.namespace and metadata.name are required');
    return { pod: null, problems };
  }
  const o = obj as Record<string, unknown>;
  const spec = isRecord(o.spec) ? o.spec : {};
  const status = isRecord(o.status) ? o.status : {};
  if (spec.hostNetwork === true) return { pod: null, problems };
  if (status.phase === 'Succeeded' || status.phase === 'Failed') return { pod: null, problems };

  const podLabels: Record<string, string> = {};
  if (isRecord(labels)) {
    for (const [k, v] of Object.entries(labels)) {
      if (typeof v === 'string') podLabels[k] = shared(v);
      else problem(`metadata.labels[${JSON.stringify(k)}] is not a string; ignored`);
    }
  }

  const ips: string[] = [];
  const candidates: unknown[] = [
    status.podIP,
    ...(Array.isArray(status.podIPs) ? (status.podIPs as unknown[]) : []).map((p) =>
      isRecord(p) ? p.ip : p,
    ),
  ];
  for (const ip of candidates) {
    if (absent(ip) || ip === '') continue;
    const a = typeof ip === 'string' ? cachedAddress(ip) : null;
    if (!a) {
      problem(`status address ${JSON.stringify(ip)} is not an IP address; ignored`);
      continue;
    }
    if (!ips.includes(a.text)) ips.push(a.text);
  }

  const ports: NamedPort[] = [];
  const containers: unknown[] = [
    ...(Array.isArray(spec.containers) ? (spec.containers as unknown[]) : []),
    // Sidecars (restartable init containers) serve for the pod's whole life.
    ...(Array.isArray(spec.initContainers)
      ? (spec.initContainers as unknown[]).filter(
          (c) => isRecord(c) && c.restartPolicy === 'Always',
        )
      : []),
  ];
  for (const c of containers) {
    if (!isRecord(c) || !Array.isArray(c.ports)) continue;
    for (const p of c.ports as unknown[]) {
      if (!isRecord(p) || absent(p.name)) continue;
      const protocol = absent(p.protocol) ? 'TCP' : p.protocol;
      const port = p.containerPort;
      if (
        typeof p.name !== 'string' ||
        !Number.isInteger(port) ||
        (port as number) < 1 ||
        (port as number) > 65535 ||
        !PROTOCOLS.includes(protocol as Protocol)
      ) {
        problem(`container port ${JSON.stringify(p)} is malformed; ignored`);
        continue;
      }
      ports.push({
        name: shared(p.name),
        port: port as number,
        protocol: PROTOCOLS.find((x) => x === protocol) as Protocol,
      });
    }
  }
  ports.sort((a, b) => (a.name + a.protocol < b.name + b.protocol ? -1 : 1));

  return {
    pod: {
      namespace: shared(namespace),
      name,
      labels: podLabels,
      // Exact copies: an array grown by push keeps room for 16 more.
      ips: ips.slice(),
      node: typeof spec.nodeName === 'string' ? shared(spec.nodeName) : '',
      ports: ports.slice(),
    },
    problems,
  };
}

/**
 * One string object per text for what tens of thousands of pods repeat (namespaces,
 * nodes, label values, port names): JSON.parse makes a new one for each pod.
 */
const shared = memoised((text: string) => text, 50_000);

/**
 * What the pod watch keeps of a Pod: the informer's name, namespace and version, and
 * the pod as policy reads it (podFromK8s). A watch of every pod in a large cluster
 * holds this instead of the Pod's own fields, which the compile never reads again.
 */
export interface PodRecord {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  pod: PolicyPod | null;
  problems: readonly PolicyProblem[];
}

export function podRecordForPolicy(obj: object): PodRecord {
  const { namespace, name } = metaOf(obj);
  const o = obj as { metadata?: { resourceVersion?: unknown } };
  const rv = o.metadata?.resourceVersion;
  const { pod, problems } = podFromK8s(obj);
  return {
    metadata: {
      name,
      namespace: shared(namespace),
      ...(typeof rv === 'string' ? { resourceVersion: rv } : {}),
    },
    pod,
    problems: problems.length > 0 ? problems : NO_PROBLEMS,
  };
}

/**
 * The parts of a Pod that podRecordForPolicy reads beyond single values (name,
 * namespace, version, node, host network, phase and IP are those): a pod's list
 * is read through these (ListFields in kube/), the rest of its text never parsed.
 */
export const POD_FIELDS_FOR_POLICY = {
  metadata: { labels: true },
  spec: { containers: { ports: true }, initContainers: { ports: true } },
  status: { podIPs: true },
} as const;

/** Two pod records with the same pod and problems: the same to policy. */
export function samePodRecord(a: PodRecord, b: PodRecord): boolean {
  return JSON.stringify([a.pod, a.problems]) === JSON.stringify([b.pod, b.problems]);
}

/** A Namespace object as a PolicyNamespace. */
export function namespaceFromK8s(obj: Readonly<V1Namespace> | object): {
  namespace: PolicyNamespace | null;
  problems: PolicyProblem[];
} {
  const { name, labels } = metaOf(obj);
  if (!name) {
    return {
      namespace: null,
      problems: [
        {
          kind: 'Namespace',
          namespace: '',
          name: '',
          reason: 'InvalidNamespace',
          message: 'metadata.name is required',
        },
      ],
    };
  }
  const problems: PolicyProblem[] = [];
  const out: Record<string, string> = {};
  if (isRecord(labels)) {
    for (const [k, v] of Object.entries(labels)) {
      if (typeof v === 'string') out[k] = v;
      else
        problems.push({
          kind: 'Namespace',
          namespace: '',
          name,
          reason: 'InvalidNamespace',
          message: `metadata.labels[${JSON.stringify(k)}] is not a string; ignored`,
        });
    }
  }
  const logDrops = (obj as Readonly<V1Namespace>).metadata?.annotations?.[ANNOTATION_LOG_DROPS];
  return {
    namespace: logDrops === 'true' ? { name, labels: out, logDrops: true } : { name, labels: out },
    problems,
  };
}

/** Namespace annotation switching on the log of flows its NetworkPolicies drop. */
export const ANNOTATION_LOG_DROPS = 'wiremesh.io/log-drops';
