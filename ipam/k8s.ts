// The Kubernetes boundary for IPAM: IPPool and IPAMBlock objects become IpPool and
// IpamBlock, validated as they go, and KubeBlockApi reaches them through
// CustomObjectsApi. CRD specs are untrusted input even though the apiserver checks
// the schema (an older CRD, a direct etcd write, a bug elsewhere): a pool with any
// fault is refused whole, with problems to log (a half-understood pool could fail
// open, e.g. an unknown encryption read as none); a block whose CIDR parses is kept,
// because it occupies that range whatever else is wrong with it, and an allocation
// whose address lies in the block is kept, because someone may be using it.
//
// A block this node writes names its Node as its owner (an ownerReference with the
// Node's uid): when the Node object is deleted, Kubernetes' garbage collector deletes
// its blocks, and no agent needs the right to delete another node's blocks (the
// admission policy of deploy/admission.yaml lets an agent write only its own).
import { kubeClient, KubeApiError, type KubeClient } from '../kube/index.ts';
import {
  IpamApiError,
  type BlockApi,
  type BlockList,
  type BlockWrite,
  type IpamApiErrorReason,
  type PoolList,
} from './api.ts';
import { blockName, cidrContainsValue, parseCanonicalAddress, parseCanonicalCidr } from './cidr.ts';
import { isRecord, parseLabelSelector } from './selector.ts';
import {
  BLOCK_SIZE_RANGE,
  DEFAULT_BLOCK_SIZE,
  ENCAPSULATIONS,
  ENCRYPTIONS,
  ENCRYPTION_MODES,
  IPAMBLOCK_PLURAL,
  IPAM_GROUP,
  IPAM_VERSION,
  IPPOOL_PLURAL,
  type Allocation,
  type IpamBlock,
  type IpamProblem,
  type IpPool,
} from './types.ts';

export const IPAM_API_VERSION = `${IPAM_GROUP}/${IPAM_VERSION}`;

interface Meta {
  name: string;
  uid: string;
  resourceVersion: string;
  createdAt: number;
}

function metaOf(obj: Record<string, unknown>): Meta {
  const m = isRecord(obj.metadata) ? obj.metadata : {};
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  const ts = m.creationTimestamp;
  const created =
    ts instanceof Date ? ts.getTime() : typeof ts === 'string' ? Date.parse(ts) : Number.NaN;
  return {
    name: str(m.name),
    uid: str(m.uid),
    resourceVersion: str(m.resourceVersion),
    createdAt: Number.isFinite(created) ? created : 0,
  };
}

function oneOf<T extends string>(
  value: unknown,
  allowed: readonly T[],
  fallback: T,
): { value: T; ok: boolean } {
  if (value === undefined || value === null) return { value: fallback, ok: true };
  return allowed.includes(value as T)
    ? { value: value as T, ok: true }
    : { value: fallback, ok: false };
}

/** An IPPool object as an IpPool, or null with the reasons it was refused. */
export function ipPoolFromK8s(raw: unknown): { pool: IpPool | null; problems: IpamProblem[] } {
  const obj = isRecord(raw) ? raw : {};
  const meta = metaOf(obj);
  const object = `IPPool/${meta.name || '?'}`;
  const problems: IpamProblem[] = [];
  const refuse = (reason: IpamProblem['reason'], message: string) =>
    problems.push({ object, reason, message });
  const spec = isRecord(obj.spec) ? obj.spec : {};

  const cidr = parseCanonicalCidr(spec.cidr as string);
  if (!cidr.ok) refuse('InvalidCIDR', `spec.cidr ${cidr.reason}`);

  let blockSize = 0;
  if (cidr.ok) {
    const family = cidr.value.family;
    const [min, max] = BLOCK_SIZE_RANGE[family];
    blockSize =
      spec.blockSize === undefined || spec.blockSize === null
        ? DEFAULT_BLOCK_SIZE[family]
        : (spec.blockSize as number);
    if (!Number.isInteger(blockSize) || blockSize < min || blockSize > max) {
      refuse(
        'InvalidBlockSize',
        `spec.blockSize ${String(spec.blockSize)} is out of range for IPv${family} (${min} to ${max})`,
      );
    } else if (blockSize < cidr.value.prefix) {
      refuse(
        'InvalidBlockSize',
        spec.blockSize === undefined || spec.blockSize === null
          ? `${spec.cidr as string} is smaller than the default /${blockSize} block; set spec.blockSize`
          : `spec.blockSize /${blockSize} is larger than the pool ${spec.cidr as string}`,
      );
    }
  }

  const selector = parseLabelSelector(spec.nodeSelector);
  if (!selector.ok) refuse('InvalidNodeSelector', `spec.${selector.reason}`);

  // Fail-safe fallbacks: a pool with a problem is refused anyway, but what it would
  // have meant errs on the side of encryption.
  const encryption = oneOf(spec.encryption, ENCRYPTIONS, 'WireGuard');
  const encryptionMode = oneOf(spec.encryptionMode, ENCRYPTION_MODES, 'Preferred');
  const encapsulation = oneOf(spec.encapsulation, ENCAPSULATIONS, 'None');
  if (!encryption.ok)
    refuse('InvalidSetting', `spec.encryption must be one of ${ENCRYPTIONS.join(', ')}`);
  if (!encryptionMode.ok)
    refuse('InvalidSetting', `spec.encryptionMode must be one of ${ENCRYPTION_MODES.join(', ')}`);
  if (!encapsulation.ok)
    refuse('InvalidSetting', `spec.encapsulation must be one of ${ENCAPSULATIONS.join(', ')}`);
  if (encryption.value === 'None' && encryptionMode.value === 'Required') {
    refuse('InvalidSetting', 'spec.encryptionMode Required needs spec.encryption WireGuard');
  }
  const flag = (key: 'natOutgoing' | 'disabled'): boolean => {
    const v = spec[key];
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') refuse('InvalidSetting', `spec.${key} must be true or false`);
    return v === true;
  };
  const natOutgoing = flag('natOutgoing');
  const disabled = flag('disabled');
  if (!meta.name) refuse('InvalidName', 'the object has no name');

  if (problems.length || !cidr.ok || !selector.ok) return { pool: null, problems };
  return {
    pool: {
      name: meta.name,
      uid: meta.uid,
      createdAt: meta.createdAt,
      cidr: spec.cidr as string,
      family: cidr.value.family,
      blockSize,
      nodeSelector: selector.value,
      encryption: encryption.value,
      encryptionMode: encryptionMode.value,
      encapsulation: encapsulation.value,
      natOutgoing,
      disabled,
    },
    problems,
  };
}

/** An IPAMBlock object as an IpamBlock (null only when its CIDR, pool or node is unusable). */
export function ipamBlockFromK8s(raw: unknown): {
  block: IpamBlock | null;
  problems: IpamProblem[];
} {
  const obj = isRecord(raw) ? raw : {};
  const meta = metaOf(obj);
  const object = `IPAMBlock/${meta.name || '?'}`;
  const problems: IpamProblem[] = [];
  const note = (reason: IpamProblem['reason'], message: string) =>
    problems.push({ object, reason, message });
  const spec = isRecord(obj.spec) ? obj.spec : {};

  const cidr = parseCanonicalCidr(spec.cidr as string);
  if (!cidr.ok) {
    note('InvalidCIDR', `spec.cidr ${cidr.reason}`);
    return { block: null, problems };
  }
  const text = spec.cidr as string;
  if (meta.name !== blockName(text)) {
    note('InvalidName', `the name of the block ${text} must be ${blockName(text)}`);
  }
  const pool = typeof spec.pool === 'string' ? spec.pool : '';
  const node = typeof spec.node === 'string' ? spec.node : '';
  if (!pool || !node) {
    note('InvalidSetting', 'spec.pool and spec.node must name a pool and a node');
    return { block: null, problems };
  }

  const allocations = new Map<string, Allocation>();
  const holder = new Map<string, string>(); // address -> handle
  const entries = isRecord(spec.allocations) ? Object.entries(spec.allocations) : [];
  if (spec.allocations !== undefined && !isRecord(spec.allocations)) {
    note('InvalidAllocation', 'spec.allocations must be an object keyed by handle');
  }
  for (const [handle, entry] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const e = isRecord(entry) ? entry : {};
    const address = parseCanonicalAddress(e.address as string);
    if (!address.ok || !cidrContainsValue(cidr.value, address.value.family, address.value.value)) {
      note(
        'InvalidAllocation',
        `allocation '${handle}': ${address.ok ? `${e.address as string} is not in ${text}` : address.reason}`,
      );
      continue;
    }
    const str = (key: string): string => {
      const v = e[key];
      if (v === undefined || v === null) return '';
      if (typeof v === 'string') return v;
      note('InvalidAllocation', `allocation '${handle}': ${key} must be a string`);
      return '';
    };
    const addr = e.address as string;
    const other = holder.get(addr);
    if (other !== undefined) {
      note('DuplicateAddress', `${addr} is allocated to both '${other}' and '${handle}'`);
    } else holder.set(addr, handle);
    allocations.set(handle, {
      handle,
      address: addr,
      namespace: str('namespace'),
      pod: str('pod'),
      containerID: str('containerID'),
      ifName: str('ifName'),
      ...(str('podUID') ? { podUID: str('podUID') } : {}),
      allocatedAt: 0,
    });
  }
  return {
    block: {
      name: meta.name,
      cidr: text,
      family: cidr.value.family,
      pool,
      node,
      allocations,
      resourceVersion: meta.resourceVersion,
      uid: meta.uid,
      problems,
    },
    problems,
  };
}

/** spec.allocations as the CRD stores it (handles in sorted order, for stable diffs). */
export function allocationsToK8s(
  allocations: ReadonlyMap<string, Allocation>,
): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const handle of [...allocations.keys()].sort()) {
    const a = allocations.get(handle);
    if (!a) continue;
    out[handle] = {
      address: a.address,
      namespace: a.namespace,
      pod: a.pod,
      containerID: a.containerID,
      ifName: a.ifName,
      ...(a.podUID ? { podUID: a.podUID } : {}),
    };
  }
  return out;
}

/** The ownerReference a block's object carries: its node's Node object. */
export function nodeOwnerReference(node: string, uid: string): Record<string, string> {
  return { apiVersion: 'v1', kind: 'Node', name: node, uid };
}

/** The object for a block; with the node's uid, owned by the Node object. */
export function ipamBlockToK8s(block: BlockWrite, nodeUid?: string): Record<string, unknown> {
  return {
    apiVersion: IPAM_API_VERSION,
    kind: 'IPAMBlock',
    metadata: {
      name: blockName(block.cidr),
      ...(nodeUid ? { ownerReferences: [nodeOwnerReference(block.node, nodeUid)] } : {}),
    },
    spec: {
      cidr: block.cidr,
      pool: block.pool,
      node: block.node,
      allocations: allocationsToK8s(block.allocations),
    },
  };
}

export function poolListFromK8s(items: readonly unknown[]): PoolList {
  const out: PoolList = { pools: [], problems: [] };
  for (const item of items) {
    const { pool, problems } = ipPoolFromK8s(item);
    if (pool) out.pools.push(pool);
    out.problems.push(...problems);
  }
  return out;
}

export function blockListFromK8s(items: readonly unknown[]): BlockList {
  const out: BlockList = { blocks: [], problems: [] };
  for (const item of items) {
    const { block, problems } = ipamBlockFromK8s(item);
    if (block) out.blocks.push(block);
    out.problems.push(...problems);
  }
  return out;
}

/** The HTTP status of a client-node error, if it is one. */
function statusOf(e: unknown): number | undefined {
  return e instanceof KubeApiError ? e.status : undefined;
}

function translate(e: unknown, what: string, on409: IpamApiErrorReason): IpamApiError {
  const status = statusOf(e);
  const reason: IpamApiErrorReason =
    status === 409 ? on409 : status === 404 ? 'NotFound' : 'Unavailable';
  const detail = e instanceof Error ? e.message.split('\n')[0] : String(e);
  return new IpamApiError(reason, `${what}: ${detail}`, { status, cause: e });
}

/** BlockApi over a real apiserver. */
export class KubeBlockApi implements BlockApi {
  private readonly kube: KubeClient;
  /** Node uids by name, for the blocks' ownerReferences. */
  private readonly nodeUids = new Map<string, string>();

  /** The node whose blocks this writes: their updates carry its ownerReference too. */
  private readonly owner: string | undefined;

  constructor(kube: KubeClient, options: { owner?: string } = {}) {
    this.kube = kube;
    this.owner = options.owner;
  }

  static fromFile(kubeconfigPath: string, options: { owner?: string } = {}): KubeBlockApi {
    return new KubeBlockApi(kubeClient(kubeconfigPath), options);
  }

  private path(plural: string, name?: string): string {
    return `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${plural}${name ? `/${encodeURIComponent(name)}` : ''}`;
  }

  /**
   * Every object of a kind, as of now: allocation decides on this list, so it is a
   * consistent read (no resourceVersion), never the watch cache's possibly older
   * state. One answer read item by item; a current apiserver serves it from its
   * cache once the cache has caught up, without paging through etcd.
   */
  private async listAll(plural: string): Promise<unknown[]> {
    const items: unknown[] = [];
    await this.kube.list(this.path(plural), {}, (item) => items.push(item));
    return items;
  }

  async listPools(): Promise<PoolList> {
    try {
      return poolListFromK8s(await this.listAll(IPPOOL_PLURAL));
    } catch (e) {
      throw translate(e, 'listing IPPools', 'Conflict');
    }
  }

  async listBlocks(): Promise<BlockList> {
    try {
      return blockListFromK8s(await this.listAll(IPAMBLOCK_PLURAL));
    } catch (e) {
      throw translate(e, 'listing IPAMBlocks', 'Conflict');
    }
  }

  async getBlock(name: string): Promise<IpamBlock | null> {
    let raw: unknown;
    try {
      raw = await this.kube.request('GET', this.path(IPAMBLOCK_PLURAL, name));
    } catch (e) {
      if (statusOf(e) === 404) return null;
      throw translate(e, `reading IPAMBlock ${name}`, 'Conflict');
    }
    return ipamBlockFromK8s(raw).block;
  }

  async createBlock(block: BlockWrite): Promise<IpamBlock> {
    let raw: unknown;
    try {
      const uid = await this.nodeUid(block.node);
      raw = await this.kube.request(
        'POST',
        this.path(IPAMBLOCK_PLURAL),
        ipamBlockToK8s(block, uid),
      );
    } catch (e) {
      // A Node re-created under the same name has a new uid.
      if (statusOf(e) === 403 || statusOf(e) === 422) this.nodeUids.delete(block.node);
      throw translate(e, `creating IPAMBlock ${blockName(block.cidr)}`, 'AlreadyExists');
    }
    return this.mustParse(raw, blockName(block.cidr));
  }

  async updateAllocations(
    name: string,
    allocations: ReadonlyMap<string, Allocation>,
    resourceVersion: string,
  ): Promise<IpamBlock> {
    let raw: unknown;
    try {
      // A JSON patch that carries the resourceVersion it was computed from: the
      // apiserver applies it only to that version (409 otherwise), and leaves every
      // other field (labels, annotations) as it is.
      // The ownerReference too, so a block written before blocks had one gets it.
      const node = this.owner;
      const uid = node ? await this.nodeUid(node) : undefined;
      raw = await this.kube.request(
        'PATCH',
        this.path(IPAMBLOCK_PLURAL, name),
        [
          { op: 'replace', path: '/metadata/resourceVersion', value: resourceVersion },
          { op: 'add', path: '/spec/allocations', value: allocationsToK8s(allocations) },
          ...(node && uid
            ? [
                {
                  op: 'add',
                  path: '/metadata/ownerReferences',
                  value: [nodeOwnerReference(node, uid)],
                },
              ]
            : []),
        ],
        { contentType: 'application/json-patch+json' },
      );
    } catch (e) {
      throw translate(e, `updating IPAMBlock ${name}`, 'Conflict');
    }
    return this.mustParse(raw, name);
  }

  async deleteBlock(
    name: string,
    preconditions: { uid: string; resourceVersion?: string },
  ): Promise<void> {
    try {
      await this.kube.request('DELETE', this.path(IPAMBLOCK_PLURAL, name), {
        apiVersion: 'v1',
        kind: 'DeleteOptions',
        preconditions,
      });
    } catch (e) {
      throw translate(e, `deleting IPAMBlock ${name}`, 'Conflict');
    }
  }

  async nodeLabels(node: string): Promise<Record<string, string>> {
    try {
      const obj = await this.kube.request<{ metadata?: { labels?: Record<string, string> } }>(
        'GET',
        `/api/v1/nodes/${encodeURIComponent(node)}`,
      );
      return obj.metadata?.labels ?? {};
    } catch (e) {
      throw translate(e, `reading Node ${node}`, 'Conflict');
    }
  }

  /** The Node's uid (cached); undefined when there is no such Node. */
  private async nodeUid(node: string): Promise<string | undefined> {
    const cached = this.nodeUids.get(node);
    if (cached) return cached;
    try {
      const obj = await this.kube.request<{ metadata?: { uid?: string } }>(
        'GET',
        `/api/v1/nodes/${encodeURIComponent(node)}`,
      );
      const uid = obj.metadata?.uid;
      if (uid) this.nodeUids.set(node, uid);
      return uid;
    } catch (e) {
      // No such Node: the block is written without an owner (tests, a node registering).
      if (statusOf(e) === 404) return undefined;
      throw translate(e, `reading Node ${node}`, 'Conflict');
    }
  }

  private mustParse(raw: unknown, name: string): IpamBlock {
    const { block, problems } = ipamBlockFromK8s(raw);
    if (!block) {
      throw new IpamApiError(
        'Unavailable',
        `the apiserver returned an unusable IPAMBlock ${name}: ${problems.map((p) => p.message).join('; ')}`,
      );
    }
    return block;
  }
}
