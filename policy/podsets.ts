// The sets a NetworkPolicy fragment builds from pods: a selector peer's addresses
// and the `addr . proto . port` sets that resolve named ports. At 45,000 pods one of
// them can hold tens of thousands of elements, so each is kept for the next compile
// with what it was built from (the versions of the selections it read, PodIndex)
// and reused while that is the same; collecting, sorting and rendering them again
// when none of those pods changed was most of a label change's compile.
import { selectorMatches } from '../ipam/index.ts';
import {
  ADDR_TYPE,
  FAMILIES,
  NFT_PROTO,
  hash,
  type CompiledPeer,
  type CompiledRule,
  type FragmentBuilder,
} from './compile.ts';
import { canonicalSelector, cmp, type Addr, type PodEntry, type PodIndex } from './podindex.ts';
import { rangesContain, renderRange, type Family } from './ranges.ts';
import type { LabelSelector } from './types.ts';

interface BuiltSet {
  from: string;
  elements: readonly string[];
}

/** The last compile's pod-built sets, by set name, with what they were built from. */
let builtSets = new Map<string, BuiltSet>();

/** One compile's pod-built sets, added to its fragment (`out`) once each. */
export class PodSets {
  private readonly out: FragmentBuilder;
  private readonly index: PodIndex;
  private readonly namespaceLabels: ReadonlyMap<string, Record<string, string>>;
  private readonly self: string;
  private readonly peerNamespaceCache = new Map<string, string[]>();
  private readonly peerCache = new Map<string, PodEntry[]>();
  private readonly kept = new Map<string, BuiltSet>();

  constructor(
    out: FragmentBuilder,
    index: PodIndex,
    namespaceLabels: ReadonlyMap<string, Record<string, string>>,
    self: string,
  ) {
    this.out = out;
    this.index = index;
    this.namespaceLabels = namespaceLabels;
    this.self = self;
  }

  /** Keep this compile's sets for the next compile to reuse. */
  keep(): void {
    builtSets = this.kept;
  }

  /**
   * One set per distinct peer (not per rule), so policies that name the same peer
   * share it: an ipBlock as an interval set, a selector peer as its pods' addresses.
   */
  peerSet(peer: CompiledPeer, f: Family): string {
    const name = `pol-peer-${hash(peer.canonical)}-v${f}`;
    if (this.out.sets.has(name)) return name;
    if (peer.block) {
      this.out.sets.set(name, {
        name,
        type: ADDR_TYPE[f],
        flags: ['interval'],
        elements: peer.block[f].map((r) => renderRange(r, f)),
      });
    } else {
      const elements = this.elementsOf(name, this.peerVersions(peer), () => {
        const addrs = new Map<string, bigint>();
        for (const e of this.peerPods(peer)) {
          for (const a of e.addrs) if (a.family === f) addrs.set(a.text, a.value);
        }
        return [...addrs.entries()]
          .sort(([, a], [, b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([text]) => text);
      });
      this.out.sets.set(name, { name, type: ADDR_TYPE[f], elements });
    }
    return name;
  }

  /**
   * Both families' sets of `key`'s named ports; `from` as elementsOf's (what the
   * elements depend on), or none to build them.
   */
  namedSet(key: string, f: Family, elements: () => Map<string, Addr[]>, from?: string): string {
    const name = `pol-named-${hash(key)}-v${f}`;
    if (!this.out.sets.has(name)) {
      // Built once per key for both families.
      let byFamily: Map<string, Addr[]> | undefined;
      for (const g of FAMILIES) {
        const setName = `pol-named-${hash(key)}-v${g}`;
        this.out.sets.set(setName, {
          name: setName,
          type: `${ADDR_TYPE[g]} . inet_proto . inet_service`,
          elements: this.elementsOf(setName, from, () => renderNamed((byFamily ??= elements()), g)),
        });
      }
    }
    return name;
  }

  /** `addr . proto . port` of `pods`' named ports, only for addresses `keep` accepts. */
  namedElements(
    rule: CompiledRule,
    pods: Iterable<{ entry: PodEntry; keep: (a: Addr) => boolean }>,
  ): Map<string, Addr[]> {
    const out = new Map<string, Addr[]>();
    for (const { entry, keep } of pods) {
      for (const want of rule.named) {
        for (const cp of entry.pod.ports) {
          if (cp.name !== want.name || cp.protocol !== want.protocol) continue;
          const key = `${NFT_PROTO[cp.protocol]} . ${cp.port}`;
          const list = out.get(key) ?? [];
          list.push(...entry.addrs.filter(keep));
          out.set(key, list);
        }
      }
    }
    return out;
  }

  /** Egress named ports resolve against the peer's pods: selected, or inside the ipBlock. */
  egressNamedSet(rule: CompiledRule, peer: CompiledPeer | null, f: Family): string {
    const key = JSON.stringify(['egress-named', peer?.canonical ?? '*', rule.named]);
    const from = peer?.pods ? this.peerVersions(peer) : this.index.allVersions();
    return this.namedSet(
      key,
      f,
      () => {
        const block = peer?.block;
        if (block) {
          const keep = (a: Addr) => rangesContain(block[a.family], a.value);
          return this.namedElements(
            rule,
            this.index.all.filter((e) => e.addrs.some(keep)).map((entry) => ({ entry, keep })),
          );
        }
        const pods = peer ? this.peerPods(peer) : this.index.all;
        return this.namedElements(
          rule,
          pods.map((entry) => ({ entry, keep: () => true })),
        );
      },
      from,
    );
  }

  /** Ingress named ports resolve against the policy's selected pods on this node. */
  ingressNamedSet(
    namespace: string,
    podSelector: LabelSelector,
    rule: CompiledRule,
    f: Family,
  ): string {
    const key = JSON.stringify([
      'ingress-named',
      namespace,
      canonicalSelector(podSelector),
      rule.named,
    ]);
    return this.namedSet(
      key,
      f,
      () =>
        this.namedElements(
          rule,
          this.index
            .selectOn(namespace, podSelector, this.self)
            .map((entry) => ({ entry, keep: () => true })),
        ),
      `${this.self}|${this.index.versions([namespace], podSelector)}`,
    );
  }

  /** The namespaces a selector peer looks in, in name order. */
  private peerNamespaces(peer: CompiledPeer): string[] {
    const sel = peer.pods;
    if (!sel) return [];
    if (sel.namespace !== null) return [sel.namespace];
    let names = this.peerNamespaceCache.get(peer.canonical);
    if (!names) {
      names = [...this.namespaceLabels.entries()]
        .filter(([, labels]) => selectorMatches(sel.namespaceSelector as LabelSelector, labels))
        .map(([name]) => name)
        .sort();
      this.peerNamespaceCache.set(peer.canonical, names);
    }
    return names;
  }

  /** The pods a selector peer stands for, matched cluster-wide. */
  private peerPods(peer: CompiledPeer): PodEntry[] {
    const cached = this.peerCache.get(peer.canonical);
    if (cached) return cached;
    const pods: PodEntry[] = [];
    const sel = peer.pods;
    if (sel)
      for (const ns of this.peerNamespaces(peer))
        pods.push(...this.index.select(ns, sel.podSelector));
    this.peerCache.set(peer.canonical, pods);
    return pods;
  }

  /** What a selector peer's sets are built from (elementsOf's `from`). */
  private peerVersions(peer: CompiledPeer): string {
    return this.index.versions(this.peerNamespaces(peer), peer.pods?.podSelector ?? null);
  }

  /**
   * A set's elements: the last compile's when they were built from the same pods
   * (`from`: what they depend on, with the versions of the namespaces' pods), else
   * built. A set without `from` is always built.
   */
  private elementsOf(name: string, from: string | undefined, build: () => string[]): string[] {
    if (from === undefined) return build();
    const last = builtSets.get(name);
    const elements = last && last.from === from ? last.elements : Object.freeze(build());
    this.kept.set(name, { from, elements });
    return elements as string[];
  }
}

function renderNamed(byPort: Map<string, Addr[]>, f: Family): string[] {
  const rows: { value: bigint; text: string }[] = [];
  const seen = new Set<string>();
  for (const [protoPort, addrs] of byPort) {
    for (const a of addrs) {
      if (a.family !== f) continue;
      const text = `${a.text} . ${protoPort}`;
      if (seen.has(text)) continue;
      seen.add(text);
      rows.push({ value: a.value, text });
    }
  }
  rows.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : cmp(a.text, b.text)));
  return rows.map((r) => r.text);
}
