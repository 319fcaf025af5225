// Small builders for the networking.k8s.io/v1 NetworkPolicy objects the cases
// apply, so a case reads like the policy it stands for. They build plain API
// objects; nothing here knows about the dataplane.
import type { Protocol } from './prober.ts';

// The wire shapes (JSON field names) of networking.k8s.io/v1. Not the
// @kubernetes/client-node classes: those name `from` as `_from` and rely on the
// client's serializer, while the harness sends plain JSON.
export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

export interface NetworkPolicyPort {
  port?: number | string;
  endPort?: number;
  protocol?: Protocol;
}

export interface IngressRule {
  from?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface EgressRule {
  to?: NetworkPolicyPeer[];
  ports?: NetworkPolicyPort[];
}

export interface NetworkPolicy {
  apiVersion: 'networking.k8s.io/v1';
  kind: 'NetworkPolicy';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: PolicySpec;
}

export type PolicyType = 'Ingress' | 'Egress';

export interface PolicySpec {
  /** Which pods of the namespace the policy selects; {} selects all. */
  podSelector: LabelSelector;
  ingress?: IngressRule[];
  egress?: EgressRule[];
  /** Left out, the API server defaults it (Ingress, plus Egress when egress rules exist). */
  policyTypes?: PolicyType[];
}

export function networkPolicy(name: string, namespace: string, spec: PolicySpec): NetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace },
    spec,
  };
}

/** Selects every pod. */
export const ALL: LabelSelector = {};

export function labels(matchLabels: Record<string, string>): LabelSelector {
  return { matchLabels };
}

export function expressions(...matchExpressions: LabelSelectorRequirement[]): LabelSelector {
  return { matchExpressions };
}

/** A selector on upstream's `pod` label. */
export function podLabel(name: string): LabelSelector {
  return labels({ pod: name });
}

/** A selector on upstream's `ns` namespace label. */
export function nsLabel(name: string): LabelSelector {
  return labels({ ns: name });
}

export function peer(sel: { pods?: LabelSelector; namespaces?: LabelSelector }): NetworkPolicyPeer {
  return {
    ...(sel.pods ? { podSelector: sel.pods } : {}),
    ...(sel.namespaces ? { namespaceSelector: sel.namespaces } : {}),
  };
}

export function ipBlock(cidr: string, except?: string[]): NetworkPolicyPeer {
  return { ipBlock: { cidr, ...(except ? { except } : {}) } };
}

/** A port by number or name, optionally a range up to endPort. */
export function port(
  p: number | string,
  protocol: Protocol = 'TCP',
  endPort?: number,
): NetworkPolicyPort {
  return { port: p, protocol, ...(endPort !== undefined ? { endPort } : {}) };
}

/** Upstream's default-deny policies: select every pod of the namespace, allow nothing. */
export function denyAll(namespace: string, types: PolicyType[], name = 'deny-all'): NetworkPolicy {
  return networkPolicy(name, namespace, { podSelector: ALL, policyTypes: types });
}
