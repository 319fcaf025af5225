// An in-memory BlockApi for unit tests, with the apiserver's semantics where IPAM
// depends on them: create conflicts with AlreadyExists, writes carry a
// resourceVersion and a stale one is a Conflict, deletes honour uid and
// resourceVersion preconditions. Objects are stored as the apiserver would hold
// them and go through the same translation as KubeBlockApi (k8s.ts), so malformed
// objects can be planted. Every call yields to the event loop first, so concurrent
// callers interleave as they would over a network, and calls can be made to fail:
// `failNext` (one-shot injected errors), `unreachable` (every call fails), and
// `beforeCall` (a hook to run code, e.g. a competing write, just before a call).
import { randomUUID } from 'node:crypto';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import {
  IpamApiError,
  type BlockApi,
  type BlockList,
  type BlockWrite,
  type IpamApiErrorReason,
  type PoolList,
} from './api.ts';
import { blockName } from './cidr.ts';
import {
  IPAM_API_VERSION,
  allocationsToK8s,
  blockListFromK8s,
  ipamBlockFromK8s,
  ipamBlockToK8s,
  poolListFromK8s,
} from './k8s.ts';
import type { Allocation, IpamBlock } from './types.ts';

export type FakeCall = keyof BlockApi;

interface StoredObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; uid: string; resourceVersion: string; creationTimestamp: string };
  spec: Record<string, unknown>;
}

export class FakeBlockApi implements BlockApi {
  /** Every call fails with Unavailable while set. */
  unreachable = false;
  /** Awaited at the start of every call, after the yield. */
  beforeCall: ((call: FakeCall, arg: unknown) => Promise<void> | void) | undefined;
  readonly calls: Record<FakeCall, number> = {
    listPools: 0,
    listBlocks: 0,
    getBlock: 0,
    createBlock: 0,
    updateAllocations: 0,
    deleteBlock: 0,
    nodeLabels: 0,
  };
  private readonly pools = new Map<string, StoredObject>();
  private readonly blocksByName = new Map<string, StoredObject>();
  private readonly labels = new Map<string, Record<string, string>>();
  private readonly failures: { call: FakeCall; reason: IpamApiErrorReason }[] = [];
  private version = 100;
  private clock = Date.parse('2026-01-01T00:00:00Z');

  /** Add or replace an IPPool object (spec as in YAML). */
  putPool(name: string, spec: Record<string, unknown>): void {
    const existing = this.pools.get(name);
    this.pools.set(name, this.stored('IPPool', name, spec, existing));
  }

  deletePool(name: string): void {
    this.pools.delete(name);
  }

  /** Plant an IPAMBlock object as-is (it may be malformed). */
  putRawBlock(name: string, spec: Record<string, unknown>): void {
    this.blocksByName.set(name, this.stored('IPAMBlock', name, spec, this.blocksByName.get(name)));
  }

  /** Remove a block behind IPAM's back (an operator's `kubectl delete`). */
  removeBlock(name: string): void {
    this.blocksByName.delete(name);
  }

  setNodeLabels(node: string, labels: Record<string, string>): void {
    this.labels.set(node, { ...labels });
  }

  /** The next `count` calls of `call` fail with `reason`. */
  failNext(call: FakeCall, reason: IpamApiErrorReason = 'Unavailable', count = 1): void {
    for (let i = 0; i < count; i++) this.failures.push({ call, reason });
  }

  /** The stored blocks, translated, by name. */
  blocks(): IpamBlock[] {
    return blockListFromK8s([...this.blocksByName.values()].map(clone)).blocks.sort((a, b) =>
      a.name < b.name ? -1 : 1,
    );
  }

  raw(name: string): StoredObject | undefined {
    const o = this.blocksByName.get(name);
    return o ? clone(o) : undefined;
  }

  async listPools(): Promise<PoolList> {
    await this.enter('listPools', undefined);
    return poolListFromK8s([...this.pools.values()].map(clone));
  }

  async listBlocks(): Promise<BlockList> {
    await this.enter('listBlocks', undefined);
    return blockListFromK8s([...this.blocksByName.values()].map(clone));
  }

  async getBlock(name: string): Promise<IpamBlock | null> {
    await this.enter('getBlock', name);
    const o = this.blocksByName.get(name);
    return o ? ipamBlockFromK8s(clone(o)).block : null;
  }

  async createBlock(block: BlockWrite): Promise<IpamBlock> {
    await this.enter('createBlock', block);
    const name = blockName(block.cidr);
    if (this.blocksByName.has(name)) {
      throw new IpamApiError('AlreadyExists', `ipamblocks "${name}" already exists`, {
        status: 409,
      });
    }
    const spec = ipamBlockToK8s(block).spec as Record<string, unknown>;
    const o = this.stored('IPAMBlock', name, spec, undefined);
    this.blocksByName.set(name, o);
    return this.parse(o);
  }

  async updateAllocations(
    name: string,
    allocations: ReadonlyMap<string, Allocation>,
    resourceVersion: string,
  ): Promise<IpamBlock> {
    await this.enter('updateAllocations', { name, allocations, resourceVersion });
    const o = this.blocksByName.get(name);
    if (!o) throw new IpamApiError('NotFound', `ipamblocks "${name}" not found`, { status: 404 });
    if (o.metadata.resourceVersion !== resourceVersion) {
      throw new IpamApiError(
        'Conflict',
        `Operation cannot be fulfilled on ipamblocks "${name}": the object has been modified`,
        { status: 409 },
      );
    }
    o.spec = { ...o.spec, allocations: allocationsToK8s(allocations) };
    o.metadata.resourceVersion = String(++this.version);
    return this.parse(o);
  }

  async deleteBlock(
    name: string,
    preconditions: { uid: string; resourceVersion?: string },
  ): Promise<void> {
    await this.enter('deleteBlock', { name, preconditions });
    const o = this.blocksByName.get(name);
    if (!o) throw new IpamApiError('NotFound', `ipamblocks "${name}" not found`, { status: 404 });
    if (
      o.metadata.uid !== preconditions.uid ||
      (preconditions.resourceVersion !== undefined &&
        o.metadata.resourceVersion !== preconditions.resourceVersion)
    ) {
      throw new IpamApiError('Conflict', `Precondition failed for ipamblocks "${name}"`, {
        status: 409,
      });
    }
    this.blocksByName.delete(name);
  }

  async nodeLabels(node: string): Promise<Record<string, string>> {
    await this.enter('nodeLabels', node);
    const labels = this.labels.get(node);
    if (!labels) throw new IpamApiError('NotFound', `nodes "${node}" not found`, { status: 404 });
    return { ...labels };
  }

  private async enter(call: FakeCall, arg: unknown): Promise<void> {
    await yieldLoop();
    this.calls[call]++;
    if (this.beforeCall) await this.beforeCall(call, arg);
    if (this.unreachable) {
      throw new IpamApiError('Unavailable', `${call}: connect ECONNREFUSED (fake apiserver down)`);
    }
    const i = this.failures.findIndex((f) => f.call === call);
    if (i >= 0) {
      const [f] = this.failures.splice(i, 1);
      throw new IpamApiError(f?.reason ?? 'Unavailable', `${call}: injected ${f?.reason} failure`, {
        status: f?.reason === 'NotFound' ? 404 : f?.reason === 'Unavailable' ? 503 : 409,
      });
    }
  }

  private stored(
    kind: string,
    name: string,
    spec: Record<string, unknown>,
    existing: StoredObject | undefined,
  ): StoredObject {
    this.clock += 1000;
    return {
      apiVersion: IPAM_API_VERSION,
      kind,
      metadata: {
        name,
        uid: existing?.metadata.uid ?? randomUUID(),
        resourceVersion: String(++this.version),
        creationTimestamp:
          existing?.metadata.creationTimestamp ?? new Date(this.clock).toISOString(),
      },
      spec: clone(spec),
    };
  }

  private parse(o: StoredObject): IpamBlock {
    const { block } = ipamBlockFromK8s(clone(o));
    if (!block) throw new Error(`fake: stored block ${o.metadata.name} does not parse`);
    return block;
  }
}

function clone<T>(v: T): T {
  return structuredClone(v);
}
