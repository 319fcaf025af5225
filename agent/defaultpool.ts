// The default IP pool, created by the agents rather than shipped in the manifest (as
// calico-node creates its pool from CALICO_IPV4POOL_CIDR). deploy/wiremesh.yaml holds
// no custom resources: `kubectl apply` maps every object of a file before the CRDs it
// creates are established, so an IPPool beside its CRD failed the first apply on an
// empty cluster ("no matches for kind IPPool") and only a second one worked.
//
// At start-up, once its pool watch has listed, an agent whose `default-pool-cidr`
// names any CIDR creates one pool per CIDR (default-ipv4, default-ipv6) when the
// cluster has no IPPool at all. Every agent of a new cluster may try at once: the
// create is the arbiter, AlreadyExists means another agent won, and nobody reads
// and then writes. An existing pool is never changed, and a cluster that has any
// pool (say, only an IPv6 one) gets none: what the operator made stands. Pools the
// operator deletes later are not re-created until an agent starts again on a cluster
// without any. A create that fails otherwise (the apiserver away, RBAC missing) is
// logged and retried every 10 s until it succeeds or a pool appears; the agent runs
// on meanwhile, and its pods wait for addresses.
//
// The spec is deploy/default-pool.yaml's (a unit test keeps the two equal): that file
// remains for operators who set `default-pool-cidr: off` and apply pools themselves.
import { KubeApiError, type KubeClient } from '../kube/index.ts';
import {
  DEFAULT_BLOCK_SIZE,
  IPAM_GROUP,
  IPAM_VERSION,
  IPPOOL_PLURAL,
  parseCanonicalCidr,
} from '../ipam/index.ts';
import type { Logger } from './log.ts';

export interface IpPoolObject {
  apiVersion: string;
  kind: 'IPPool';
  metadata: { name: string };
  spec: {
    cidr: string;
    blockSize: number;
    encryption: 'WireGuard';
    encryptionMode: 'Required';
    encapsulation: 'None';
    natOutgoing: boolean;
  };
}

/** The default pools for the setting's CIDRs (valid, at most one per family). */
export function defaultPoolObjects(cidrs: readonly string[]): IpPoolObject[] {
  return cidrs.map((cidr) => {
    const c = parseCanonicalCidr(cidr);
    if (!c.ok) throw new Error(`default pool: ${c.reason}`);
    return {
      apiVersion: `${IPAM_GROUP}/${IPAM_VERSION}`,
      kind: 'IPPool',
      metadata: { name: `default-ipv${c.value.family}` },
      spec: {
        cidr,
        blockSize: DEFAULT_BLOCK_SIZE[c.value.family],
        encryption: 'WireGuard',
        encryptionMode: 'Required',
        encapsulation: 'None',
        natOutgoing: false,
      },
    };
  });
}

export interface DefaultPoolOutcome {
  /** Pools this agent created. */
  created: string[];
  /** Pools another agent created first (AlreadyExists). */
  existed: string[];
}

const POOLS_PATH = `/apis/${IPAM_GROUP}/${IPAM_VERSION}/${IPPOOL_PLURAL}`;

/**
 * Create the default pools when `poolCount()` (the watch's cache) says there is none.
 * Throws the first error other than AlreadyExists, after trying every pool.
 */
export async function ensureDefaultPools(
  kube: KubeClient,
  cidrs: readonly string[],
  poolCount: () => number,
): Promise<DefaultPoolOutcome> {
  const out: DefaultPoolOutcome = { created: [], existed: [] };
  if (cidrs.length === 0 || poolCount() > 0) return out;
  let failure: Error | undefined;
  for (const pool of defaultPoolObjects(cidrs)) {
    try {
      await kube.request('POST', POOLS_PATH, pool);
      out.created.push(pool.metadata.name);
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 409) out.existed.push(pool.metadata.name);
      else failure ??= e instanceof Error ? e : new Error(String(e));
    }
  }
  if (failure !== undefined) throw failure;
  return out;
}

export interface DefaultPoolsOptions {
  kube: KubeClient;
  cidrs: readonly string[];
  poolCount: () => number;
  log: Logger;
  retryMs?: number;
  /** Injectable timers for tests. */
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
}

/** ensureDefaultPools at start-up, retried until it succeeds, a pool appears or stop(). */
export class DefaultPools {
  private readonly opts: DefaultPoolsOptions;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private timer: unknown;
  private stopped = false;

  constructor(options: DefaultPoolsOptions) {
    this.opts = options;
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((h) => clearTimeout(h as NodeJS.Timeout));
  }

  /** The first attempt; resolves when it is done, whatever its outcome. */
  async start(): Promise<void> {
    await this.attempt();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.timer = undefined;
  }

  private async attempt(): Promise<void> {
    this.timer = undefined;
    if (this.stopped) return;
    const { log, cidrs } = this.opts;
    try {
      const r = await ensureDefaultPools(this.opts.kube, cidrs, this.opts.poolCount);
      for (const name of r.created) log.info('created the default IP pool', { pool: name, cidrs });
      for (const name of r.existed)
        log.info('the default IP pool was created by another node', { pool: name });
    } catch (e) {
      const retryMs = this.opts.retryMs ?? 10_000;
      const error = (e as Error).message;
      log.error('cannot create the default IP pool; retrying', {
        cidrs,
        error,
        retryInMs: retryMs,
        // Some Kubernetes releases stop the apiserver's ConfigMap parameter informer for
        // good once no admission binding names a ConfigMap (wiremesh uninstalled), so
        // after a reinstall the policy never finds its parameter again.
        ...(/no params found/.test(error)
          ? {
              hint:
                'the apiserver does not see the wiremesh-config ConfigMap as the admission ' +
                'policy wiremesh-agent-default-pool parameter, a known Kubernetes bug after an ' +
                'uninstall and reinstall: restart the kube-apiserver, or create the pool as an ' +
                'administrator (kubectl apply -f deploy/default-pool.yaml)',
            }
          : {}),
      });
      if (!this.stopped) this.timer = this.setTimer(() => void this.attempt(), retryMs);
    }
  }
}
