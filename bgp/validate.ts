// Checking a BirdPlan before it becomes bird.conf: every input the agent computes
// (addresses, CIDRs, AS numbers, neighbour names and roles, timers) is checked here,
// so a bad plan fails with sentences naming the field, not with a BIRD parse error
// (or, worse, a configuration BIRD accepts but that routes an encrypted pool in the
// clear). Only IPv4 for now: BIRD sessions and pools here are IPv4.
import {
  cidrsOverlap,
  formatCidr,
  parseCanonicalAddress,
  parseCanonicalCidr,
  type Cidr,
} from '../ipam/cidr.ts';
import type { BirdPlan } from './plan.ts';

/** Names plan.ts gives its own protocols, filters and tables. */
const RESERVED = /^wm_/;
const MAX_AS = 4294967295;

/** Everything wrong with a plan, one sentence each; empty when it can be rendered. */
export function validatePlan(plan: BirdPlan): string[] {
  const errors: string[] = [];
  const ipv4 = (what: string, text: string) => {
    const p = parseCanonicalAddress(text);
    if (!p.ok) errors.push(`${what}: ${p.reason}`);
    else if (p.value.family !== 4) errors.push(`${what}: '${text}' is not an IPv4 address`);
  };
  const cidrs = (what: string, list: string[]): Cidr[] =>
    list.flatMap((text) => {
      const p = parseCanonicalCidr(text);
      if (!p.ok) errors.push(`${what}: ${p.reason}`);
      else if (p.value.family !== 4) errors.push(`${what}: '${text}' is not an IPv4 CIDR`);
      else if (p.value.prefix === 0) errors.push(`${what}: '${text}' is a default route`);
      else return [p.value];
      return [];
    });
  const seconds = (what: string, v: number | undefined, min: number) => {
    if (v !== undefined && (!Number.isInteger(v) || v < min || v > 65535))
      errors.push(`${what} must be a whole number of seconds in ${min}..65535, not ${v}`);
  };

  ipv4('routerId', plan.routerId);
  ipv4('localAddress', plan.localAddress);
  if (!validAS(plan.localAS)) errors.push(`localAS ${plan.localAS} is outside 1..${MAX_AS}`);
  const announce = cidrs('announce', plan.announce);
  cidrs('accept', plan.accept);
  const never = cidrs('neverAccept', plan.neverAccept);
  for (const a of announce) {
    if (never.some((n) => cidrsOverlap(a, n)))
      errors.push(`announce: ${formatCidr(a)} overlaps an encrypted pool (neverAccept)`);
  }
  if (!Number.isInteger(plan.kernelMetric) || plan.kernelMetric < 1 || plan.kernelMetric > MAX_AS)
    errors.push(`kernelMetric ${plan.kernelMetric} is outside 1..${MAX_AS}`);
  if (plan.holdTime !== 0) seconds('holdTime', plan.holdTime, 3);
  seconds('keepaliveTime', plan.keepaliveTime, 1);
  seconds('connectRetryTime', plan.connectRetryTime, 1);
  const [waitMin, waitMax] = plan.errorWaitTime ?? [];
  seconds('errorWaitTime', waitMin, 1);
  seconds('errorWaitTime', waitMax, 1);
  if (waitMin !== undefined && waitMax !== undefined && waitMin > waitMax)
    errors.push(`errorWaitTime: ${waitMin} is above ${waitMax}`);
  if (plan.holdTime && plan.keepaliveTime && plan.keepaliveTime >= plan.holdTime)
    errors.push(`keepaliveTime ${plan.keepaliveTime} must be below holdTime ${plan.holdTime}`);
  if (plan.reflectorClusterId !== undefined) ipv4('reflectorClusterId', plan.reflectorClusterId);
  for (const [address, blocks] of Object.entries(plan.nodeOrigins ?? {})) {
    ipv4('nodeOrigins', address);
    cidrs(`nodeOrigins[${address}]`, blocks);
  }

  const names = new Set<string>();
  const addresses = new Set<string>();
  for (const n of plan.neighbors) {
    const who = `neighbor '${n.name}'`;
    if (!/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(n.name))
      errors.push(`${who}: a name is a letter then up to 63 letters, digits or '_'`);
    else if (RESERVED.test(n.name)) errors.push(`${who}: names starting 'wm_' are reserved`);
    if (names.has(n.name)) errors.push(`${who}: duplicate name`);
    names.add(n.name);
    ipv4(`${who} address`, n.address);
    if (addresses.has(n.address)) errors.push(`${who}: duplicate address ${n.address}`);
    addresses.add(n.address);
    if (n.address === plan.localAddress) errors.push(`${who}: address is our own localAddress`);
    if (!validAS(n.as)) errors.push(`${who}: AS ${n.as} is outside 1..${MAX_AS}`);
    const internal = n.role !== 'external';
    if (internal && n.as !== plan.localAS)
      errors.push(`${who}: role '${n.role}' is iBGP but AS ${n.as} is not localAS ${plan.localAS}`);
    if (!internal && n.as === plan.localAS)
      errors.push(`${who}: role 'external' needs an AS other than localAS ${plan.localAS}`);
    if (n.multihop && internal) errors.push(`${who}: multihop is for external neighbors only`);
    if (n.role === 'client' && plan.reflectorClusterId === undefined)
      errors.push(`${who}: a 'client' neighbor needs reflectorClusterId`);
  }
  return errors;
}

function validAS(as: number): boolean {
  return Number.isInteger(as) && as >= 1 && as <= MAX_AS;
}
