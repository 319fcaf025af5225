// metav1.LabelSelector: parsing untrusted input into a LabelSelector, and matching
// a node's labels with the apiserver's semantics (every matchLabels pair and every
// expression must hold; NotIn and DoesNotExist hold when the key is absent; the
// empty selector matches everything).
import { SELECTOR_OPERATORS, type LabelSelector, type SelectorOperator } from './types.ts';
import type { Parsed } from './cidr.ts';

export const EVERY_NODE: LabelSelector = { matchLabels: {}, matchExpressions: [] };

export function parseLabelSelector(raw: unknown): Parsed<LabelSelector> {
  if (raw === undefined || raw === null) return { ok: true, value: EVERY_NODE };
  if (!isRecord(raw)) return { ok: false, reason: 'nodeSelector must be an object' };
  const matchLabels: Record<string, string> = {};
  if (raw.matchLabels !== undefined && raw.matchLabels !== null) {
    if (!isRecord(raw.matchLabels)) {
      return { ok: false, reason: 'nodeSelector.matchLabels must map strings to strings' };
    }
    for (const [k, v] of Object.entries(raw.matchLabels)) {
      if (typeof v !== 'string' || k === '') {
        return {
          ok: false,
          reason: `nodeSelector.matchLabels[${JSON.stringify(k)}] must be a string`,
        };
      }
      matchLabels[k] = v;
    }
  }
  const matchExpressions: LabelSelector['matchExpressions'] = [];
  if (raw.matchExpressions !== undefined && raw.matchExpressions !== null) {
    if (!Array.isArray(raw.matchExpressions)) {
      return { ok: false, reason: 'nodeSelector.matchExpressions must be a list' };
    }
    for (const [i, e] of (raw.matchExpressions as unknown[]).entries()) {
      const where = `nodeSelector.matchExpressions[${i}]`;
      if (!isRecord(e) || typeof e.key !== 'string' || e.key === '') {
        return { ok: false, reason: `${where} needs a key` };
      }
      if (!SELECTOR_OPERATORS.includes(e.operator as SelectorOperator)) {
        return {
          ok: false,
          reason: `${where}.operator must be one of ${SELECTOR_OPERATORS.join(', ')}`,
        };
      }
      const operator = e.operator as SelectorOperator;
      const values = e.values ?? [];
      if (!Array.isArray(values) || !values.every((v) => typeof v === 'string')) {
        return { ok: false, reason: `${where}.values must be a list of strings` };
      }
      const wantsValues = operator === 'In' || operator === 'NotIn';
      if (wantsValues !== values.length > 0) {
        return {
          ok: false,
          reason: `${where}: In and NotIn need values; Exists and DoesNotExist take none`,
        };
      }
      matchExpressions.push({ key: e.key, operator, values: [...values] });
    }
  }
  return { ok: true, value: { matchLabels, matchExpressions } };
}

export function selectorMatches(
  selector: LabelSelector,
  labels: Readonly<Record<string, string>>,
): boolean {
  // for-in rather than Object.entries: no array per call (the policy compiler calls
  // this hundreds of thousands of times a pass).
  const want = selector.matchLabels;
  for (const k in want) {
    if (!Object.hasOwn(want, k)) continue;
    if (!Object.hasOwn(labels, k) || labels[k] !== want[k]) return false;
  }
  for (const e of selector.matchExpressions) {
    const has = Object.hasOwn(labels, e.key);
    const value = labels[e.key];
    switch (e.operator) {
      case 'In':
        if (!has || !e.values.includes(value ?? '')) return false;
        break;
      case 'NotIn':
        if (has && e.values.includes(value ?? '')) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
