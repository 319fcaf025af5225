// The policy compiler's own view of the world: pods, namespaces and NetworkPolicies
// as plain data, family-agnostic (a pod has IPv4 and IPv6 addresses alike). These
// types mirror networking.k8s.io/v1 closely so that the upstream semantics map one
// to one, but they are already validated: policy/k8s.ts is the only place that
// reads Kubernetes objects, and it turns a malformed policy into its fail-closed
// equivalent (see there). Label selectors are IPAM's (ipam/types.ts): one
// implementation of metav1.LabelSelector for the whole agent.
import type { LabelSelector, LabelSelectorRequirement, SelectorOperator } from '../ipam/index.ts';

export type { LabelSelector, LabelSelectorRequirement, SelectorOperator };

export const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export const POLICY_TYPES = ['Ingress', 'Egress'] as const;
export type PolicyType = (typeof POLICY_TYPES)[number];

/** A named container port (`containers[].ports[]` with a name). */
export interface NamedPort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface PolicyPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** Canonical addresses, either family (status.podIPs). */
  ips: string[];
  /** spec.nodeName; ingress and egress are decided on this node only. */
  node: string;
  ports: NamedPort[];
}

export interface PolicyNamespace {
  name: string;
  labels: Record<string, string>;
}

export interface IpBlock {
  /** A CIDR of either family. */
  cidr: string;
  /** CIDRs inside `cidr` (same family) that are not part of the block. */
  except: string[];
}

/**
 * A NetworkPolicyPeer. Exactly as upstream: `ipBlock` alone, or one or both of the
 * selectors (podSelector alone = pods of the policy's namespace; namespaceSelector
 * alone = every pod of the matching namespaces; both = the intersection).
 */
export interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IpBlock;
}

export interface PolicyPort {
  protocol: Protocol;
  /** A port number, a named container port, or absent for every port of the protocol. */
  port?: number | string;
  /** With a numeric `port`: the inclusive end of a range. */
  endPort?: number;
}

/** A NetworkPolicyIngressRule or EgressRule: `from`/`to` is `peers`. */
export interface PolicyRule {
  /** Empty: every source (ingress) or destination (egress), in and outside the cluster. */
  peers: PolicyPeer[];
  /** Empty: every port and protocol (ICMP included). */
  ports: PolicyPort[];
}

export interface NetworkPolicy {
  namespace: string;
  name: string;
  /** Selects pods of `namespace`; the empty selector selects all of them. */
  podSelector: LabelSelector;
  /** Already defaulted: Ingress always, Egress when there are egress rules. */
  policyTypes: PolicyType[];
  ingress: PolicyRule[];
  egress: PolicyRule[];
}

/** Something the compiler or the translation refused or could not honour. */
export interface PolicyProblem {
  kind: 'NetworkPolicy' | 'Pod' | 'Namespace';
  namespace: string;
  name: string;
  reason: PolicyProblemReason;
  message: string;
}

export type PolicyProblemReason =
  'InvalidPolicy' | 'UnsupportedField' | 'InvalidPod' | 'InvalidNamespace' | 'AddressConflict';

export interface CompileInput {
  /** This node's name: only its pods get dispatch entries. */
  self: string;
  pods: readonly PolicyPod[];
  namespaces: readonly PolicyNamespace[];
  policies: readonly NetworkPolicy[];
}

export interface CompileStats {
  pods: number;
  localPods: number;
  policies: number;
  /** Local pods isolated for ingress / for egress. */
  isolatedIngress: number;
  isolatedEgress: number;
  chains: number;
  sets: number;
  maps: number;
  rules: number;
  /** Elements over all sets and maps. */
  elements: number;
}
