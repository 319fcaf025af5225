// The agent's network-policy concern: it watches Pods, Namespaces and
// NetworkPolicies, translates them into the compiler's own types (policy/k8s.ts
// validates; a malformed policy becomes its fail-closed equivalent and a problem),
// compiles this node's fragment of the `inet wiremesh` table, and reports problems
// as log lines and Events once per distinct condition. It holds no dataplane state:
// the agent composes the fragment into the table and the TableDriver applies it.
import type { KubernetesObject } from '@kubernetes/client-node';
import { Informer, type KubeClient } from '../kube/index.ts';
import {
  compilePolicies,
  namespaceFromK8s,
  networkPolicyFromK8s,
  podFromK8s,
  type CompileResult,
  type NetworkPolicy,
  type PolicyNamespace,
  type PolicyPod,
  type PolicyProblem,
} from '../policy/index.ts';
import { runInformer } from './watch.ts';
import { KubeEventRecorder, type EventTarget } from './events.ts';
import type { Logger } from './log.ts';

export const POLICY_EVENT_KINDS: EventTarget['kind'][] = ['NetworkPolicy', 'Pod', 'Namespace'];

export class PolicyWatch {
  private readonly pods: Informer<KubernetesObject>;
  private readonly namespaces: Informer<KubernetesObject>;
  private readonly policies: Informer<KubernetesObject>;
  private readonly log: Logger;
  private reported = new Set<string>();

  constructor(kube: KubeClient, log: Logger) {
    this.log = log;
    this.pods = new Informer(kube, '/api/v1/pods');
    this.namespaces = new Informer(kube, '/api/v1/namespaces');
    this.policies = new Informer(kube, '/apis/networking.k8s.io/v1/networkpolicies');
  }

  /** Resolves once all three have been listed; changes call `onChange` after that. */
  async start(onChange: (reason: string) => void): Promise<void> {
    await Promise.all([
      runInformer(this.pods, 'pods', this.log, onChange),
      runInformer(this.namespaces, 'namespaces', this.log, onChange),
      runInformer(this.policies, 'network policies', this.log, onChange),
    ]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.pods.stop(), this.namespaces.stop(), this.policies.stop()]);
  }

  /** Translate the cached objects and compile this node's policy fragment. */
  compile(self: string): CompileResult {
    const problems: PolicyProblem[] = [];
    const pods: PolicyPod[] = [];
    const namespaces: PolicyNamespace[] = [];
    const policies: NetworkPolicy[] = [];
    for (const raw of this.pods.list()) {
      const r = podFromK8s(raw);
      problems.push(...r.problems);
      if (r.pod) pods.push(r.pod);
    }
    for (const raw of this.namespaces.list()) {
      const r = namespaceFromK8s(raw);
      problems.push(...r.problems);
      if (r.namespace) namespaces.push(r.namespace);
    }
    for (const raw of this.policies.list()) {
      const r = networkPolicyFromK8s(raw);
      problems.push(...r.problems);
      if (r.policy) policies.push(r.policy);
    }
    const result = compilePolicies({ self, pods, namespaces, policies });
    return { ...result, problems: [...problems, ...result.problems] };
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
