// Watches the kernel's route and rule notifications (one long-lived `ip -N monitor
// route rule`, no polling) so that a route the node needs, removed by anyone else,
// is repaired at once rather than at the next resync: `ip route flush table main`
// takes every pod's host route, every tunnel route and the underlay's connected route
// with it, and the node's pods are cut off until they are back.
//
// What counts (`isOwnedLoss`): the deletion of a route that carries one of the
// agent's protocol numbers (the mesh's 251, the pods' 252, the paths' 253) in any
// table, of any route in the agent's policy-routing tables (51825, 51826), of a rule
// that looks one of those up, and of the connected route of the node's underlay
// device (the kernel's, which the tunnels' endpoints need). Nothing else: the
// operator's own routes (a default route, static routes) are theirs to restore.
//
// Telling the agent's own deletions from others': `ip monitor` does not say who
// deleted a route, so the agent announces each route and rule it is about to delete
// (`announceDeletions` wraps its IpClient); a deletion that matches an announcement
// of the last `expectTtlMs` is its own. Routes that go with their device (a pod's
// veth deleted at CNI DEL, the agent removing a tunnel device, a link set down: the
// kernel reports the IPv6 ones) count only while the device still exists and is up;
// the kernel itself puts a link's connected routes back when it comes up again.
//
// Coalescing: a flush reports hundreds of deletions within microseconds. The first
// starts a short window (`coalesceMs`); what the window gathered is reported once
// (`onDamage`, with each deletion as the kernel described it: enough to put the
// route back as it was, see agent/routerepair.ts), and the reconciler coalesces further
// reports while a pass runs, so neither a flush nor the agent's own work makes a
// storm of passes. A monitor that stopped (restarted with backoff) or that printed
// on stderr (events lost to a full socket buffer) cannot vouch for what happened
// meanwhile: `onUnseen` asks for a pass anyway.
import { readFileSync } from 'node:fs';
import { LineMonitor, type IpClient, type RouteInfo } from '../sys/index.ts';

/** One line of `ip -N monitor route rule`, as far as the watch needs it. */
export interface RouteEvent {
  kind: 'route' | 'rule';
  deleted: boolean;
  /** Route: destination with its prefix length (or `default`). Rule: empty. */
  dst: string;
  dev?: string;
  /** The route's table, or the table a rule looks up (main: 254, local: 255). */
  table: number;
  protocol?: number;
  /** Route scope (253: link). */
  scope?: number;
  /** Next hop (`via`), preferred source (`src`), metric, `onlink`. */
  gateway?: string;
  src?: string;
  metric?: number;
  onlink?: boolean;
  /** Route type (1: unicast, 2: local, ...). */
  type?: number;
  /** Rule priority. */
  priority?: number;
  /** The line as printed, without `Deleted `. */
  text: string;
}

const TABLES: Record<string, number> = { default: 253, main: 254, local: 255 };
const PROTOCOLS: Record<string, number> = { redirect: 1, kernel: 2, boot: 3, static: 4 };
const SCOPES: Record<string, number> = { global: 0, universe: 0, site: 200, link: 253, host: 254 };
const TYPES: Record<string, number> = {
  unicast: 1,
  local: 2,
  broadcast: 3,
  anycast: 4,
  multicast: 5,
  blackhole: 6,
  unreachable: 7,
  prohibit: 8,
  throw: 9,
  nat: 10,
};

/** A number as `ip -N` prints it, or a name iproute2 may print without -N. */
function numberOf(token: string | undefined, names: Record<string, number>): number | undefined {
  if (token === undefined) return undefined;
  if (/^\d+$/.test(token)) return Number(token);
  if (/^0x[0-9a-f]+$/i.test(token)) return parseInt(token, 16);
  return names[token];
}

/** `ip` prints a host route without its prefix length. */
export function normaliseDst(dst: string): string {
  if (dst === 'default' || dst.includes('/')) return dst;
  return dst.includes(':') ? `${dst}/128` : `${dst}/32`;
}

/** Parses one line of `ip -N monitor route rule`; null for anything else (links, nexthops). */
export function parseMonitorLine(line: string): RouteEvent | null {
  // Continuation lines (multipath next hops, link details) start with white space.
  if (line === '' || /^\s/.test(line)) return null;
  let text = line.trim();
  const deleted = text.startsWith('Deleted ');
  if (deleted) text = text.slice('Deleted '.length);
  const rule = /^(\d+):\s+(.*)$/.exec(text);
  if (rule) {
    const lookup = /\b(?:lookup|table) (\S+)/.exec(rule[2] ?? '')?.[1];
    const table = numberOf(lookup, TABLES);
    if (table === undefined) return null;
    return { kind: 'rule', deleted, dst: '', table, priority: Number(rule[1]), text };
  }
  const tokens = text.split(/\s+/);
  let type = 1;
  const first = tokens[0] ?? '';
  if (/^\d+$/.test(first) || TYPES[first] !== undefined) {
    type = numberOf(tokens.shift(), TYPES) ?? 1;
  }
  const dst = tokens.shift();
  if (dst === undefined || !(dst === 'default' || /[.:]/.test(dst))) return null;
  const event: RouteEvent = {
    kind: 'route',
    deleted,
    dst: normaliseDst(dst),
    table: 254,
    type,
    text,
  };
  for (let i = 0; i < tokens.length; i++) {
    const value = tokens[i + 1];
    switch (tokens[i]) {
      case 'dev':
        if (value !== undefined) event.dev = value;
        break;
      case 'table':
        event.table = numberOf(value, TABLES) ?? event.table;
        break;
      case 'proto': {
        const protocol = numberOf(value, PROTOCOLS);
        if (protocol !== undefined) event.protocol = protocol;
        break;
      }
      case 'scope': {
        const scope = numberOf(value, SCOPES);
        if (scope !== undefined) event.scope = scope;
        break;
      }
      case 'via':
        // `via inet6 ADDR`: a next hop of the other family names it.
        if (value === 'inet' || value === 'inet6') i++;
        if (tokens[i + 1] !== undefined) event.gateway = tokens[i + 1];
        break;
      case 'src':
        if (value !== undefined) event.src = value;
        break;
      case 'metric':
        if (value !== undefined && /^\d+$/.test(value)) event.metric = Number(value);
        break;
      case 'onlink':
        event.onlink = true;
        continue;
      default:
        continue;
    }
    i++;
  }
  return event;
}

/** What the node needs kept: the agent's route protocols and tables, the underlay device. */
export interface WatchedRoutes {
  protocols: readonly number[];
  tables: readonly number[];
  /** Devices whose connected routes (the kernel's, main table) the node needs. */
  connectedDevs: readonly string[];
}

const KERNEL_PROTOCOL = 2;
const MAIN_TABLE = 254;
const LOCAL_TABLE = 255;

/** True for the deletion of a route or rule the node needs (see the module comment). */
export function isOwnedLoss(e: RouteEvent, w: WatchedRoutes): boolean {
  if (!e.deleted) return false;
  if (e.kind === 'rule') return w.tables.includes(e.table);
  if (e.table === LOCAL_TABLE || e.type !== 1) return false;
  if (e.protocol !== undefined && w.protocols.includes(e.protocol)) return true;
  if (w.tables.includes(e.table)) return true;
  return (
    e.protocol === KERNEL_PROTOCOL &&
    e.table === MAIN_TABLE &&
    e.dev !== undefined &&
    w.connectedDevs.includes(e.dev) &&
    !e.dst.startsWith('fe80:')
  );
}

const IFF_UP = 0x1;

/** Whether a link of this network namespace exists and is administratively up. */
function sysfsLinkUp(dev: string): boolean {
  if (dev.includes('/') || dev.startsWith('.')) return false;
  try {
    return (parseInt(readFileSync(`/sys/class/net/${dev}/flags`, 'utf8'), 16) & IFF_UP) !== 0;
  } catch {
    return false;
  }
}

/** The key an announced route deletion and its notification share. */
export function routeKey(table: number | undefined, dst: string): string {
  return `route ${table ?? MAIN_TABLE} ${normaliseDst(dst)}`;
}

export function ruleKey(priority: number, table: number): string {
  return `rule ${priority} ${table}`;
}

export interface RouteWatchOptions {
  /** The ip binary (default `ip` on the system PATH) and an argv prefix (e.g. `ip netns exec NS`). */
  ip?: string;
  prefix?: readonly string[];
  /** What counts; read at each deletion, so it may follow the underlay device. */
  watched: () => WatchedRoutes;
  /** Routes or rules the node needs were removed by someone else (`text`: as printed). */
  onDamage: (removed: readonly RouteEvent[]) => void;
  /** Changes may have gone unseen (monitor restarted, events lost): `reason` says why. */
  onUnseen: (reason: string) => void;
  onError?: (error: Error) => void;
  /** Whether a device exists and is up now (default: /sys/class/net of this process's namespace). */
  linkUp?: (dev: string) => boolean;
  /** How long deletions are gathered before they are reported (default 20 ms). */
  coalesceMs?: number;
  /** How long an announced deletion waits for its notification (default 10 s). */
  expectTtlMs?: number;
  now?: () => number;
}

export interface RouteWatchStats {
  /** Routes and rules the node needs, removed by others, as the watch saw them. */
  removed: number;
  /** Reports of such removals (each asks for one repair pass). */
  reports: number;
  /** Deletions recognised as the agent's own. */
  own: number;
}

export class RouteWatch {
  private readonly opts: RouteWatchOptions;
  private readonly process: LineMonitor;
  private windowTimer: NodeJS.Timeout | undefined;
  /** Announced deletions by key: the times each announcement expires. */
  private readonly expected = new Map<string, number[]>();
  /** Deletions gathered in the current window. */
  private gathered: RouteEvent[] = [];
  readonly stats: RouteWatchStats = { removed: 0, reports: 0, own: 0 };

  constructor(options: RouteWatchOptions) {
    this.opts = options;
    this.process = new LineMonitor({
      name: 'ip monitor',
      argv: [...(options.prefix ?? []), options.ip ?? 'ip', '-N', 'monitor', 'route', 'rule'],
      onLine: (line) => this.line(line),
      // e.g. `netlink receive error No buffer space available`: events were lost.
      onStderr: (text) => options.onUnseen(`route monitor: ${text}`),
      onExit: (why) => {
        options.onError?.(new Error(why));
        // Routes removed while ip was away were not seen: ask for a pass.
        options.onUnseen('route monitor restarted; changes meanwhile unseen');
      },
    });
  }

  /** Resolves once ip runs (the kernel reports changes from then on). */
  start(): Promise<void> {
    return this.process.start();
  }

  /** The running ip's process id (for tests that kill it), if any. */
  get pid(): number | undefined {
    return this.process.pid;
  }

  /** True while the monitor runs. */
  get watching(): boolean {
    return this.process.running;
  }

  stop(): void {
    this.process.stop();
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    this.gathered = [];
  }

  /** The agent is about to delete this route: its notification is not damage. */
  expectRoute(route: Pick<RouteInfo, 'dst' | 'table'>): void {
    this.expect(routeKey(route.table, route.dst));
  }

  /** The agent is about to delete a rule at `priority` that looks up `table`. */
  expectRule(priority: number, table: number): void {
    this.expect(ruleKey(priority, table));
  }

  private expect(key: string): void {
    const now = (this.opts.now ?? Date.now)();
    const list = this.expected.get(key) ?? [];
    list.push(now + (this.opts.expectTtlMs ?? 10_000));
    this.expected.set(key, list);
  }

  /** Consumes an unexpired announcement for `key`; true when there was one. */
  private consume(key: string): boolean {
    const now = (this.opts.now ?? Date.now)();
    const list = (this.expected.get(key) ?? []).filter((t) => t > now);
    const found = list.length > 0;
    if (found) list.shift();
    if (list.length) this.expected.set(key, list);
    else this.expected.delete(key);
    return found;
  }

  /** Feeds one line of `ip monitor` output (exposed for unit tests). */
  line(line: string): void {
    const event = parseMonitorLine(line);
    if (!event || !isOwnedLoss(event, this.opts.watched())) return;
    const key =
      event.kind === 'rule'
        ? ruleKey(event.priority ?? 0, event.table)
        : routeKey(event.table, event.dst);
    if (this.consume(key)) {
      this.stats.own++;
      return;
    }
    this.gathered.push(event);
    if (this.windowTimer) return;
    this.windowTimer = setTimeout(() => this.report(), this.opts.coalesceMs ?? 20);
  }

  /** Reports what the window gathered (exposed for unit tests: call it instead of waiting). */
  report(): void {
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    const up = this.opts.linkUp ?? sysfsLinkUp;
    // A route that went with its device is no damage: the device's removal was meant
    // (a pod deleted) or is another fault, found by its own watchdog or the resync.
    const lost = this.gathered.filter((e) => e.dev === undefined || up(e.dev));
    this.gathered = [];
    if (lost.length === 0) return;
    this.stats.removed += lost.length;
    this.stats.reports++;
    this.opts.onDamage(lost);
  }
}

/**
 * `ip` whose route and rule deletions are announced to `watch` just before they are
 * made, so that the watch tells them from anyone else's. Every other method is `ip`'s.
 */
export function announceDeletions(ip: IpClient, watch: RouteWatch): IpClient {
  const announced: Partial<IpClient> = {
    routeDel: (route) => {
      watch.expectRoute(route);
      return ip.routeDel(route);
    },
    ruleDel: (rule) => {
      watch.expectRule(rule.priority, rule.table);
      return ip.ruleDel(rule);
    },
    sourceRuleDel: (rule) => {
      watch.expectRule(rule.priority, rule.table);
      return ip.sourceRuleDel(rule);
    },
  };
  return new Proxy(ip, {
    get(target, prop, receiver) {
      const own = announced[prop as keyof IpClient];
      if (own) return own;
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function'
        ? (value as (...a: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}
