// The Kubernetes boundary of policy/ for the admin tiers: AdminNetworkPolicy and
// BaselineAdminNetworkPolicy objects become the compiler's types, with the field
// readers of k8s.ts and its rule: fail closed, never open.
import { checkAdminRule } from './check.ts';
import {
  EVERYTHING,
  Fault,
  absent,
  isRecord,
  labelSelectorFromK8s,
  list,
  metaOf,
  only,
} from './k8s.ts';
import {
  PROTOCOLS,
  type AdminAction,
  type AdminNetworkPolicy,
  type AdminRule,
  type AdminSubject,
  type BaselineAdminNetworkPolicy,
  type PolicyPeer,
  type PolicyPort,
  type PolicyProblem,
  type Protocol,
} from './types.ts';

// AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1).
// Fail closed, as the API itself prescribes for a peer an implementation cannot
// read ("For Allow rules, fail closed means: treat the rule as matching no traffic.
// For Deny and Pass rules: treat the rule as a Deny all rule"), applied to any
// rule we cannot read in full (its action, peers, ports or an unknown field):
// an unreadable Allow rule is left out, any other unreadable rule becomes a rule
// that denies every packet, in its place, so the rules before it still decide
// first. A fault outside the rules (priority, the rule lists, an unknown spec
// field) turns the whole policy into deny-all for its subject in both directions,
// at its priority when readable and ahead of every ANP when not. A subject we
// cannot read leaves nothing to deny for: the policy is refused whole (it applies
// to no pod) with a problem. Denying every pod instead would let one malformed
// object cut the whole cluster off, DNS and control plane included; our CRD
// (deploy/anp-crds.yaml) requires one of the two known subject forms, so this
// takes a foreign CRD version, and the problem says so as an Event.

type AdminKind = 'AdminNetworkPolicy' | 'BaselineAdminNetworkPolicy';

function adminSubjectFromK8s(v: unknown): AdminSubject {
  if (!isRecord(v)) throw new Fault('spec.subject must be an object');
  only(v, ['namespaces', 'pods'], 'spec.subject');
  const set = ['namespaces', 'pods'].filter((k) => !absent(v[k]));
  if (set.length !== 1) throw new Fault('spec.subject needs exactly one of namespaces, pods');
  if (!absent(v.namespaces)) {
    return {
      namespaceSelector: labelSelectorFromK8s(v.namespaces, 'spec.subject.namespaces'),
      podSelector: EVERYTHING,
    };
  }
  return namespacedPodFromK8s(v.pods, 'spec.subject.pods');
}

function namespacedPodFromK8s(v: unknown, where: string): AdminSubject {
  if (!isRecord(v)) throw new Fault(`${where} must be an object`);
  only(v, ['namespaceSelector', 'podSelector'], where);
  if (absent(v.namespaceSelector) || absent(v.podSelector)) {
    throw new Fault(`${where} needs namespaceSelector and podSelector`);
  }
  return {
    namespaceSelector: labelSelectorFromK8s(v.namespaceSelector, `${where}.namespaceSelector`),
    podSelector: labelSelectorFromK8s(v.podSelector, `${where}.podSelector`),
  };
}

function adminPeersFromK8s(v: unknown, where: string, dir: 'ingress' | 'egress'): PolicyPeer[] {
  const peers = list(v, where);
  if (peers.length === 0) throw new Fault(`${where} needs at least one peer`);
  return peers.flatMap((p, i): PolicyPeer[] => {
    const at = `${where}[${i}]`;
    if (!isRecord(p)) throw new Fault(`${at} must be an object`);
    const known = dir === 'egress' ? ['namespaces', 'pods', 'networks'] : ['namespaces', 'pods'];
    only(p, known, at);
    const set = known.filter((k) => !absent(p[k]));
    if (set.length !== 1) throw new Fault(`${at} needs exactly one of ${known.join(', ')}`);
    if (!absent(p.namespaces)) {
      return [{ namespaceSelector: labelSelectorFromK8s(p.namespaces, `${at}.namespaces`) }];
    }
    if (!absent(p.pods)) {
      const s = namespacedPodFromK8s(p.pods, `${at}.pods`);
      return [{ namespaceSelector: s.namespaceSelector, podSelector: s.podSelector }];
    }
    const networks = list(p.networks, `${at}.networks`);
    if (networks.length === 0) throw new Fault(`${at}.networks needs at least one CIDR`);
    return networks.map((cidr, j) => {
      if (typeof cidr !== 'string') throw new Fault(`${at}.networks[${j}] must be a CIDR`);
      return { ipBlock: { cidr, except: [] } };
    });
  });
}

function protocolOf(v: unknown, where: string): Protocol {
  const protocol = absent(v) ? 'TCP' : v;
  if (!PROTOCOLS.includes(protocol as Protocol)) {
    throw new Fault(`${where} ${JSON.stringify(protocol)} is not one of ${PROTOCOLS.join(', ')}`);
  }
  return protocol as Protocol;
}

function adminPortsFromK8s(v: unknown, where: string): PolicyPort[] {
  if (absent(v)) return [];
  const ports = list(v, where);
  if (ports.length === 0) throw new Fault(`${where}, when given, must name at least one port`);
  return ports.flatMap((p, i): PolicyPort[] => {
    const at = `${where}[${i}]`;
    if (!isRecord(p)) throw new Fault(`${at} must be an object`);
    const known = ['portNumber', 'portRange', 'namedPort'];
    only(p, known, at);
    if (known.filter((k) => !absent(p[k])).length !== 1) {
      throw new Fault(`${at} needs exactly one of ${known.join(', ')}`);
    }
    if (!absent(p.namedPort)) {
      if (typeof p.namedPort !== 'string') throw new Fault(`${at}.namedPort must be a name`);
      // A named port has no protocol of its own: it is the container port of that
      // name, whatever its protocol.
      return PROTOCOLS.map((protocol) => ({ protocol, port: p.namedPort as string }));
    }
    if (!absent(p.portNumber)) {
      const n = p.portNumber;
      if (!isRecord(n) || typeof n.port !== 'number')
        throw new Fault(`${at}.portNumber needs a port`);
      only(n, ['protocol', 'port'], `${at}.portNumber`);
      return [{ protocol: protocolOf(n.protocol, `${at}.portNumber.protocol`), port: n.port }];
    }
    const r = p.portRange;
    if (!isRecord(r) || typeof r.start !== 'number' || typeof r.end !== 'number') {
      throw new Fault(`${at}.portRange needs start and end`);
    }
    only(r, ['protocol', 'start', 'end'], `${at}.portRange`);
    return [
      {
        protocol: protocolOf(r.protocol, `${at}.portRange.protocol`),
        port: r.start,
        endPort: r.end,
      },
    ];
  });
}

/** One rule, or its fail-closed stand-in (null: an Allow rule left out) and a fault. */
function adminRuleFromK8s(
  v: unknown,
  where: string,
  dir: 'ingress' | 'egress',
  baseline: boolean,
): { rule: AdminRule | null; fault: Fault | null } {
  const record = isRecord(v) ? v : {};
  const name = typeof record.name === 'string' ? record.name : '';
  const action = record.action;
  try {
    if (!isRecord(v)) throw new Fault(`${where} must be an object`);
    const peersKey = dir === 'ingress' ? 'from' : 'to';
    only(v, ['name', 'action', peersKey, 'ports'], where);
    const rule: AdminRule = {
      name,
      action: action as AdminAction,
      peers: adminPeersFromK8s(v[peersKey], `${where}.${peersKey}`, dir),
      ports: adminPortsFromK8s(v.ports, `${where}.ports`),
    };
    const fault = checkAdminRule(rule, where, dir, baseline);
    if (fault) throw new Fault(fault);
    return { rule, fault: null };
  } catch (e) {
    if (!(e instanceof Fault)) throw e;
    if (action === 'Allow') return { rule: null, fault: e };
    return { rule: { name, action: 'Deny', peers: [], ports: [] }, fault: e };
  }
}

function translateAdmin(
  kind: AdminKind,
  obj: unknown,
): {
  policy: AdminNetworkPolicy | null;
  problems: PolicyProblem[];
} {
  const { name } = metaOf(obj);
  const baseline = kind === 'BaselineAdminNetworkPolicy';
  const problem = (reason: PolicyProblem['reason'], message: string): PolicyProblem => ({
    kind,
    namespace: '',
    name,
    reason,
    message,
  });
  const reasonOf = (f: Fault) => (f.unsupported ? 'UnsupportedField' : 'InvalidPolicy');
  if (!name) {
    return { policy: null, problems: [problem('InvalidPolicy', 'metadata.name is required')] };
  }
  const spec = isRecord(obj) && isRecord(obj.spec) ? obj.spec : null;
  let subject: AdminSubject;
  try {
    if (!spec) throw new Fault('spec must be an object');
    subject = adminSubjectFromK8s(spec.subject);
  } catch (e) {
    if (!(e instanceof Fault)) throw e;
    return {
      policy: null,
      problems: [problem(reasonOf(e), `${e.message}; the policy is not enforced for any pod`)],
    };
  }
  const rawPriority = spec.priority;
  const priorityOk =
    baseline ||
    (Number.isInteger(rawPriority) &&
      (rawPriority as number) >= 0 &&
      (rawPriority as number) <= 1000);
  const priority = baseline ? 0 : priorityOk ? (rawPriority as number) : -1;
  const denyAll = (f: Fault) => {
    const deny: AdminRule = { name: '', action: 'Deny', peers: [], ports: [] };
    return {
      policy: { name, priority, subject, ingress: [deny], egress: [deny] },
      problems: [
        problem(
          reasonOf(f),
          `${f.message}; the policy denies all traffic of its subject` +
            (priority < 0 ? ', ahead of every AdminNetworkPolicy' : ''),
        ),
      ],
    };
  };
  try {
    only(
      spec,
      baseline ? ['subject', 'ingress', 'egress'] : ['priority', 'subject', 'ingress', 'egress'],
      'spec',
    );
    if (!priorityOk) throw new Fault('spec.priority must be an integer from 0 to 1000');
    const problems: PolicyProblem[] = [];
    const rules = (dir: 'ingress' | 'egress'): AdminRule[] =>
      list(spec[dir], `spec.${dir}`).flatMap((r, i) => {
        const where = `spec.${dir}[${i}]`;
        const { rule, fault } = adminRuleFromK8s(r, where, dir, baseline);
        if (fault) {
          problems.push(
            problem(
              reasonOf(fault),
              `${fault.message}; ${rule ? 'the rule denies everything' : 'the Allow rule matches nothing'}`,
            ),
          );
        }
        return rule ? [rule] : [];
      });
    const ingress = rules('ingress');
    const egress = rules('egress');
    return { policy: { name, priority, subject, ingress, egress }, problems };
  } catch (e) {
    if (!(e instanceof Fault)) throw e;
    return denyAll(e);
  }
}

/**
 * An AdminNetworkPolicy object as the compiler's type, failing closed (see above).
 * `policy` is null when there is no name or the subject cannot be read.
 */
export function adminNetworkPolicyFromK8s(obj: object): {
  policy: AdminNetworkPolicy | null;
  problems: PolicyProblem[];
} {
  return translateAdmin('AdminNetworkPolicy', obj);
}

/** A BaselineAdminNetworkPolicy object as the compiler's type, failing closed alike. */
export function baselineAdminNetworkPolicyFromK8s(obj: object): {
  policy: BaselineAdminNetworkPolicy | null;
  problems: PolicyProblem[];
} {
  const { policy, problems } = translateAdmin('BaselineAdminNetworkPolicy', obj);
  if (!policy) return { policy: null, problems };
  const { name, subject, ingress, egress } = policy;
  return { policy: { name, subject, ingress, egress }, problems };
}
