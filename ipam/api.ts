// BlockApi: everything IPAM asks of the apiserver, behind one small interface, so
// the claiming, syncing and crash-recovery logic can be tested against a fake that
// races and fails on demand (fake.ts), and runs against the real apiserver through
// KubeBlockApi (k8s.ts). Errors are reduced to what the logic must tell apart:
// AlreadyExists (a claim lost the race), Conflict (a stale resourceVersion),
// NotFound, and everything else (the apiserver is unreachable or refused).
import type { Allocation, IpamBlock, IpamProblem, IpPool } from './types.ts';

/** A block as IPAM writes it; the name is derived from the CIDR. */
export interface BlockWrite {
  cidr: string;
  pool: string;
  node: string;
  allocations: ReadonlyMap<string, Allocation>;
}

export interface PoolList {
  pools: IpPool[];
  /** Objects refused at the boundary. */
  problems: IpamProblem[];
}

export interface BlockList {
  blocks: IpamBlock[];
  problems: IpamProblem[];
}

export interface BlockApi {
  listPools(): Promise<PoolList>;
  listBlocks(): Promise<BlockList>;
  /** null when there is no such object. */
  getBlock(name: string): Promise<IpamBlock | null>;
  /** Creates the block's object: the claim. IpamApiError 'AlreadyExists' when it exists. */
  createBlock(block: BlockWrite): Promise<IpamBlock>;
  /**
   * Sets the block's allocations if its resourceVersion still matches ('Conflict' if
   * not, 'NotFound' if the object is gone). Nothing else of the object is touched.
   */
  updateAllocations(
    name: string,
    allocations: ReadonlyMap<string, Allocation>,
    resourceVersion: string,
  ): Promise<IpamBlock>;
  /** Deletes the object if its uid (and resourceVersion, if given) still match; 'NotFound' if gone. */
  deleteBlock(
    name: string,
    preconditions: { uid: string; resourceVersion?: string },
  ): Promise<void>;
  /** The node's labels, for pool nodeSelectors. */
  nodeLabels(node: string): Promise<Record<string, string>>;
}

export type IpamApiErrorReason = 'AlreadyExists' | 'Conflict' | 'NotFound' | 'Unavailable';

export class IpamApiError extends Error {
  readonly reason: IpamApiErrorReason;
  readonly status: number | undefined;
  constructor(
    reason: IpamApiErrorReason,
    message: string,
    options: { status?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'IpamApiError';
    this.reason = reason;
    this.status = options.status;
  }
}

export function apiErrorReason(e: unknown): IpamApiErrorReason | undefined {
  return e instanceof IpamApiError ? e.reason : undefined;
}
