// A typed wrapper over iproute2's JSON output (`ip -j`) for the links, addresses
// and routes the agent owns, with an in-memory fake for driver unit tests.
import type { Runner } from './exec.ts';

export interface LinkInfo {
  name: string;
  index: number;
  mtu: number;
  up: boolean;
}

export interface RouteInfo {
  dst: string;
  dev: string;
  src?: string;
  protocol?: number;
  /** Routing table; the main table when absent. */
  table?: number;
}

/** A policy-routing rule `not fwmark MARK lookup TABLE` at a priority, per family. */
export interface RuleInfo {
  family: 4 | 6;
  priority: number;
  notFwmark: number;
  table: number;
}

export interface IpClient {
  linkShow(name: string): Promise<LinkInfo | null>;
  /** The link that holds `address`, e.g. the underlay interface of a node's InternalIP. */
  linkOfAddress(address: string): Promise<LinkInfo | null>;
  linkSetMtu(name: string, mtu: number): Promise<void>;
  linkSetUp(name: string): Promise<void>;
  linkDelete(name: string): Promise<void>;
  linkAddWireGuard(name: string): Promise<void>;
  addrList(dev: string): Promise<string[]>;
  addrAdd(dev: string, cidr: string): Promise<void>;
  addrDel(dev: string, cidr: string): Promise<void>;
  /** Routes on `dev` that carry `protocol`, in `table` (default main). */
  routeList(dev: string, protocol: number, table?: number): Promise<RouteInfo[]>;
  routeReplace(route: RouteInfo & { protocol: number }): Promise<void>;
  routeDel(route: RouteInfo): Promise<void>;
  /** The `not fwmark` rules that look up `table`. */
  ruleList(table: number): Promise<RuleInfo[]>;
  ruleAdd(rule: RuleInfo): Promise<void>;
  ruleDel(rule: RuleInfo): Promise<void>;
}

const IFNAME = /^[A-Za-z0-9_.=-]{1,15}$/;

function checkName(name: string): string {
  if (!IFNAME.test(name)) throw new Error(`invalid interface name '${name}'`);
  return name;
}

function familyFlag(cidr: string): string {
  return cidr.includes(':') ? '-6' : '-4';
}

/** Normalise `ip -j route` dst: a host route prints without a prefix length. */
function normaliseDst(dst: string): string {
  if (dst === 'default') return dst;
  if (dst.includes('/')) return dst;
  return dst.includes(':') ? `${dst}/128` : `${dst}/32`;
}

export class IpCli implements IpClient {
  private readonly runner: Runner;
  constructor(runner: Runner) {
    this.runner = runner;
  }

  async linkShow(name: string): Promise<LinkInfo | null> {
    const res = await this.runner.run(['ip', '-j', 'link', 'show', 'dev', checkName(name)], {
      allowFailure: true,
    });
    if (res.code !== 0) {
      if (/does not exist|Cannot find device/i.test(res.stderr)) return null;
      throw new Error(`ip link show ${name}: ${res.stderr.trim()}`);
    }
    const [link] = JSON.parse(res.stdout) as {
      ifname: string;
      ifindex: number;
      mtu: number;
      flags: string[];
    }[];
    if (!link) return null;
    return { name: link.ifname, index: link.ifindex, mtu: link.mtu, up: link.flags.includes('UP') };
  }

  async linkOfAddress(address: string): Promise<LinkInfo | null> {
    const res = await this.runner.run(['ip', '-j', 'addr', 'show']);
    const links = JSON.parse(res.stdout) as {
      ifname: string;
      ifindex: number;
      mtu: number;
      flags: string[];
      addr_info?: { local: string }[];
    }[];
    const link = links.find((l) => (l.addr_info ?? []).some((a) => a.local === address));
    return link
      ? { name: link.ifname, index: link.ifindex, mtu: link.mtu, up: link.flags.includes('UP') }
      : null;
  }

  async linkSetMtu(name: string, mtu: number): Promise<void> {
    await this.runner.run(['ip', 'link', 'set', 'dev', checkName(name), 'mtu', String(mtu)]);
  }

  async linkSetUp(name: string): Promise<void> {
    await this.runner.run(['ip', 'link', 'set', 'dev', checkName(name), 'up']);
  }

  async linkDelete(name: string): Promise<void> {
    await this.runner.run(['ip', 'link', 'del', 'dev', checkName(name)]);
  }

  async linkAddWireGuard(name: string): Promise<void> {
    await this.runner.run(['ip', 'link', 'add', 'dev', checkName(name), 'type', 'wireguard']);
  }

  async addrList(dev: string): Promise<string[]> {
    const res = await this.runner.run(['ip', '-j', 'addr', 'show', 'dev', checkName(dev)]);
    const [link] = JSON.parse(res.stdout) as {
      addr_info?: { local: string; prefixlen: number; scope: string }[];
    }[];
    return (link?.addr_info ?? [])
      .filter((a) => a.scope !== 'link')
      .map((a) => `${a.local}/${a.prefixlen}`);
  }

  async addrAdd(dev: string, cidr: string): Promise<void> {
    await this.runner.run(['ip', familyFlag(cidr), 'addr', 'add', cidr, 'dev', checkName(dev)]);
  }

  async addrDel(dev: string, cidr: string): Promise<void> {
    await this.runner.run(['ip', familyFlag(cidr), 'addr', 'del', cidr, 'dev', checkName(dev)]);
  }

  async routeList(dev: string, protocol: number, table?: number): Promise<RouteInfo[]> {
    const out: RouteInfo[] = [];
    const tableArgs = table === undefined ? [] : ['table', String(table)];
    for (const family of ['-4', '-6']) {
      const argv = [
        'ip',
        '-j',
        family,
        'route',
        'show',
        ...tableArgs,
        'dev',
        checkName(dev),
        'proto',
        String(protocol),
      ];
      const res = await this.runner.run(argv, { allowFailure: true });
      if (res.code !== 0) {
        if (/Cannot find device/i.test(res.stderr)) return [];
        // A table with no route yet does not exist, which is the same as empty.
        if (/FIB table does not exist/i.test(res.stderr)) continue;
        throw new Error(`ip route show dev ${dev}: ${res.stderr.trim()}`);
      }
      for (const r of JSON.parse(res.stdout || '[]') as { dst: string; prefsrc?: string }[]) {
        out.push({
          dst: normaliseDst(r.dst),
          dev,
          protocol,
          ...(r.prefsrc ? { src: r.prefsrc } : {}),
          ...(table === undefined ? {} : { table }),
        });
      }
    }
    return out;
  }

  async routeReplace(route: RouteInfo & { protocol: number }): Promise<void> {
    const argv = [
      'ip',
      familyFlag(route.dst),
      'route',
      'replace',
      route.dst,
      'dev',
      checkName(route.dev),
    ];
    argv.push('proto', String(route.protocol));
    if (route.src) argv.push('src', route.src);
    if (route.table !== undefined) argv.push('table', String(route.table));
    await this.runner.run(argv);
  }

  async routeDel(route: RouteInfo): Promise<void> {
    const argv = [
      'ip',
      familyFlag(route.dst),
      'route',
      'del',
      route.dst,
      'dev',
      checkName(route.dev),
    ];
    if (route.table !== undefined) argv.push('table', String(route.table));
    await this.runner.run(argv, { allowFailure: true });
  }

  async ruleList(table: number): Promise<RuleInfo[]> {
    const out: RuleInfo[] = [];
    for (const family of [4, 6] as const) {
      const res = await this.runner.run(['ip', '-j', `-${family}`, 'rule', 'show']);
      type Rule = { priority: number; not?: null; fwmark?: string; table?: string };
      for (const r of JSON.parse(res.stdout || '[]') as Rule[]) {
        if (r.table !== String(table) || !('not' in r) || !r.fwmark) continue;
        out.push({ family, priority: r.priority, notFwmark: parseInt(r.fwmark, 16), table });
      }
    }
    return out;
  }

  async ruleAdd(rule: RuleInfo): Promise<void> {
    await this.runner.run(['ip', `-${rule.family}`, 'rule', 'add', ...ruleArgs(rule)]);
  }

  async ruleDel(rule: RuleInfo): Promise<void> {
    await this.runner.run(['ip', `-${rule.family}`, 'rule', 'del', ...ruleArgs(rule)], {
      allowFailure: true,
    });
  }
}

function ruleArgs(rule: RuleInfo): string[] {
  return [
    'not',
    'fwmark',
    `0x${rule.notFwmark.toString(16)}`,
    'table',
    String(rule.table),
    'priority',
    String(rule.priority),
  ];
}

/** In-memory links, addresses and routes, for unit tests of drivers. */
export class FakeIp implements IpClient {
  links = new Map<string, LinkInfo & { addrs: Set<string> }>();
  routes: (RouteInfo & { protocol: number })[] = [];
  rules: RuleInfo[] = [];
  calls: string[] = [];
  private nextIndex = 10;

  addLink(name: string, mtu = 1420): void {
    this.links.set(name, { name, index: this.nextIndex++, mtu, up: false, addrs: new Set() });
  }

  async linkShow(name: string): Promise<LinkInfo | null> {
    const l = this.links.get(name);
    return l ? { name: l.name, index: l.index, mtu: l.mtu, up: l.up } : null;
  }
  async linkOfAddress(address: string): Promise<LinkInfo | null> {
    for (const l of this.links.values()) {
      if ([...l.addrs].some((a) => a.split('/')[0] === address))
        return { name: l.name, index: l.index, mtu: l.mtu, up: l.up };
    }
    return null;
  }
  private must(name: string) {
    const l = this.links.get(name);
    if (!l) throw new Error(`Cannot find device "${name}"`);
    return l;
  }
  async linkSetMtu(name: string, mtu: number): Promise<void> {
    this.calls.push(`mtu ${name} ${mtu}`);
    this.must(name).mtu = mtu;
  }
  async linkSetUp(name: string): Promise<void> {
    this.calls.push(`up ${name}`);
    this.must(name).up = true;
  }
  async linkDelete(name: string): Promise<void> {
    this.calls.push(`del ${name}`);
    this.must(name);
    this.links.delete(name);
    this.routes = this.routes.filter((r) => r.dev !== name);
  }
  async linkAddWireGuard(name: string): Promise<void> {
    this.calls.push(`add ${name}`);
    this.addLink(name);
  }
  async addrList(dev: string): Promise<string[]> {
    return [...this.must(dev).addrs];
  }
  async addrAdd(dev: string, cidr: string): Promise<void> {
    this.calls.push(`addr add ${dev} ${cidr}`);
    this.must(dev).addrs.add(cidr);
  }
  async addrDel(dev: string, cidr: string): Promise<void> {
    this.calls.push(`addr del ${dev} ${cidr}`);
    this.must(dev).addrs.delete(cidr);
  }
  async routeList(dev: string, protocol: number, table?: number): Promise<RouteInfo[]> {
    return this.routes
      .filter((r) => r.dev === dev && r.protocol === protocol && r.table === table)
      .map((r) => ({ ...r }));
  }
  async routeReplace(route: RouteInfo & { protocol: number }): Promise<void> {
    const table = route.table === undefined ? '' : ` table ${route.table}`;
    this.calls.push(`route replace ${route.dst} ${route.dev}${table}`);
    this.must(route.dev);
    this.routes = this.routes.filter((r) => !(r.dst === route.dst && r.table === route.table));
    this.routes.push({ ...route });
  }
  async routeDel(route: RouteInfo): Promise<void> {
    this.calls.push(`route del ${route.dst} ${route.dev}`);
    this.routes = this.routes.filter(
      (r) => !(r.dst === route.dst && r.dev === route.dev && r.table === route.table),
    );
  }
  async ruleList(table: number): Promise<RuleInfo[]> {
    return this.rules.filter((r) => r.table === table).map((r) => ({ ...r }));
  }
  async ruleAdd(rule: RuleInfo): Promise<void> {
    this.calls.push(`rule add ${rule.family} ${rule.priority}`);
    this.rules.push({ ...rule });
  }
  async ruleDel(rule: RuleInfo): Promise<void> {
    this.calls.push(`rule del ${rule.family} ${rule.priority}`);
    this.rules = this.rules.filter(
      (r) => !(r.family === rule.family && r.priority === rule.priority && r.table === rule.table),
    );
  }
}
