// Kubernetes Events for conditions an operator must act on (a refused key, a
// duplicated key, a bad endpoint), emitted once per distinct condition rather
// than on every reconcile pass. Failures to emit are logged, never fatal.
import type { KubeClient } from '../kube/index.ts';
import type { Logger } from './log.ts';

export interface EventTarget {
  kind:
    | 'Node'
    | 'NetworkPolicy'
    | 'Pod'
    | 'Namespace'
    | 'IPPool'
    | 'IPAMBlock'
    | 'AdminNetworkPolicy'
    | 'BaselineAdminNetworkPolicy'
    | 'RemoteCluster'
    | 'Peer';
  name: string;
  /**
   * Namespaced objects only; the Event is recorded in the object's namespace, and
   * a cluster-scoped object's Event in `default`.
   */
  namespace?: string;
  uid?: string;
}

const API_VERSION: Record<EventTarget['kind'], string> = {
  Node: 'v1',
  Pod: 'v1',
  Namespace: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
  IPPool: 'wiremesh.io/v1alpha1',
  IPAMBlock: 'wiremesh.io/v1alpha1',
  AdminNetworkPolicy: 'policy.networking.k8s.io/v1alpha1',
  BaselineAdminNetworkPolicy: 'policy.networking.k8s.io/v1alpha1',
  RemoteCluster: 'wiremesh.io/v1alpha1',
  Peer: 'wiremesh.io/v1alpha1',
};

export interface EventSink {
  warn(target: EventTarget, reason: string, message: string): void;
  normal(target: EventTarget, reason: string, message: string): void;
}

export class KubeEventRecorder implements EventSink {
  private readonly kube: KubeClient;
  private readonly component: string;
  private readonly host: string;
  private readonly log: Logger;
  private readonly seen = new Set<string>();

  constructor(kube: KubeClient, host: string, log: Logger, component = 'wiremesh-agent') {
    this.kube = kube;
    this.host = host;
    this.log = log;
    this.component = component;
  }

  warn(target: EventTarget, reason: string, message: string): void {
    this.emit('Warning', target, reason, message);
  }

  normal(target: EventTarget, reason: string, message: string): void {
    this.emit('Normal', target, reason, message);
  }

  /**
   * Forget conditions no longer present, so they are reported again if they return.
   * With `kinds`, only conditions of those object kinds are considered, so each
   * concern (mesh: Nodes; policy: NetworkPolicies, Pods, Namespaces) keeps its own.
   */
  retain(keys: Set<string>, kinds?: readonly EventTarget['kind'][]): void {
    for (const k of this.seen) {
      if (keys.has(k)) continue;
      if (kinds && !kinds.some((kind) => k.startsWith(`${kind}/`))) continue;
      this.seen.delete(k);
    }
  }

  static key(target: EventTarget, reason: string, message: string): string {
    return `${target.kind}/${target.namespace ?? ''}/${target.name}/${reason}/${message}`;
  }

  private emit(
    type: 'Warning' | 'Normal',
    target: EventTarget,
    reason: string,
    message: string,
  ): void {
    const key = KubeEventRecorder.key(target, reason, message);
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const now = new Date();
    this.kube
      .request(
        'POST',
        `/api/v1/namespaces/${encodeURIComponent(target.namespace ?? 'default')}/events`,
        {
          apiVersion: 'v1',
          kind: 'Event',
          metadata: { generateName: `${target.name}.` },
          involvedObject: {
            kind: target.kind,
            name: target.name,
            namespace: target.namespace,
            uid: target.uid,
            apiVersion: API_VERSION[target.kind],
          },
          reason,
          message,
          type,
          source: { component: this.component, host: this.host },
          reportingComponent: this.component,
          reportingInstance: this.host,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      )
      .catch((e: unknown) => {
        this.seen.delete(key);
        this.log.warn('cannot record event', {
          reason,
          target: target.name,
          error: (e as Error).message,
        });
      });
  }
}

/** Records events in memory, for unit tests. */
export class MemoryEvents implements EventSink {
  events: { type: string; target: string; reason: string; message: string }[] = [];
  warn(target: EventTarget, reason: string, message: string): void {
    this.events.push({ type: 'Warning', target: target.name, reason, message });
  }
  normal(target: EventTarget, reason: string, message: string): void {
    this.events.push({ type: 'Normal', target: target.name, reason, message });
  }
}
