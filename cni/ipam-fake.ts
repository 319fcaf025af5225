// An in-memory PodIpam for the handler's unit tests: addresses 100.64.0.2 upwards by
// handle (and fd00:64::N beside each on a dual-stack node), the same handle always
// getting the same addresses, as IPAM guarantees.
import type { AttachmentRecord, AttachmentRequest, PodAllocation, PodIpam } from './handler.ts';

export class MemoryIpam implements PodIpam {
  readonly held = new Map<string, Omit<AttachmentRecord, 'pools'>>();
  private next = 2;
  /** Also hand out an IPv6 address (a dual-stack node). */
  dualStack = false;
  /** What ready() answers (STATUS): false before the agent has its pools and blocks. */
  isReady = true;
  /** Every request allocate() was given. */
  readonly requests: AttachmentRequest[] = [];
  allocate(req: AttachmentRequest): Promise<PodAllocation[]> {
    this.requests.push(req);
    const have =
      this.held.get(req.handle) ??
      (() => {
        const n = this.next++;
        const a = {
          addresses: [`100.64.0.${n}`, ...(this.dualStack ? [`fd00:64::${n}`] : [])],
          namespace: req.namespace,
          pod: req.pod,
          containerID: req.containerID,
          ifName: req.ifName,
        };
        this.held.set(req.handle, a);
        return a;
      })();
    return Promise.resolve(have.addresses.map((address) => ({ address })));
  }
  release(handle: string): Promise<boolean> {
    return Promise.resolve(this.held.delete(handle));
  }
  lookup(handle: string) {
    const a = this.held.get(handle);
    return a ? { ...a, pools: [] } : undefined;
  }
  handles(network: string): string[] {
    return [...this.held.keys()].filter((h) => h.startsWith(`${network}.`));
  }
  ready(): boolean {
    return this.isReady;
  }
}
