// IPAM's own types: what an IPPool and an IPAMBlock mean once the Kubernetes
// boundary (k8s.ts) has validated them. Everything past the boundary may rely on
// these invariants: CIDRs and addresses are canonical text of one family, a pool's
// blockSize is in range for its family and not shorter than the pool's prefix, a
// selector is well-formed, and every allocation lies inside its block.
import type { Family } from './cidr.ts';

export const IPAM_GROUP = 'wiremesh.io';
export const IPAM_VERSION = 'v1alpha1';
export const IPPOOL_PLURAL = 'ippools';
export const IPAMBLOCK_PLURAL = 'ipamblocks';

export const DEFAULT_BLOCK_SIZE: Record<Family, number> = { 4: 26, 6: 122 };
export const BLOCK_SIZE_RANGE: Record<Family, [number, number]> = { 4: [20, 32], 6: [116, 128] };

export const ENCRYPTIONS = ['WireGuard', 'None'] as const;
export const ENCRYPTION_MODES = ['Required', 'Preferred'] as const;
export const ENCAPSULATIONS = [
  'VXLAN',
  'VXLANCrossSubnet',
  'IPIP',
  'IPIPCrossSubnet',
  'None',
] as const;
export const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

export type Encryption = (typeof ENCRYPTIONS)[number];
export type EncryptionMode = (typeof ENCRYPTION_MODES)[number];
export type Encapsulation = (typeof ENCAPSULATIONS)[number];
export type SelectorOperator = (typeof SELECTOR_OPERATORS)[number];

export interface LabelSelectorRequirement {
  key: string;
  operator: SelectorOperator;
  values: string[];
}

/** A metav1.LabelSelector; the empty selector selects every node. */
export interface LabelSelector {
  matchLabels: Record<string, string>;
  matchExpressions: LabelSelectorRequirement[];
}

export interface IpPool {
  name: string;
  uid: string;
  /** Creation time in ms since the epoch; the older of two overlapping pools wins. */
  createdAt: number;
  cidr: string;
  family: Family;
  /** Prefix length of the pool's blocks (defaulted per family when the object has none). */
  blockSize: number;
  nodeSelector: LabelSelector;
  encryption: Encryption;
  encryptionMode: EncryptionMode;
  encapsulation: Encapsulation;
  natOutgoing: boolean;
  disabled: boolean;
}

/** Attributes of the attachment an address was given to. */
export interface AllocationAttributes {
  /**
   * The Kubernetes pod's namespace and name. Without Kubernetes the namespace is ''
   * (and the name whatever the client passed as K8S_POD_NAME, often nothing).
   */
  namespace: string;
  pod: string;
  containerID: string;
  ifName: string;
  /** The Kubernetes pod's UID (K8S_POD_UID); absent or '' when the runtime did not pass it. */
  podUID?: string;
}

export interface Allocation extends AllocationAttributes {
  /** `<network name>.<container id>.<ifname>`, the CNI attachment's identity. */
  handle: string;
  address: string;
  /** When this node allocated it (ms since the epoch); 0 when learned from the API. */
  allocatedAt: number;
}

export interface IpamBlock {
  /** Object name, derived from the CIDR (see blockName). */
  name: string;
  cidr: string;
  family: Family;
  pool: string;
  /** The owning node (the block's affinity). */
  node: string;
  /** Keyed by handle. */
  allocations: Map<string, Allocation>;
  /** Of the API object this was read from; '' for a block not read from the API. */
  resourceVersion: string;
  uid: string;
  /** Non-fatal faults found in the object (e.g. a malformed allocation entry). */
  problems: IpamProblem[];
}

export type IpamProblemReason =
  | 'InvalidCIDR'
  | 'InvalidBlockSize'
  | 'InvalidNodeSelector'
  | 'InvalidSetting'
  | 'InvalidName'
  | 'InvalidAllocation'
  | 'DuplicateAddress'
  | 'OverlappingPool';

/** Something refused in an IPPool or IPAMBlock, kept for a log line and an Event. */
export interface IpamProblem {
  /** `IPPool/<name>` or `IPAMBlock/<name>`. */
  object: string;
  reason: IpamProblemReason;
  message: string;
}

/** The structured logger IPAM writes to; agent/log.ts's Logger fits it. */
export interface IpamLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const silentIpamLogger: IpamLogger = { debug() {}, info() {}, warn() {}, error() {} };
