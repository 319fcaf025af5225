// The admin tiers of the policy fragment (AdminNetworkPolicy and the
// BaselineAdminNetworkPolicy): the chains and maps compile.ts adds when any admin
// policy is in the input. Its opening comment explains the shape; this is the code.
// It uses the compiler's rule rendering and named-port sets, handed over in the
// context, and imports the compiler's shared pieces (only called, never run at load,
// so the two modules may import each other).
import { selectorMatches } from '../ipam/index.ts';
import { checkAdminRule } from './check.ts';
import {
  ADDR_TYPE,
  ADMIN_CHAINS,
  ADMIN_MAPS,
  DISPATCH_MAPS,
  FAMILIES,
  POLICY_FORWARD_CHAIN,
  POLICY_INPUT_CHAIN,
  canonicalSelector,
  cmp,
  compileRule,
  hash,
  type Addr,
  type CompiledRule,
  type Direction,
  type FragmentBuilder,
  type PodEntry,
  type RuleOrigin,
  type RuleText,
} from './compile.ts';
import type { Family } from './ranges.ts';
import type {
  AdminAction,
  AdminNetworkPolicy,
  AdminSubject,
  BaselineAdminNetworkPolicy,
  CompileInput,
  CompileStats,
  PolicyPod,
  PolicyProblem,
} from './types.ts';

interface CompiledAdminRule {
  action: AdminAction;
  rule: CompiledRule;
  /** Position in spec.ingress / spec.egress, and the rule's name. */
  index: number;
  name: string;
}

/** The fail-closed stand-in for an unreadable Deny or Pass rule: every packet. */
const DENY_ALL: CompiledRule = { peers: null, numeric: new Map(), named: [] };

function canonicalSubject(s: AdminSubject): unknown {
  return [canonicalSelector(s.namespaceSelector), canonicalSelector(s.podSelector)];
}

/** What compilePolicies hands the admin tiers: its input, its state, its renderers. */
export interface AdminTierContext {
  input: CompileInput;
  out: FragmentBuilder;
  local: readonly PodEntry[];
  /** The NetworkPolicy groups of local pods, per direction. */
  groups: Record<Direction, Map<string, { pods: PodEntry[] }>>;
  namespaceLabels: Map<string, Record<string, string>>;
  problems: PolicyProblem[];
  ruleTexts: (
    dir: Direction,
    rule: CompiledRule,
    verdict: string,
    ingressNamed: (f: Family) => string,
  ) => RuleText[];
  namedSet: (key: string, f: Family, elements: () => Map<string, Addr[]>) => string;
  namedElements: (
    rule: CompiledRule,
    pods: Iterable<{ entry: PodEntry; keep: (a: Addr) => boolean }>,
  ) => Map<string, Addr[]>;
}

/** Add the admin tiers' chains and maps (and the entry chains) to `ctx.out`. */
export function compileAdminTiers(
  ctx: AdminTierContext,
): Pick<CompileStats, 'adminPolicies' | 'baselinePolicy'> {
  const { input, out, local, groups, namespaceLabels, problems } = ctx;
  const { ruleTexts, namedSet, namedElements } = ctx;
  const npSelected: Record<Direction, Set<string>> = { ingress: new Set(), egress: new Set() };
  for (const dir of ['ingress', 'egress'] as const) {
    for (const group of groups[dir].values()) {
      for (const e of group.pods) for (const a of e.addrs) npSelected[dir].add(a.text);
    }
  }
  const subjectSelects = (subject: AdminSubject, pod: PolicyPod): boolean =>
    selectorMatches(subject.namespaceSelector, namespaceLabels.get(pod.namespace) ?? {}) &&
    selectorMatches(subject.podSelector, pod.labels);

  /** An admin policy's rules, each checked; a faulty one is replaced as upstream says. */
  const compileAdmin = (
    kind: 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy',
    p: AdminNetworkPolicy | BaselineAdminNetworkPolicy,
  ): Record<Direction, CompiledAdminRule[]> => {
    const baseline = kind === 'BaselineAdminNetworkPolicy';
    const rules: Record<Direction, CompiledAdminRule[]> = { ingress: [], egress: [] };
    for (const dir of ['ingress', 'egress'] as const) {
      for (const [i, rule] of p[dir].entries()) {
        const fault = checkAdminRule(rule, `spec.${dir}[${i}]`, dir, baseline);
        if (!fault) {
          rules[dir].push({
            action: rule.action,
            rule: compileRule(rule, ''),
            index: i,
            name: rule.name,
          });
          continue;
        }
        const allow = rule.action === 'Allow';
        problems.push({
          kind,
          namespace: '',
          name: p.name,
          reason: 'InvalidPolicy',
          message: `${fault}; ${allow ? 'the Allow rule matches nothing' : 'the rule denies everything'}`,
        });
        if (!allow) rules[dir].push({ action: 'Deny', rule: DENY_ALL, index: i, name: rule.name });
      }
    }
    return rules;
  };

  const adminNamed = (subject: AdminSubject, rule: CompiledRule) => (f: Family) =>
    namedSet(
      JSON.stringify(['admin-ingress-named', canonicalSubject(subject), rule.named]),
      f,
      () =>
        namedElements(
          rule,
          local
            .filter((e) => subjectSelects(subject, e.pod))
            .map((entry) => ({ entry, keep: () => true })),
        ),
    );

  // ANPs by priority (ties by name, for a stable order), then their groups.
  const anps = [...(input.adminPolicies ?? [])]
    .sort((a, b) => a.priority - b.priority || cmp(a.name, b.name))
    .map((p) => ({ p, rules: compileAdmin('AdminNetworkPolicy', p) }));
  const baseline = input.baselinePolicy
    ? {
        p: input.baselinePolicy,
        rules: compileAdmin('BaselineAdminNetworkPolicy', input.baselinePolicy),
      }
    : null;
  if (input.baselinePolicy && input.baselinePolicy.name !== 'default') {
    problems.push({
      kind: 'BaselineAdminNetworkPolicy',
      namespace: '',
      name: input.baselinePolicy.name,
      reason: 'InvalidPolicy',
      message: "a BaselineAdminNetworkPolicy must be named 'default'; it is enforced all the same",
    });
  }
  for (const dir of ['ingress', 'egress'] as const) {
    const tag = dir === 'ingress' ? 'in' : 'eg';
    const tail = ADMIN_CHAINS[dir].np;
    const anpGroups = new Map<string, { order: typeof anps; addrs: Addr[] }>();
    const byAddr = new Map<string, { addr: Addr; order: Set<number> }>();
    for (const e of local) {
      anps.forEach((a, i) => {
        if (a.rules[dir].length === 0 || !subjectSelects(a.p.subject, e.pod)) return;
        for (const addr of e.addrs) {
          const slot = byAddr.get(addr.text) ?? { addr, order: new Set<number>() };
          slot.order.add(i);
          byAddr.set(addr.text, slot);
        }
      });
    }
    for (const { addr, order } of byAddr.values()) {
      const list = [...order].sort((a, b) => a - b).map((i) => anps[i] as (typeof anps)[number]);
      const key = list.map((a) => a.p.name).join('\n');
      const group = anpGroups.get(key) ?? { order: list, addrs: [] };
      group.addrs.push(addr);
      anpGroups.set(key, group);
    }
    const adminElements: Record<Family, Map<string, { value: bigint; verdict: string }>> = {
      4: new Map(),
      6: new Map(),
    };
    for (const [key, group] of anpGroups) {
      const name = `anp-${tag}-${hash(`${dir}\n${key}`)}`;
      const rules: string[] = [];
      const have = new Set<string>();
      for (const { p, rules: compiled } of group.order) {
        for (const r of compiled[dir]) {
          const { action, rule } = r;
          // A Deny counts what it drops (only dropped packets pay for the counter).
          const verdict =
            action === 'Allow' ? 'return' : action === 'Deny' ? 'counter drop' : `goto ${tail}`;
          for (const { text, peer } of ruleTexts(dir, rule, verdict, adminNamed(p.subject, rule))) {
            // Every admin rule ends the evaluation, so a repeated text never fires.
            if (!have.has(text))
              rules.push(out.tagged(text, adminOrigin('AdminNetworkPolicy', p.name, dir, r, peer)));
            have.add(text);
          }
        }
      }
      rules.push(`goto ${tail}`);
      out.chains.set(name, { name, rules });
      for (const a of group.addrs) {
        adminElements[a.family].set(a.text, { value: a.value, verdict: `goto ${name}` });
      }
    }

    const baselineElements: Record<Family, Map<string, { value: bigint; verdict: string }>> = {
      4: new Map(),
      6: new Map(),
    };
    if (baseline && baseline.rules[dir].length > 0) {
      const name = ADMIN_CHAINS[dir].baseline;
      const rules: string[] = [];
      const have = new Set<string>();
      for (const r of baseline.rules[dir]) {
        const { action, rule } = r;
        const verdict = action === 'Allow' ? 'return' : 'counter drop';
        const texts = ruleTexts(dir, rule, verdict, adminNamed(baseline.p.subject, rule));
        for (const { text, peer } of texts) {
          if (!have.has(text)) {
            const origin = adminOrigin('BaselineAdminNetworkPolicy', baseline.p.name, dir, r, peer);
            rules.push(out.tagged(text, origin));
          }
          have.add(text);
        }
      }
      out.chains.set(name, { name, rules });
      for (const e of local) {
        if (!subjectSelects(baseline.p.subject, e.pod)) continue;
        for (const a of e.addrs) {
          // Only where no NetworkPolicy selects the address for this direction.
          if (npSelected[dir].has(a.text)) continue;
          baselineElements[a.family].set(a.text, { value: a.value, verdict: `jump ${name}` });
        }
      }
    }

    for (const f of FAMILIES) {
      for (const [maps, elements] of [
        [ADMIN_MAPS.admin, adminElements],
        [ADMIN_MAPS.baseline, baselineElements],
      ] as const) {
        const name = maps[dir][f];
        const sorted = [...elements[f].entries()].sort(([, a], [, b]) =>
          a.value < b.value ? -1 : a.value > b.value ? 1 : 0,
        );
        out.maps.set(name, {
          name,
          type: ADDR_TYPE[f],
          value: 'verdict',
          elements: Object.fromEntries(sorted.map(([k, v]) => [k, v.verdict])),
        });
      }
    }
    const side = dir === 'ingress' ? 'daddr' : 'saddr';
    out.chains.set(ADMIN_CHAINS[dir].entry, {
      name: ADMIN_CHAINS[dir].entry,
      rules: [
        `ip ${side} vmap @${ADMIN_MAPS.admin[dir][4]}`,
        `ip6 ${side} vmap @${ADMIN_MAPS.admin[dir][6]}`,
        `goto ${tail}`,
      ],
    });
    out.chains.set(tail, {
      name: tail,
      rules: [
        // From the input hook: a pod's traffic to its own node, which NetworkPolicy
        // and the baseline never police (only the ANP tier above could deny it).
        ...(dir === 'egress' ? ['fib daddr type local return'] : []),
        `ip ${side} vmap @${DISPATCH_MAPS[dir][4]}`,
        `ip6 ${side} vmap @${DISPATCH_MAPS[dir][6]}`,
        `ip ${side} vmap @${ADMIN_MAPS.baseline[dir][4]}`,
        `ip6 ${side} vmap @${ADMIN_MAPS.baseline[dir][6]}`,
      ],
    });
  }
  out.chains.set(POLICY_FORWARD_CHAIN, {
    name: POLICY_FORWARD_CHAIN,
    rules: [
      'ct state established,related return',
      'ct state invalid drop',
      `jump ${ADMIN_CHAINS.egress.entry}`,
      `jump ${ADMIN_CHAINS.ingress.entry}`,
    ],
  });
  out.chains.set(POLICY_INPUT_CHAIN, {
    name: POLICY_INPUT_CHAIN,
    rules: [
      'icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } return',
      'ct state established,related return',
      `jump ${ADMIN_CHAINS.egress.entry}`,
    ],
  });
  return { adminPolicies: anps.length, baselinePolicy: baseline !== null };
}

function adminOrigin(
  tier: 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy',
  name: string,
  direction: Direction,
  r: CompiledAdminRule,
  peer: number | undefined,
): RuleOrigin {
  return {
    tier,
    direction,
    action: r.action,
    policies: [{ namespace: '', name }],
    rule: r.index,
    ...(r.name ? { ruleName: r.name } : {}),
    ...(peer === undefined ? {} : { peer }),
  };
}
