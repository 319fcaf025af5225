// Validity of NetworkPolicy and admin policy contents: one set of rules, used by the
// translation from Kubernetes objects (k8s.ts, admin-k8s.ts) and by the compiler (compile.ts).
import { parseCidr } from './ranges.ts';
import {
  ADMIN_ACTIONS,
  PROTOCOLS,
  type AdminRule,
  type NetworkPolicy,
  type PolicyRule,
  type PolicyType,
} from './types.ts';

/** IANA_SVC_NAME, as upstream validates container port names. */
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;

/** Upstream defaulting: Ingress always, Egress when the policy has egress rules. */
export function effectivePolicyTypes(
  p: Pick<NetworkPolicy, 'policyTypes' | 'egress'>,
): PolicyType[] {
  if (p.policyTypes.length > 0) return [...new Set(p.policyTypes)].sort();
  return p.egress.length > 0 ? ['Egress', 'Ingress'] : ['Ingress'];
}

/**
 * What is wrong with a policy's contents, or null. The translation from Kubernetes
 * objects and the compiler both call this, so one set of rules decides validity.
 */
export function checkPolicy(p: NetworkPolicy): string | null {
  for (const [i, rule] of p.ingress.entries()) {
    const fault = checkRule(rule, `spec.ingress[${i}]`, 'from');
    if (fault) return fault;
  }
  for (const [i, rule] of p.egress.entries()) {
    const fault = checkRule(rule, `spec.egress[${i}]`, 'to');
    if (fault) return fault;
  }
  return null;
}

/** What is wrong with one rule's peers and ports (NetworkPolicy's rules), or null. */
function checkRule(rule: PolicyRule, where: string, peersKey: 'from' | 'to'): string | null {
  for (const [j, peer] of rule.peers.entries()) {
    const at = `${where}.${peersKey}[${j}]`;
    const hasSelector = peer.podSelector !== undefined || peer.namespaceSelector !== undefined;
    if (peer.ipBlock && hasSelector) return `${at}: ipBlock cannot be combined with selectors`;
    if (!peer.ipBlock && !hasSelector) return `${at}: a peer needs a selector or an ipBlock`;
    if (peer.ipBlock) {
      const cidr = parseCidr(peer.ipBlock.cidr);
      if ('error' in cidr) return `${at}.ipBlock.cidr ${cidr.error}`;
      for (const [k, e] of peer.ipBlock.except.entries()) {
        const ex = parseCidr(e);
        if ('error' in ex) return `${at}.ipBlock.except[${k}] ${ex.error}`;
        const inside =
          ex.family === cidr.family &&
          ex.range.lo >= cidr.range.lo &&
          ex.range.hi <= cidr.range.hi &&
          !(ex.range.lo === cidr.range.lo && ex.range.hi === cidr.range.hi);
        if (!inside) return `${at}.ipBlock.except[${k}] '${e}' is not strictly inside the cidr`;
      }
    }
  }
  for (const [j, port] of rule.ports.entries()) {
    const at = `${where}.ports[${j}]`;
    if (!PROTOCOLS.includes(port.protocol)) {
      return `${at}.protocol must be one of ${PROTOCOLS.join(', ')}`;
    }
    if (typeof port.port === 'string') {
      if (!PORT_NAME.test(port.port)) return `${at}.port '${port.port}' is not a valid port name`;
      if (port.endPort !== undefined) return `${at}.endPort needs a numeric port`;
    } else if (port.port !== undefined) {
      if (!isPort(port.port)) return `${at}.port must be 1 to 65535`;
      if (port.endPort !== undefined && (!isPort(port.endPort) || port.endPort < port.port)) {
        return `${at}.endPort must be a port no smaller than port`;
      }
    } else if (port.endPort !== undefined) {
      return `${at}.endPort needs a numeric port`;
    }
  }
  return null;
}

/**
 * What is wrong with one admin policy rule, or null: its action (BANP: Allow or
 * Deny), its peers (cluster-wide: a namespaceSelector, or on egress a network),
 * then the checks every rule gets. `where` names the rule, e.g. `spec.egress[2]`.
 */
export function checkAdminRule(
  rule: AdminRule,
  where: string,
  dir: 'ingress' | 'egress',
  baseline: boolean,
): string | null {
  const actions: readonly string[] = baseline ? ['Allow', 'Deny'] : ADMIN_ACTIONS;
  if (!actions.includes(rule.action)) {
    return `${where}.action must be one of ${actions.join(', ')}`;
  }
  const peersKey = dir === 'ingress' ? 'from' : 'to';
  for (const [j, peer] of rule.peers.entries()) {
    const at = `${where}.${peersKey}[${j}]`;
    if (peer.ipBlock && dir === 'ingress') return `${at}: networks are egress peers only`;
    if (peer.ipBlock && peer.ipBlock.except.length > 0) return `${at}: networks have no except`;
    if (!peer.ipBlock && !peer.namespaceSelector) {
      return `${at}: a cluster-wide peer needs a namespace selector`;
    }
  }
  return checkRule({ peers: rule.peers, ports: rule.ports }, where, peersKey);
}

function isPort(n: unknown): n is number {
  return Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 65535;
}
