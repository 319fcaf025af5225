// Small builders for the networking.k8s.io/v1 NetworkPolicy objects the cases
// apply, so a case reads like the policy it stands for. They build plain API
// objects; nothing here knows about the dataplane.
import type {
  V1LabelSelector,
  V1LabelSelectorRequirement,
  V1NetworkPolicy,
  V1NetworkPolicyEgressRule,
  V1NetworkPolicyIngressRule,
  V1NetworkPolicyPeer,
  V1NetworkPolicyPort,
} from '@kubernetes/client-node';
import type { Protocol } from './prober.ts';

export type PolicyType = 'Ingress' | 'Egress';

export interface PolicySpec {
  /** Which pods of the namespace the policy selects; {} selects all. */
  podSelector: V1LabelSelector;
  ingress?: V1NetworkPolicyIngressRule[];
  egress?: V1NetworkPolicyEgressRule[];
  /** Left out, the API server defaults it (Ingress, plus Egress when egress rules exist). */
  policyTypes?: PolicyType[];
}

export function networkPolicy(name: string, namespace: string, spec: PolicySpec): V1NetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace },
    spec,
  };
}

/** Selects every pod. */
export const ALL: V1LabelSelector = {};

export function labels(matchLabels: Record<string, string>): V1LabelSelector {
  return { matchLabels };
}

export function expressions(...matchExpressions: V1LabelSelectorRequirement[]): V1LabelSelector {
  return { matchExpressions };
}

/** A selector on upstream's `pod` label. */
export function podLabel(name: string): V1LabelSelector {
  return labels({ pod: name });
}

/** A selector on upstream's `ns` namespace label. */
export function nsLabel(name: string): V1LabelSelector {
  return labels({ ns: name });
}

export function peer(sel: {
  pods?: V1LabelSelector;
  namespaces?: V1LabelSelector;
}): V1NetworkPolicyPeer {
  return {
    ...(sel.pods ? { podSelector: sel.pods } : {}),
    ...(sel.namespaces ? { namespaceSelector: sel.namespaces } : {}),
  };
}

export function ipBlock(cidr: string, except?: string[]): V1NetworkPolicyPeer {
  return { ipBlock: { cidr, ...(except ? { except } : {}) } };
}

/** A port by number or name, optionally a range up to endPort. */
export function port(
  p: number | string,
  protocol: Protocol = 'TCP',
  endPort?: number,
): V1NetworkPolicyPort {
  return { port: p, protocol, ...(endPort !== undefined ? { endPort } : {}) };
}

/** Upstream's default-deny policies: select every pod of the namespace, allow nothing. */
export function denyAll(
  namespace: string,
  types: PolicyType[],
  name = 'deny-all',
): V1NetworkPolicy {
  return networkPolicy(name, namespace, { podSelector: ALL, policyTypes: types });
}
