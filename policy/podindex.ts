// The pods a NetworkPolicy compile selects from: parsed once per pod object, put in
// name order, indexed by namespace and label, and kept from compile to compile. A
// label change is one new pod object among tens of thousands; a compile that redid
// all of this per pass spent most of its time here (the sort, the label index, the
// same selections again). What is kept is keyed by object identity or checked
// element by element against the new input, so any input compiles as if nothing
// were kept; what a change makes stale is rebuilt for that namespace only.
import { selectorMatches, type LabelSelector } from '../ipam/index.ts';
import { cachedAddress, type Family } from './ranges.ts';
import { NO_PROBLEMS, type PolicyPod, type PolicyProblem } from './types.ts';

export interface Addr {
  family: Family;
  value: bigint;
  text: string;
}

export interface PodEntry {
  pod: PolicyPod;
  addrs: Addr[];
}

export interface KnownPod {
  key: string;
  entry: PodEntry;
  problems: readonly PolicyProblem[];
}

export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function canonicalSelector(s: LabelSelector | undefined): unknown {
  if (!s) return null;
  return [
    Object.entries(s.matchLabels).sort(([a], [b]) => cmp(a, b)),
    s.matchExpressions
      .map((e) => [e.key, e.operator, [...e.values].sort()])
      .sort((a, b) => cmp(JSON.stringify(a), JSON.stringify(b))),
  ];
}

export function podKey(p: Pick<PolicyPod, 'namespace' | 'name'>): string {
  return `${p.namespace}/${p.name}`;
}

export function podProblem(
  pod: PolicyPod,
  reason: PolicyProblem['reason'],
  message: string,
): PolicyProblem {
  return { kind: 'Pod', namespace: pod.namespace, name: pod.name, reason, message };
}

const podEntries = new WeakMap<PolicyPod, KnownPod>();

/**
 * A pod's sort key, parsed addresses and address problems, kept by object identity:
 * the agent hands the same pod object to every pass until the pod changes, so a
 * pass over 45,000 pods no longer rebuilds them all. Never mutated once made.
 */
function podEntryOf(pod: PolicyPod): KnownPod {
  let known = podEntries.get(pod);
  if (known === undefined) {
    const addrs: Addr[] = [];
    const problems: PolicyProblem[] = [];
    for (const ip of pod.ips) {
      const a = cachedAddress(ip);
      if (a) addrs.push(a);
      else problems.push(podProblem(pod, 'InvalidPod', `address '${ip}' is not an IP address`));
    }
    // Exact sizes and one shared empty list: there is one of these per pod.
    known = {
      key: podKey(pod),
      entry: { pod, addrs: addrs.slice() },
      problems: problems.length > 0 ? problems : NO_PROBLEMS,
    };
    podEntries.set(pod, known);
  }
  return known;
}

/**
 * A compile's pods: their entries in `namespace/name` order, their problems, each
 * namespace's entries and the entries on a node. Made from the last list when the
 * pods only changed in place (every pod where it was in the input, some replaced by a
 * new object of the same pod, as the informer keeps a changed object's place): the
 * replaced entries are put where theirs were, a namespace or node none of them is in
 * keeps its arrays, and tens of thousands of keys are not sorted and grouped again.
 */
export class PodList {
  readonly input: readonly PolicyPod[];
  readonly entries: readonly PodEntry[];
  readonly problems: readonly PolicyProblem[];
  readonly byNamespace: ReadonlyMap<string, readonly PodEntry[]>;
  private readonly known: readonly KnownPod[];
  /** No two pods with one key: only then can a key say where a pod goes. */
  private readonly unique: boolean;
  private readonly onNode: Map<string, readonly PodEntry[]>;

  private constructor(fields: {
    input: readonly PolicyPod[];
    known: readonly KnownPod[];
    problems: readonly PolicyProblem[];
    byNamespace: ReadonlyMap<string, readonly PodEntry[]>;
    unique: boolean;
    onNode: Map<string, readonly PodEntry[]>;
  }) {
    // A copy: a caller may change its array in place before the next compile.
    this.input = fields.input.slice();
    this.known = fields.known;
    this.entries = fields.known.map((k) => k.entry);
    this.problems = fields.problems;
    this.byNamespace = fields.byNamespace;
    this.unique = fields.unique;
    this.onNode = fields.onNode;
  }

  static of(pods: readonly PolicyPod[]): PodList {
    const known = pods.map(podEntryOf).sort((a, b) => cmp(a.key, b.key));
    const byNamespace = new Map<string, PodEntry[]>();
    for (const { entry } of known) {
      const list = byNamespace.get(entry.pod.namespace);
      if (list) list.push(entry);
      else byNamespace.set(entry.pod.namespace, [entry]);
    }
    return new PodList({
      input: pods,
      known,
      problems: known.flatMap((k) => k.problems),
      byNamespace,
      unique: known.every((k, i) => i === 0 || known[i - 1]?.key !== k.key),
      onNode: new Map(),
    });
  }

  /** The entries on `node`, in name order. */
  on(node: string): readonly PodEntry[] {
    let list = this.onNode.get(node);
    if (list === undefined) {
      list = this.entries.filter((e) => e.pod.node === node);
      this.onNode.set(node, list);
    }
    return list;
  }

  /** `pods` as a change of this list, or null when they are not this list's pods in place. */
  changedTo(pods: readonly PolicyPod[]): PodList | null {
    if (!this.unique || pods.length !== this.input.length) return null;
    const replaced = new Map<string, { was: PolicyPod; now: KnownPod }>();
    for (let i = 0; i < pods.length; i++) {
      const pod = pods[i] as PolicyPod;
      const was = this.input[i] as PolicyPod;
      if (pod === was) continue;
      if (pod.namespace !== was.namespace || pod.name !== was.name) return null;
      replaced.set(podKey(pod), { was, now: podEntryOf(pod) });
    }
    if (replaced.size === 0) return this;
    const known = this.known.slice();
    const namespaces = new Set<string>();
    const nodes = new Set<string>();
    let problems = this.problems.length > 0;
    for (const [key, { was, now }] of replaced) {
      known[this.indexOf(key)] = now;
      namespaces.add(was.namespace);
      nodes.add(was.node).add(now.entry.pod.node);
      problems ||= now.problems.length > 0;
    }
    const byNamespace = new Map(this.byNamespace);
    for (const ns of namespaces) {
      const list = byNamespace.get(ns) ?? [];
      byNamespace.set(
        ns,
        list.map((e) => replaced.get(podKey(e.pod))?.now.entry ?? e),
      );
    }
    const onNode = new Map([...this.onNode].filter(([node]) => !nodes.has(node)));
    return new PodList({
      input: pods,
      known,
      problems: problems ? known.flatMap((k) => k.problems) : [],
      byNamespace,
      unique: true,
      onNode,
    });
  }

  /** Where the pod with `key` is in name order (it is there: keys are unique). */
  private indexOf(key: string): number {
    let [lo, hi] = [0, this.known.length - 1];
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cmp((this.known[mid] as KnownPod).key, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

let lastList: PodList | null = null;

/** The pods as a PodList, made from the last compile's where they only changed in place. */
export function podList(pods: readonly PolicyPod[]): PodList {
  const list = lastList?.changedTo(pods) ?? PodList.of(pods);
  lastList = list;
  return list;
}

const selectorKeys = new WeakMap<LabelSelector, string>();

/** A selector's canonical text, kept by identity (compiled policies keep theirs). */
export function selectorKey(s: LabelSelector): string {
  let key = selectorKeys.get(s);
  if (key === undefined) {
    key = JSON.stringify(canonicalSelector(s));
    selectorKeys.set(s, key);
  }
  return key;
}

/** Distinct selections remembered per namespace before they are dropped and redone. */
const MAX_SELECTIONS = 4096;

let nextVersion = 1;

interface Selection {
  pods: readonly PodEntry[];
  /**
   * The same while the selected pods' names, nodes, addresses and ports are: what a
   * set needs of them. A label change elsewhere in the namespace, or one that keeps
   * the pod in the selection, keeps it.
   */
  version: number;
  /** The selected pods on one node (the compile's own), once asked for. */
  onNode?: { node: string; pods: readonly PodEntry[] };
}

/** Same pod name, node, addresses and ports: a set built from one holds for the other. */
function sameShape(a: PodEntry, b: PodEntry): boolean {
  if (a === b) return true;
  const [p, q] = [a.pod, b.pod];
  return (
    p.name === q.name &&
    p.node === q.node &&
    a.addrs.length === b.addrs.length &&
    a.addrs.every((x, i) => x.text === b.addrs[i]?.text) &&
    p.ports.length === q.ports.length &&
    p.ports.every((x, i) => {
      const y = q.ports[i];
      return y !== undefined && x.name === y.name && x.port === y.port && x.protocol === y.protocol;
    })
  );
}

const sameShapes = (a: readonly PodEntry[], b: readonly PodEntry[]): boolean =>
  a.length === b.length && a.every((e, i) => sameShape(e, b[i] as PodEntry));

/**
 * One namespace's pods, in name order, and the selections made from them. Its pods
 * never change: a change to the namespace's pods makes a new one, which compares
 * each selection with its predecessor's to keep the selection's version.
 */
class NamespacePods {
  readonly pods: readonly PodEntry[];
  private previous: NamespacePods | null;
  private byLabel: Map<string, PodEntry[]> | null = null;
  private readonly selections = new Map<string, Selection>();

  constructor(pods: readonly PodEntry[], previous: NamespacePods | null) {
    this.pods = pods;
    this.previous = previous;
    // One predecessor back is enough, and a chain of them would keep every old list.
    if (previous) previous.previous = null;
  }

  select(selector: LabelSelector | null): Selection {
    const key = selector ? selectorKey(selector) : '';
    let selection = this.selections.get(key);
    if (selection === undefined) {
      const pods = selector ? this.match(selector) : this.pods;
      const before = this.previous?.selections.get(key);
      const version = before && sameShapes(before.pods, pods) ? before.version : nextVersion++;
      selection = { pods, version };
      if (this.selections.size >= MAX_SELECTIONS) this.selections.clear();
      this.selections.set(key, selection);
    }
    return selection;
  }

  private match(selector: LabelSelector): PodEntry[] {
    let candidates = this.pods;
    const pairs = Object.entries(selector.matchLabels);
    if (pairs.length > 0) {
      const index = this.labelIndex();
      for (const [k, v] of pairs) {
        const list = index.get(`${k}=${v}`) ?? [];
        if (list.length < candidates.length) candidates = list;
      }
    }
    return candidates.filter((e) => selectorMatches(selector, e.pod.labels));
  }

  private labelIndex(): Map<string, PodEntry[]> {
    if (this.byLabel) return this.byLabel;
    const index = new Map<string, PodEntry[]>();
    for (const e of this.pods) {
      const labels = e.pod.labels;
      for (const k in labels) {
        if (!Object.hasOwn(labels, k)) continue;
        const key = `${k}=${labels[k]}`;
        const list = index.get(key);
        if (list) list.push(e);
        else index.set(key, [e]);
      }
    }
    this.byLabel = index;
    return index;
  }
}

let lastNamespaces = new Map<string, NamespacePods>();

const sameEntries = (a: readonly PodEntry[], b: readonly PodEntry[]): boolean =>
  a.length === b.length && a.every((e, i) => e === b[i]);

/** Pods by namespace and, within a namespace, by `key=value`, for fast selection. */
export class PodIndex {
  readonly all: readonly PodEntry[];
  private readonly byNamespace = new Map<string, NamespacePods>();

  constructor(pods: PodList) {
    this.all = pods.entries;
    for (const [ns, list] of pods.byNamespace) {
      const was = lastNamespaces.get(ns) ?? null;
      const same = was !== null && (was.pods === list || sameEntries(was.pods, list));
      this.byNamespace.set(ns, same ? was : new NamespacePods(list, was));
    }
    lastNamespaces = this.byNamespace;
  }

  select(namespace: string, selector: LabelSelector | null): readonly PodEntry[] {
    return this.byNamespace.get(namespace)?.select(selector).pods ?? [];
  }

  /** select() of the pods on `node` only: what a policy isolates on this node. */
  selectOn(namespace: string, selector: LabelSelector | null, node: string): readonly PodEntry[] {
    const selection = this.byNamespace.get(namespace)?.select(selector);
    if (!selection) return [];
    if (selection.onNode?.node !== node)
      selection.onNode = { node, pods: selection.pods.filter((e) => e.pod.node === node) };
    return selection.onNode.pods;
  }

  /**
   * `namespace@version` of the selection in each namespace: what was built from the
   * selected pods is current while this text is the same.
   */
  versions(namespaces: Iterable<string>, selector: LabelSelector | null): string {
    const out: string[] = [];
    for (const ns of namespaces)
      out.push(`${ns}@${this.byNamespace.get(ns)?.select(selector).version ?? 0}`);
    return out.join(',');
  }

  /** versions() of every pod. */
  allVersions(): string {
    return this.versions(this.byNamespace.keys(), null);
  }
}
