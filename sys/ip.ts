// A typed wrapper over iproute2's JSON output (`ip -j`, and `bridge -j` for the
// forwarding database, which `ip` does not show) for the links, addresses, routes,
// rules, neighbour and FDB entries the agent owns. Its in-memory fake for driver unit
// tests is in fakeip.ts.
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
  /** Next hop (`via`), of the destination's family. */
  gateway?: string;
  /** The next hop is on the link even though no address of the device covers it. */
  onlink?: boolean;
  /** Route metric (priority); the family's default when absent. */
  metric?: number;
  /** Route scope as a number (253: link); iproute2 picks one when absent. */
  scope?: number;
}

/** A link and its alias (`ip link set NAME alias ...`; '' when it has none). */
export interface AliasedLink extends LinkInfo {
  alias: string;
}

/** An address of a link (not link-scope) and whether the kernel made it a prefix route. */
export interface AddrDetails {
  /** `address/prefixlen`. */
  cidr: string;
  /** False for an address added with `noprefixroute`: its subnet is someone else's to route. */
  prefixRoute: boolean;
}

/** What `ip -d link show` says about a link beyond LinkInfo. */
export interface LinkDetails extends LinkInfo {
  /** `vxlan`, `ipip`, `wireguard`, `veth`, ...; null for a link without a kind (e.g. lo). */
  kind: string | null;
  /** Link-layer address; null for links without one (IP-in-IP, WireGuard). */
  mac: string | null;
  vxlan?: {
    vni: number;
    port: number;
    local: string | null;
    learning: boolean;
    underlayDev: string | null;
  };
  ipip?: { local: string | null; remote: string | null };
}

/** A VXLAN device without learning: remote VTEPs come only from FDB entries. */
export interface VxlanLinkSpec {
  name: string;
  vni: number;
  port: number;
  /** Underlay address the device sends from. */
  local: string;
  /** Underlay device to bind to; the kernel routes the outer packets when absent. */
  underlayDev?: string;
  mtu: number;
  mac: string;
}

/** A point-to-multipoint IP-in-IP device: the outer destination is each route's gateway. */
export interface IpipLinkSpec {
  name: string;
  /** Underlay address (also keeps it apart from the kernel's fallback `tunl0`). */
  local: string;
  mtu: number;
}

/** A permanent forwarding entry on a VXLAN device: inner MAC -> outer destination. */
export interface FdbEntry {
  dev: string;
  mac: string;
  dst: string;
}

/** A permanent neighbour entry: an address on `dev` is at `lladdr`. */
export interface NeighEntry {
  dev: string;
  dst: string;
  lladdr: string;
}

/** A policy-routing rule `from CIDR lookup TABLE` at a priority. */
export interface SourceRuleInfo {
  family: 4 | 6;
  priority: number;
  from: string;
  table: number;
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
  /** Routes that carry `protocol` on every device, in `table` (default main). */
  routeListByProtocol(protocol: number, table?: number): Promise<RouteInfo[]>;
  routeReplace(route: RouteInfo & { protocol: number }): Promise<void>;
  /**
   * Replaces many routes with one process (`ip -batch`), going on past a failure;
   * returns what failed (empty when all were written).
   */
  routeReplaceBatch(routes: readonly (RouteInfo & { protocol: number })[]): Promise<string[]>;
  routeDel(route: RouteInfo): Promise<void>;
  /** Links of one kind (`veth`, ...) with their aliases. */
  linkList(kind: string): Promise<AliasedLink[]>;
  /** The addresses of `dev` (not link-scope) with their prefix-route flag; [] when it does not exist. */
  addrDetails(dev: string): Promise<AddrDetails[]>;
  /** The `not fwmark` rules that look up `table`. */
  ruleList(table: number): Promise<RuleInfo[]>;
  ruleAdd(rule: RuleInfo): Promise<void>;
  ruleDel(rule: RuleInfo): Promise<void>;

  /** Kind, MAC and VXLAN / IP-in-IP attributes of a link; null when it does not exist. */
  linkDetails(name: string): Promise<LinkDetails | null>;
  linkAddVxlan(spec: VxlanLinkSpec): Promise<void>;
  linkAddIpip(spec: IpipLinkSpec): Promise<void>;
  linkSetMac(name: string, mac: string): Promise<void>;
  /** Permanent FDB entries with a remote destination on `dev`; [] when it does not exist. */
  fdbList(dev: string): Promise<FdbEntry[]>;
  fdbAppend(entry: FdbEntry): Promise<void>;
  fdbDel(entry: FdbEntry): Promise<void>;
  /** Permanent neighbour entries (both families) on `dev`; [] when it does not exist. */
  neighList(dev: string): Promise<NeighEntry[]>;
  neighReplace(entry: NeighEntry): Promise<void>;
  neighDel(entry: Pick<NeighEntry, 'dev' | 'dst'>): Promise<void>;
  /** The `from CIDR` rules that look up `table`. */
  sourceRuleList(table: number): Promise<SourceRuleInfo[]>;
  sourceRuleAdd(rule: SourceRuleInfo): Promise<void>;
  sourceRuleDel(rule: SourceRuleInfo): Promise<void>;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function checkMac(mac: string): string {
  if (!MAC.test(mac)) throw new Error(`invalid MAC address '${mac}' (lower-case, colon-separated)`);
  return mac;
}

function missingDevice(stderr: string): boolean {
  return /does not exist|Cannot find device/i.test(stderr);
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
    return this.listRoutes(protocol, table, checkName(dev));
  }

  routeListByProtocol(protocol: number, table?: number): Promise<RouteInfo[]> {
    return this.listRoutes(protocol, table);
  }

  /** Routes of `protocol` in `table`, on `dev` or on every device; both families. */
  private async listRoutes(protocol: number, table?: number, dev?: string): Promise<RouteInfo[]> {
    const out: RouteInfo[] = [];
    const tableArgs = table === undefined ? [] : ['table', String(table)];
    const devArgs = dev === undefined ? [] : ['dev', dev];
    for (const family of ['-4', '-6']) {
      const argv = ['ip', '-j', family, 'route', 'show', ...tableArgs, ...devArgs];
      argv.push('proto', String(protocol));
      const res = await this.runner.run(argv, { allowFailure: true });
      if (res.code !== 0) {
        if (/Cannot find device/i.test(res.stderr)) return [];
        // A table with no route yet does not exist, which is the same as empty.
        if (/FIB table does not exist/i.test(res.stderr)) continue;
        throw new Error(`ip route show${dev ? ` dev ${dev}` : ''}: ${res.stderr.trim()}`);
      }
      type Route = {
        dst: string;
        dev?: string;
        prefsrc?: string;
        gateway?: string;
        flags?: string[];
        metric?: number;
      };
      for (const r of JSON.parse(res.stdout || '[]') as Route[]) {
        out.push({
          dst: normaliseDst(r.dst),
          dev: dev ?? r.dev ?? '',
          protocol,
          ...(r.prefsrc ? { src: r.prefsrc } : {}),
          ...(table === undefined ? {} : { table }),
          ...(r.gateway ? { gateway: r.gateway } : {}),
          ...(r.flags?.includes('onlink') ? { onlink: true } : {}),
          ...(r.metric === undefined ? {} : { metric: r.metric }),
        });
      }
    }
    return out;
  }

  async routeReplace(route: RouteInfo & { protocol: number }): Promise<void> {
    await this.runner.run(['ip', familyFlag(route.dst), 'route', 'replace', ...routeArgs(route)]);
  }

  async routeReplaceBatch(
    routes: readonly (RouteInfo & { protocol: number })[],
  ): Promise<string[]> {
    if (routes.length === 0) return [];
    // A batch line takes no family flag: each destination has its prefix length, so
    // iproute2 tells the family from it.
    for (const r of routes)
      if (!r.dst.includes('/')) throw new Error(`route ${r.dst}: a batch needs a prefix length`);
    const input = routes.map((r) => `route replace ${routeArgs(r).join(' ')}\n`).join('');
    const res = await this.runner.run(['ip', '-force', '-batch', '-'], {
      input,
      allowFailure: true,
    });
    if (res.code === 0) return [];
    return res.stderr
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }

  async linkList(kind: string): Promise<AliasedLink[]> {
    if (!/^[a-z0-9_]+$/.test(kind)) throw new Error(`invalid link kind '${kind}'`);
    const res = await this.runner.run(['ip', '-j', 'link', 'show', 'type', kind]);
    type Link = { ifname: string; ifindex: number; mtu: number; flags: string[]; ifalias?: string };
    return (JSON.parse(res.stdout || '[]') as Link[]).map((l) => ({
      name: l.ifname,
      index: l.ifindex,
      mtu: l.mtu,
      up: l.flags.includes('UP'),
      alias: l.ifalias ?? '',
    }));
  }

  async addrDetails(dev: string): Promise<AddrDetails[]> {
    const argv = ['ip', '-j', 'addr', 'show', 'dev', checkName(dev)];
    const res = await this.runner.run(argv, { allowFailure: true });
    if (res.code !== 0) {
      if (missingDevice(res.stderr)) return [];
      throw new Error(`ip addr show dev ${dev}: ${res.stderr.trim()}`);
    }
    type Addr = { local: string; prefixlen: number; scope: string; noprefixroute?: boolean };
    const [link] = JSON.parse(res.stdout || '[]') as { addr_info?: Addr[] }[];
    return (link?.addr_info ?? [])
      .filter((a) => a.scope !== 'link')
      .map((a) => ({ cidr: `${a.local}/${a.prefixlen}`, prefixRoute: !a.noprefixroute }));
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

  async linkDetails(name: string): Promise<LinkDetails | null> {
    const res = await this.runner.run(['ip', '-j', '-d', 'link', 'show', 'dev', checkName(name)], {
      allowFailure: true,
    });
    if (res.code !== 0) {
      if (missingDevice(res.stderr)) return null;
      throw new Error(`ip -d link show ${name}: ${res.stderr.trim()}`);
    }
    type Link = {
      ifname: string;
      ifindex: number;
      mtu: number;
      flags: string[];
      link_type?: string;
      address?: string;
      linkinfo?: {
        info_kind?: string;
        info_data?: {
          id?: number;
          port?: number;
          local?: string;
          /** A VXLAN device bound to an IPv6 underlay address. */
          local6?: string;
          remote?: string;
          learning?: boolean;
          link?: string;
        };
      };
    };
    const [link] = JSON.parse(res.stdout) as Link[];
    if (!link) return null;
    const kind = link.linkinfo?.info_kind ?? null;
    const data = link.linkinfo?.info_data ?? {};
    const details: LinkDetails = {
      name: link.ifname,
      index: link.ifindex,
      mtu: link.mtu,
      up: link.flags.includes('UP'),
      kind,
      mac: link.link_type === 'ether' && link.address ? link.address : null,
    };
    if (kind === 'vxlan') {
      details.vxlan = {
        vni: data.id ?? 0,
        port: data.port ?? 0,
        local: data.local ?? data.local6 ?? null,
        learning: data.learning ?? true,
        underlayDev: data.link ?? null,
      };
    }
    if (kind === 'ipip') {
      const any = (a: string | undefined) => (a && a !== 'any' ? a : null);
      details.ipip = { local: any(data.local), remote: any(data.remote) };
    }
    return details;
  }

  async linkAddVxlan(spec: VxlanLinkSpec): Promise<void> {
    const argv = ['ip', 'link', 'add', 'name', checkName(spec.name)];
    argv.push('address', checkMac(spec.mac), 'mtu', String(spec.mtu), 'type', 'vxlan');
    argv.push('id', String(spec.vni), 'dstport', String(spec.port), 'local', spec.local);
    argv.push('nolearning');
    if (spec.underlayDev) argv.push('dev', checkName(spec.underlayDev));
    await this.runner.run(argv);
  }

  async linkAddIpip(spec: IpipLinkSpec): Promise<void> {
    await this.runner.run(
      ['ip', 'link', 'add', 'name', checkName(spec.name), 'mtu', String(spec.mtu)].concat([
        'type',
        'ipip',
        'local',
        spec.local,
      ]),
    );
  }

  async linkSetMac(name: string, mac: string): Promise<void> {
    await this.runner.run(['ip', 'link', 'set', 'dev', checkName(name), 'address', checkMac(mac)]);
  }

  async fdbList(dev: string): Promise<FdbEntry[]> {
    const res = await this.runner.run(['bridge', '-j', 'fdb', 'show', 'dev', checkName(dev)], {
      allowFailure: true,
    });
    if (res.code !== 0) {
      if (missingDevice(res.stderr)) return [];
      throw new Error(`bridge fdb show dev ${dev}: ${res.stderr.trim()}`);
    }
    type Fdb = { mac: string; dst?: string; state?: string };
    return (JSON.parse(res.stdout || '[]') as Fdb[])
      .filter((f) => f.dst !== undefined && f.state === 'permanent')
      .map((f) => ({ dev, mac: f.mac, dst: f.dst ?? '' }));
  }

  async fdbAppend(entry: FdbEntry): Promise<void> {
    await this.runner.run(
      ['bridge', 'fdb', 'append', checkMac(entry.mac), 'dev', checkName(entry.dev)].concat([
        'dst',
        entry.dst,
        'self',
        'permanent',
      ]),
    );
  }

  async fdbDel(entry: FdbEntry): Promise<void> {
    await this.runner.run(
      ['bridge', 'fdb', 'del', checkMac(entry.mac), 'dev', checkName(entry.dev)].concat([
        'dst',
        entry.dst,
        'self',
      ]),
      { allowFailure: true },
    );
  }

  async neighList(dev: string): Promise<NeighEntry[]> {
    const argv = ['ip', '-j', 'neigh', 'show', 'dev', checkName(dev), 'nud', 'permanent'];
    const res = await this.runner.run(argv, { allowFailure: true });
    if (res.code !== 0) {
      if (missingDevice(res.stderr)) return [];
      throw new Error(`ip neigh show dev ${dev}: ${res.stderr.trim()}`);
    }
    type Neigh = { dst: string; lladdr?: string };
    return (JSON.parse(res.stdout || '[]') as Neigh[])
      .filter((n) => n.lladdr !== undefined)
      .map((n) => ({ dev, dst: n.dst, lladdr: n.lladdr ?? '' }));
  }

  async neighReplace(entry: NeighEntry): Promise<void> {
    await this.runner.run(
      ['ip', 'neigh', 'replace', entry.dst, 'lladdr', checkMac(entry.lladdr)].concat([
        'dev',
        checkName(entry.dev),
        'nud',
        'permanent',
      ]),
    );
  }

  async neighDel(entry: Pick<NeighEntry, 'dev' | 'dst'>): Promise<void> {
    await this.runner.run(['ip', 'neigh', 'del', entry.dst, 'dev', checkName(entry.dev)], {
      allowFailure: true,
    });
  }

  async sourceRuleList(table: number): Promise<SourceRuleInfo[]> {
    const out: SourceRuleInfo[] = [];
    for (const family of [4, 6] as const) {
      const res = await this.runner.run(['ip', '-j', `-${family}`, 'rule', 'show']);
      type Rule = { priority: number; src?: string; srclen?: number; table?: string };
      for (const r of JSON.parse(res.stdout || '[]') as Rule[]) {
        if (r.table !== String(table) || !r.src || r.src === 'all' || 'not' in r) continue;
        const len = r.srclen ?? (family === 4 ? 32 : 128);
        out.push({ family, priority: r.priority, from: `${r.src}/${len}`, table });
      }
    }
    return out;
  }

  async sourceRuleAdd(rule: SourceRuleInfo): Promise<void> {
    await this.runner.run(['ip', `-${rule.family}`, 'rule', 'add', ...sourceRuleArgs(rule)]);
  }

  async sourceRuleDel(rule: SourceRuleInfo): Promise<void> {
    await this.runner.run(['ip', `-${rule.family}`, 'rule', 'del', ...sourceRuleArgs(rule)], {
      allowFailure: true,
    });
  }
}

/** `DST dev DEV [via GW] [onlink] proto P [scope S] [src A] [metric M] [table T]`. */
function routeArgs(route: RouteInfo & { protocol: number }): string[] {
  const argv = [route.dst, 'dev', checkName(route.dev)];
  if (route.gateway) argv.push('via', route.gateway);
  if (route.onlink) argv.push('onlink');
  argv.push('proto', String(route.protocol));
  if (route.scope !== undefined) argv.push('scope', String(route.scope));
  if (route.src) argv.push('src', route.src);
  if (route.metric !== undefined) argv.push('metric', String(route.metric));
  if (route.table !== undefined) argv.push('table', String(route.table));
  return argv;
}

function sourceRuleArgs(rule: SourceRuleInfo): string[] {
  return ['from', rule.from, 'table', String(rule.table), 'priority', String(rule.priority)];
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
