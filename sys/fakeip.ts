// FakeIp: the in-memory IpClient for driver unit tests. It behaves as the kernel does
// where a driver could notice (missing devices, duplicate FDB entries, a link kind the
// kernel lacks).
import { CommandError } from './exec.ts';
import {
  checkMac,
  type AddrDetails,
  type AliasedLink,
  type FdbEntry,
  type IpClient,
  type IpipLinkSpec,
  type LinkDetails,
  type LinkInfo,
  type NeighEntry,
  type RouteInfo,
  type RuleInfo,
  type SourceRuleInfo,
  type VxlanLinkSpec,
} from './ip.ts';

type FakeLink = Omit<LinkDetails, 'vxlan' | 'ipip'> &
  Pick<LinkDetails, 'vxlan' | 'ipip'> & {
    addrs: Set<string>;
    alias?: string;
    /** Addresses added with `noprefixroute`. */
    noPrefixRoute?: Set<string>;
  };

/** In-memory links, addresses, routes, rules, neighbour and FDB entries, for unit tests of drivers. */
export class FakeIp implements IpClient {
  links = new Map<string, FakeLink>();
  routes: (RouteInfo & { protocol: number })[] = [];
  rules: RuleInfo[] = [];
  sourceRules: SourceRuleInfo[] = [];
  fdb: FdbEntry[] = [];
  neighbours: NeighEntry[] = [];
  calls: string[] = [];
  /** Link kinds this "kernel" lacks: creating one fails as `ip link add` does without the module. */
  unsupportedKinds = new Set<string>();
  private nextIndex = 10;

  addLink(name: string, mtu = 1420, kind: string | null = null): void {
    this.links.set(name, {
      name,
      index: this.nextIndex++,
      mtu,
      up: false,
      addrs: new Set(),
      kind,
      mac: null,
    });
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
    this.fdb = this.fdb.filter((f) => f.dev !== name);
    this.neighbours = this.neighbours.filter((n) => n.dev !== name);
  }
  async linkAddWireGuard(name: string): Promise<void> {
    this.calls.push(`add ${name}`);
    this.unsupported('wireguard', ['ip', 'link', 'add', 'dev', name, 'type', 'wireguard']);
    this.addLink(name, 1420, 'wireguard');
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
  async routeListByProtocol(protocol: number, table?: number): Promise<RouteInfo[]> {
    return this.routes
      .filter((r) => r.protocol === protocol && r.table === table)
      .map((r) => ({ ...r }));
  }
  async linkList(kind: string): Promise<AliasedLink[]> {
    return [...this.links.values()]
      .filter((l) => l.kind === kind)
      .map((l) => ({ name: l.name, index: l.index, mtu: l.mtu, up: l.up, alias: l.alias ?? '' }));
  }
  async addrDetails(dev: string): Promise<AddrDetails[]> {
    const l = this.links.get(dev);
    if (!l) return [];
    return [...l.addrs].map((cidr) => ({ cidr, prefixRoute: !l.noPrefixRoute?.has(cidr) }));
  }
  async routeReplace(route: RouteInfo & { protocol: number }): Promise<void> {
    const table = route.table === undefined ? '' : ` table ${route.table}`;
    const via = route.gateway ? ` via ${route.gateway}${route.onlink ? ' onlink' : ''}` : '';
    this.calls.push(`route replace ${route.dst}${via} ${route.dev}${table}`);
    this.must(route.dev);
    this.routes = this.routes.filter((r) => !(r.dst === route.dst && r.table === route.table));
    this.routes.push({ ...route });
  }
  async routeReplaceBatch(
    routes: readonly (RouteInfo & { protocol: number })[],
  ): Promise<string[]> {
    // As `ip -force -batch` reports: the error, then the line that failed.
    const failed: string[] = [];
    for (const [i, r] of routes.entries()) {
      try {
        await this.routeReplace(r);
      } catch (e) {
        failed.push((e as Error).message, `Command failed -:${i + 1}`);
      }
    }
    return failed;
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

  async linkDetails(name: string): Promise<LinkDetails | null> {
    const l = this.links.get(name);
    if (!l) return null;
    const details: Partial<FakeLink> = structuredClone(l);
    delete details.addrs;
    return details as LinkDetails;
  }
  private unsupported(kind: string, argv: string[]): void {
    if (this.unsupportedKinds.has(kind)) {
      const stderr = 'Error: Unknown device type.\n';
      throw new CommandError(argv, 2, '', stderr, 'exit code 2');
    }
  }
  private exists(name: string): void {
    if (this.links.has(name)) {
      const stderr = 'RTNETLINK answers: File exists\n';
      throw new CommandError(['ip', 'link', 'add', name], 2, '', stderr, 'exit code 2');
    }
  }
  async linkAddVxlan(spec: VxlanLinkSpec): Promise<void> {
    this.calls.push(`add vxlan ${spec.name} ${spec.vni} ${spec.port} ${spec.local}`);
    this.unsupported('vxlan', ['ip', 'link', 'add', spec.name, 'type', 'vxlan']);
    this.exists(spec.name);
    checkMac(spec.mac);
    this.addLink(spec.name, spec.mtu, 'vxlan');
    const link = this.must(spec.name);
    link.mac = spec.mac;
    link.vxlan = {
      vni: spec.vni,
      port: spec.port,
      local: spec.local,
      learning: false,
      underlayDev: spec.underlayDev ?? null,
    };
  }
  async linkAddIpip(spec: IpipLinkSpec): Promise<void> {
    this.calls.push(`add ipip ${spec.name} ${spec.local}`);
    this.unsupported('ipip', ['ip', 'link', 'add', spec.name, 'type', 'ipip']);
    this.exists(spec.name);
    this.addLink(spec.name, spec.mtu, 'ipip');
    this.must(spec.name).ipip = { local: spec.local, remote: null };
  }
  async linkSetMac(name: string, mac: string): Promise<void> {
    this.calls.push(`mac ${name} ${mac}`);
    this.must(name).mac = checkMac(mac);
  }
  async fdbList(dev: string): Promise<FdbEntry[]> {
    return this.fdb.filter((f) => f.dev === dev).map((f) => ({ ...f }));
  }
  async fdbAppend(entry: FdbEntry): Promise<void> {
    this.calls.push(`fdb append ${entry.dev} ${entry.mac} ${entry.dst}`);
    this.must(entry.dev);
    checkMac(entry.mac);
    const same = (f: FdbEntry) => f.dev === entry.dev && f.mac === entry.mac && f.dst === entry.dst;
    if (this.fdb.some(same)) {
      const argv = ['bridge', 'fdb', 'append', entry.mac, 'dev', entry.dev];
      throw new CommandError(argv, 2, '', 'RTNETLINK answers: File exists\n', 'exit code 2');
    }
    this.fdb.push({ ...entry });
  }
  async fdbDel(entry: FdbEntry): Promise<void> {
    this.calls.push(`fdb del ${entry.dev} ${entry.mac} ${entry.dst}`);
    this.fdb = this.fdb.filter(
      (f) => !(f.dev === entry.dev && f.mac === entry.mac && f.dst === entry.dst),
    );
  }
  async neighList(dev: string): Promise<NeighEntry[]> {
    return this.neighbours.filter((n) => n.dev === dev).map((n) => ({ ...n }));
  }
  async neighReplace(entry: NeighEntry): Promise<void> {
    this.calls.push(`neigh replace ${entry.dev} ${entry.dst} ${entry.lladdr}`);
    this.must(entry.dev);
    checkMac(entry.lladdr);
    this.neighbours = this.neighbours.filter((n) => !(n.dev === entry.dev && n.dst === entry.dst));
    this.neighbours.push({ ...entry });
  }
  async neighDel(entry: Pick<NeighEntry, 'dev' | 'dst'>): Promise<void> {
    this.calls.push(`neigh del ${entry.dev} ${entry.dst}`);
    this.neighbours = this.neighbours.filter((n) => !(n.dev === entry.dev && n.dst === entry.dst));
  }
  async sourceRuleList(table: number): Promise<SourceRuleInfo[]> {
    return this.sourceRules.filter((r) => r.table === table).map((r) => ({ ...r }));
  }
  async sourceRuleAdd(rule: SourceRuleInfo): Promise<void> {
    this.calls.push(`rule add from ${rule.from} table ${rule.table} priority ${rule.priority}`);
    this.sourceRules.push({ ...rule });
  }
  async sourceRuleDel(rule: SourceRuleInfo): Promise<void> {
    this.calls.push(`rule del from ${rule.from} table ${rule.table} priority ${rule.priority}`);
    const i = this.sourceRules.findIndex(
      (r) =>
        r.family === rule.family &&
        r.from === rule.from &&
        r.table === rule.table &&
        r.priority === rule.priority,
    );
    if (i >= 0) this.sourceRules.splice(i, 1);
  }
}
