// The agent's network-policy concern: it watches Pods, Namespaces and
// NetworkPolicies, translates them into the compiler's own types (policy/k8s.ts
// validates; a malformed policy becomes its fail-closed equivalent and a problem),
// compiles this node's fragment of the `inet wiremesh` table, and reports problems
// as log lines and Events once per distinct condition. It holds no dataplane state:
// the agent composes the fragment into the table and the TableDriver applies it.
//
// AdminNetworkPolicies and BaselineAdminNetworkPolicies (policy.networking.k8s.io/
// v1alpha1) are CRDs a cluster may not have. Their first list is part of start-up
// like the others (nothing is programmed without knowing them), except that a 404
// (the resource is not served: CRDs not installed) counts as "none": it is logged
// once, start-up goes on, and the list is retried in the background (5 s, doubling
// to 60 s) until the CRDs appear; their objects then schedule a reconcile like any
// change. Once listed, the informer watches on; should the CRDs go away later, it
// keeps serving what it last saw (the dataplane stays as it is) and retries.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Informer, KubeApiError, type KubeClient } from '../kube/index.ts';
import {
  adminNetworkPolicyFromK8s,
  baselineAdminNetworkPolicyFromK8s,
  compilePolicies,
  namespaceFromK8s,
  networkPolicyFromK8s,
  podRecordForPolicy,
  POD_FIELDS_FOR_POLICY,
  samePodRecord,
  type PodRecord,
  type AdminNetworkPolicy,
  type BaselineAdminNetworkPolicy,
  type CompileResult,
  type NetworkPolicy,
  type PolicyNamespace,
  type PolicyPod,
  type PolicyProblem,
} from '../policy/index.ts';
import { runInformer } from './watch.ts';
import { KubeEventRecorder, type EventTarget } from './events.ts';
import type { Logger } from './log.ts';

export const POLICY_EVENT_KINDS: EventTarget['kind'][] = [
  'NetworkPolicy',
  'Pod',
  'Namespace',
  'AdminNetworkPolicy',
  'BaselineAdminNetworkPolicy',
];

const ADMIN_API = '/apis/policy.networking.k8s.io/v1alpha1';

/**
 * One resource's translations, kept from pass to pass by object identity: the
 * informer replaces an object on every change and never mutates one, so an object
 * seen before is not translated again and a pass translates only what changed.
 * Entries of objects gone from the cache go with them (a WeakMap). The last pass's
 * list is compared first, place by place: the informer keeps a changed object's
 * place, so at 45,000 pods and one label change every other place holds the object
 * it held, and a look-up in the WeakMap is only needed where it does not.
 */
class Translations<R> {
  private readonly translate: (raw: KubernetesObject) => R;
  private readonly cache = new WeakMap<KubernetesObject, R>();
  private last: { raws: readonly KubernetesObject[]; out: R[] } = { raws: [], out: [] };

  constructor(translate: (raw: KubernetesObject) => R) {
    this.translate = translate;
  }

  all(raws: readonly KubernetesObject[]): R[] {
    const { raws: lastRaws, out: lastOut } = this.last;
    const out: R[] = new Array<R>(raws.length);
    for (let i = 0; i < raws.length; i++) {
      const raw = raws[i] as KubernetesObject;
      if (lastRaws[i] === raw) {
        out[i] = lastOut[i] as R;
        continue;
      }
      let result = this.cache.get(raw);
      if (result === undefined) {
        result = this.translate(raw);
        this.cache.set(raw, result);
      }
      out[i] = result;
    }
    this.last = { raws, out };
    return out;
  }
}

export class PolicyWatch {
  private readonly pods: Informer<PodRecord, KubernetesObject>;
  private readonly namespaces: Informer<KubernetesObject>;
  private readonly policies: Informer<KubernetesObject>;
  private readonly anps: Informer<KubernetesObject>;
  private readonly banps: Informer<KubernetesObject>;
  private readonly log: Logger;
  private reported = new Set<string>();
  private stopped = false;
  private readonly retries = new Set<NodeJS.Timeout>();
  private readonly retryDelays: { first: number; max: number };
  private readonly namespaceTranslations = new Translations(namespaceFromK8s);
  private readonly policyTranslations = new Translations(networkPolicyFromK8s);
  private readonly anpTranslations = new Translations(adminNetworkPolicyFromK8s);
  private readonly banpTranslations = new Translations(baselineAdminNetworkPolicyFromK8s);
  /** Counts the watches' changes: a compile of an unchanged generation is reused. */
  private generation = 0;
  private last: { generation: number; self: string; result: CompileResult } | null = null;

  constructor(
    kube: KubeClient,
    log: Logger,
    retryDelays: { first: number; max: number } = { first: 5_000, max: 60_000 },
  ) {
    this.log = log;
    this.retryDelays = retryDelays;
    this.anps = new Informer(kube, `${ADMIN_API}/adminnetworkpolicies`);
    this.banps = new Informer(kube, `${ADMIN_API}/baselineadminnetworkpolicies`);
    // Pods: kept as the compiler reads them (translated once, as they arrive), and a
    // change nothing of which the compiler reads (status conditions, container
    // restarts...) is no change.
    this.pods = new Informer<PodRecord, KubernetesObject>(
      kube,
      '/api/v1/pods',
      {},
      { transform: podRecordForPolicy, unchanged: samePodRecord, fields: POD_FIELDS_FOR_POLICY },
    );
    this.namespaces = new Informer(kube, '/api/v1/namespaces');
    this.policies = new Informer(kube, '/apis/networking.k8s.io/v1/networkpolicies');
  }

  /**
   * Resolves once everything has been listed (the admin policies: or found not
   * served); changes call `onChange` after that.
   */
  async start(notify: (reason: string) => void): Promise<void> {
    this.stopped = false;
    const onChange = (reason: string) => {
      this.generation++;
      notify(reason);
    };
    await Promise.all([
      runInformer(this.pods, 'pods', this.log, onChange),
      runInformer(this.namespaces, 'namespaces', this.log, onChange),
      runInformer(this.policies, 'network policies', this.log, onChange),
      this.startOptional(this.anps, 'admin network policies', onChange),
      this.startOptional(this.banps, 'baseline admin network policies', onChange),
    ]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.retries) clearTimeout(timer);
    this.retries.clear();
    await Promise.all(
      [this.pods, this.namespaces, this.policies, this.anps, this.banps].map((i) => i.stop()),
    );
  }

  /**
   * runInformer for a resource that may not be served: the first list is retried
   * until it succeeds, except that a 404 resolves at once (none, for now) and
   * lists again in the background.
   */
  private async startOptional(
    informer: Informer<KubernetesObject>,
    what: string,
    onChange: (reason: string) => void,
  ): Promise<void> {
    for (const verb of ['add', 'update', 'delete'] as const) {
      informer.on(verb, () => onChange(`${what} ${verb}`));
    }
    informer.on('error', (err: unknown) => {
      this.log.warn(`${what} watch failed; retrying`, { error: (err as Error)?.message });
    });
    for (let delay = 500; !this.stopped; delay = Math.min(delay * 2, 10_000)) {
      try {
        await informer.start();
        return;
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 404) {
          this.log.info(
            `${what} are not served (CRDs not installed); none enforced until they are`,
            {
              retryInMs: this.retryDelays.first,
            },
          );
          this.listLater(informer, what, onChange, this.retryDelays.first);
          return;
        }
        this.log.warn(`cannot list ${what} yet; retrying`, {
          error: (e as Error).message,
          retryInMs: delay,
        });
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  /** Lists a not-yet-served resource again after `delay`, backing off while it is not. */
  private listLater(
    informer: Informer<KubernetesObject>,
    what: string,
    onChange: (reason: string) => void,
    delay: number,
  ): void {
    const timer = setTimeout(() => {
      this.retries.delete(timer);
      if (this.stopped) return;
      informer.start().then(
        () => {
          this.log.info(`${what} are served now`, { count: informer.list().length });
          onChange(`${what} listed`);
        },
        (e: unknown) => {
          const notServed = e instanceof KubeApiError && e.status === 404;
          const next = notServed ? Math.min(delay * 2, this.retryDelays.max) : delay;
          this.listLater(informer, what, onChange, next);
        },
      );
    }, delay);
    this.retries.add(timer);
  }

  /**
   * Translate the cached objects (only those changed since the last pass) and compile
   * this node's policy fragment.
   */
  compile(self: string): CompileResult {
    // A periodic resync re-applies and verifies the table; it need not compile again
    // what nothing changed (a quarter second at 10,000 pods, in which a real change
    // would wait). Every change to a cached object comes through a watch event.
    if (this.last && this.last.generation === this.generation && this.last.self === self)
      return this.last.result;
    const generation = this.generation;
    const problems: PolicyProblem[] = [];
    const pods: PolicyPod[] = [];
    const namespaces: PolicyNamespace[] = [];
    const policies: NetworkPolicy[] = [];
    for (const r of this.pods.list()) {
      if (r.problems.length > 0) problems.push(...r.problems);
      if (r.pod) pods.push(r.pod);
    }
    for (const r of this.namespaceTranslations.all(this.namespaces.list())) {
      problems.push(...r.problems);
      if (r.namespace) namespaces.push(r.namespace);
    }
    for (const r of this.policyTranslations.all(this.policies.list())) {
      problems.push(...r.problems);
      if (r.policy) policies.push(r.policy);
    }
    const adminPolicies: AdminNetworkPolicy[] = [];
    for (const r of this.anpTranslations.all(this.anps.list())) {
      problems.push(...r.problems);
      if (r.policy) adminPolicies.push(r.policy);
    }
    let baselinePolicy: BaselineAdminNetworkPolicy | null = null;
    for (const r of this.banpTranslations.all(this.banps.list())) {
      problems.push(...r.problems);
      if (!r.policy) continue;
      // The API allows one, named default; any other is reported and ignored.
      if (r.policy.name === 'default') baselinePolicy = r.policy;
      else
        problems.push({
          kind: 'BaselineAdminNetworkPolicy',
          namespace: '',
          name: r.policy.name,
          reason: 'InvalidPolicy',
          message:
            "only the BaselineAdminNetworkPolicy named 'default' is enforced; this one is ignored",
        });
    }
    const result = compilePolicies({
      self,
      pods,
      namespaces,
      policies,
      adminPolicies,
      baselinePolicy,
    });
    const out = { ...result, problems: [...problems, ...result.problems] };
    this.last = { generation, self, result: out };
    return out;
  }

  /** Log each new problem once, emit its Event, and forget the ones that are gone. */
  report(problems: readonly PolicyProblem[], events: KubeEventRecorder): void {
    const keys = new Set<string>();
    const now = new Set<string>();
    for (const p of problems) {
      const target: EventTarget = {
        kind: p.kind,
        name: p.name,
        namespace: p.namespace || undefined,
      };
      keys.add(KubeEventRecorder.key(target, p.reason, p.message));
      const id = `${p.kind}/${p.namespace}/${p.name}/${p.reason}/${p.message}`;
      now.add(id);
      if (!this.reported.has(id))
        this.log.warn('network policy problem', {
          kind: p.kind,
          namespace: p.namespace,
          name: p.name,
          reason: p.reason,
          detail: p.message,
        });
      events.warn(target, p.reason, p.message);
    }
    this.reported = now;
    events.retain(keys, POLICY_EVENT_KINDS);
  }
}
