// The policy compiler's own view of the world: pods, namespaces and NetworkPolicies
// as plain data, family-agnostic (a pod has IPv4 and IPv6 addresses alike). These
// types mirror networking.k8s.io/v1 closely so that the upstream semantics map one
// to one, but they are already validated: policy/k8s.ts (and admin-k8s.ts) is the only place that
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
  /**
   * The namespace asks for a log of the flows its NetworkPolicies drop (annotation
   * `wiremesh.io/log-drops: "true"`); absent or false: no log rule, no cost.
   */
  logDrops?: boolean;
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

/**
 * The cluster-wide ordered policies of the network-policy-api project
 * (policy.networking.k8s.io/v1alpha1). An ANP rule's action; a BaselineAdminNetworkPolicy
 * rule is Allow or Deny only.
 */
export const ADMIN_ACTIONS = ['Allow', 'Deny', 'Pass'] as const;
export type AdminAction = (typeof ADMIN_ACTIONS)[number];

/**
 * The pods an admin policy applies to: pods matching `podSelector` in namespaces
 * matching `namespaceSelector` (subject.namespaces is the pods form with an empty
 * podSelector).
 */
export interface AdminSubject {
  namespaceSelector: LabelSelector;
  podSelector: LabelSelector;
}

/**
 * An ANP or BANP rule. Peers reuse NetworkPolicy's peer type, always cluster-wide:
 * `namespaces` is a peer with a namespaceSelector only, `pods` one with both
 * selectors, and each CIDR of egress `networks` an ipBlock without excepts. A
 * podSelector without a namespaceSelector has no meaning here and is refused.
 */
export interface AdminRule {
  /** The rule's name, for problems and status; may be empty. */
  name: string;
  action: AdminAction;
  /** Empty: every address (only the fail-closed stand-in for an unreadable rule). */
  peers: PolicyPeer[];
  /** Empty: every port and protocol. A named port stands once per protocol. */
  ports: PolicyPort[];
}

export interface AdminNetworkPolicy {
  name: string;
  /** 0 to 1000; lower is evaluated first. -1 only for a fail-closed stand-in. */
  priority: number;
  subject: AdminSubject;
  /** In order: the first matching rule decides. */
  ingress: AdminRule[];
  egress: AdminRule[];
}

/** The one BaselineAdminNetworkPolicy (named `default`); its actions are Allow or Deny. */
export interface BaselineAdminNetworkPolicy {
  name: string;
  subject: AdminSubject;
  ingress: AdminRule[];
  egress: AdminRule[];
}

/** Something the compiler or the translation refused or could not honour. */
export interface PolicyProblem {
  kind: 'NetworkPolicy' | 'Pod' | 'Namespace' | 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy';
  namespace: string;
  name: string;
  reason: PolicyProblemReason;
  message: string;
}

/** The problems of what has none: one frozen list, where there is one per pod. */
export const NO_PROBLEMS: readonly PolicyProblem[] = Object.freeze([]);

export type PolicyProblemReason =
  'InvalidPolicy' | 'UnsupportedField' | 'InvalidPod' | 'InvalidNamespace' | 'AddressConflict';

export interface CompileInput {
  /** This node's name: only its pods get dispatch entries. */
  self: string;
  pods: readonly PolicyPod[];
  namespaces: readonly PolicyNamespace[];
  policies: readonly NetworkPolicy[];
  /** Evaluated before NetworkPolicy, by priority. */
  adminPolicies?: readonly AdminNetworkPolicy[];
  /** Evaluated for a pod and direction no NetworkPolicy selects. */
  baselinePolicy?: BaselineAdminNetworkPolicy | null;
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
  /** Only when admin policies are given: how many ANPs, and whether a BANP is in force. */
  adminPolicies?: number;
  baselinePolicy?: boolean;
}
