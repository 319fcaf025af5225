// The log of dropped flows, for namespaces that ask for it (annotation
// `wiremesh.io/log-drops: "true"`). The policy compiler puts a rate-limited
// `log group DROP_LOG_GROUP` rule before the drop of those namespaces' NetworkPolicy
// chains only (policy/compile.ts), so a namespace that did not ask costs nothing and
// a flood reaches the agent at DROP_LOG_RATE per chain at most. The agent reads the
// group with `tcpdump -i nflog:GROUP` (a supervised LineMonitor, running only while
// some namespace asks) and says which policy dropped each flow by walking the packet
// through the table it applied, with the evaluator `wiremesh explain` uses: the log
// line names the policy, its namespace and the direction, and the flow.
import { LineMonitor } from '../sys/index.ts';
import {
  DROP_LOG_GROUP,
  POLICY_FORWARD_CHAIN,
  POLICY_INPUT_CHAIN,
  traceVerdict,
  type Packet,
  type RuleOrigin,
} from '../policy/index.ts';
import type { NftTable } from '../nftables/index.ts';
import type { Logger } from './log.ts';

export interface LoggedPacket {
  src: string;
  dst: string;
  proto: 'tcp' | 'udp' | 'sctp' | 'icmp' | 'ipv6-icmp';
  sport?: number;
  dport?: number;
}

/**
 * One line of `tcpdump -nn -l -q -t` on an nflog interface, e.g.
 * `IP 100.64.1.2.43210 > 100.64.2.3.8080: tcp 0` or `IP6 a::1 > b::2: ICMP6, echo request`.
 */
export function parseDropLine(line: string): LoggedPacket | null {
  const m = /^(IP6?) (\S+) > (\S+?): (\S+)/.exec(line.trim());
  if (!m) return null;
  const [, ip, from, to, kind] = m as unknown as [string, string, string, string, string];
  const proto = /^tcp/i.test(kind)
    ? 'tcp'
    : /^UDP/.test(kind)
      ? 'udp'
      : /^sctp/i.test(kind)
        ? 'sctp'
        : /^ICMP6/.test(kind)
          ? 'ipv6-icmp'
          : /^ICMP/.test(kind)
            ? 'icmp'
            : null;
  if (!proto) return null;
  const split = (endpoint: string): { addr: string; port?: number } => {
    if (proto === 'icmp' || proto === 'ipv6-icmp') return { addr: endpoint };
    const i = endpoint.lastIndexOf('.');
    const port = Number(endpoint.slice(i + 1));
    return Number.isInteger(port) ? { addr: endpoint.slice(0, i), port } : { addr: endpoint };
  };
  const s = split(from);
  const d = split(to);
  if ((ip === 'IP6') !== s.addr.includes(':')) return null;
  return {
    src: s.addr,
    dst: d.addr,
    proto,
    ...(s.port === undefined ? {} : { sport: s.port }),
    ...(d.port === undefined ? {} : { dport: d.port }),
  };
}

/** The policy that dropped `pkt` in `table`, found by walking it as the kernel does. */
export function dropOrigin(
  table: NftTable,
  origins: Readonly<Record<string, RuleOrigin>>,
  pkt: LoggedPacket,
  local: boolean,
): RuleOrigin | null {
  const entry = local ? POLICY_INPUT_CHAIN : POLICY_FORWARD_CHAIN;
  if (!table.chains.some((c) => c.name === entry)) return null;
  const p: Packet = { src: pkt.src, dst: pkt.dst, proto: pkt.proto, ct: 'new', local };
  if (pkt.dport !== undefined) p.dport = pkt.dport;
  const trace = traceVerdict(table, entry, p);
  const tag = trace.tags.at(-1);
  const origin = tag ? origins[tag] : undefined;
  return trace.verdict === 'drop' && origin ? origin : null;
}

/** Runs the reader while some namespace asks for the log; logs each dropped flow. */
export class DropLog {
  private monitor: LineMonitor | null = null;
  private readonly log: Logger;
  private readonly current: () => { table: NftTable; origins: Record<string, RuleOrigin> };

  constructor(
    log: Logger,
    current: () => { table: NftTable; origins: Record<string, RuleOrigin> },
  ) {
    this.log = log;
    this.current = current;
  }

  /** Start or stop the reader: it runs only while `wanted`. */
  async want(wanted: boolean): Promise<void> {
    if (wanted && !this.monitor) {
      this.monitor = new LineMonitor({
        name: 'drop log (tcpdump)',
        argv: ['tcpdump', '-i', `nflog:${DROP_LOG_GROUP}`, '-nn', '-l', '-q', '-t'],
        onLine: (line) => this.onLine(line),
        // tcpdump's banner ("listening on nflog:...") and its summary go to stderr.
        onStderr: (text) => {
          if (!/listening on|packets (captured|received|dropped)/.test(text))
            this.log.warn('drop log: tcpdump says', { text: text.trim().slice(0, 300) });
        },
        onExit: (why) => this.log.warn('drop log reader stopped; restarting', { why }),
      });
      await this.monitor.start();
      this.log.info('drop log on: reading the dropped flows of namespaces that ask for it', {
        group: DROP_LOG_GROUP,
      });
    } else if (!wanted && this.monitor) {
      this.monitor.stop();
      this.monitor = null;
      this.log.info('drop log off: no namespace asks for it');
    }
  }

  stop(): Promise<void> {
    return this.want(false);
  }

  private onLine(line: string): void {
    const pkt = parseDropLine(line);
    if (!pkt) return;
    const { table, origins } = this.current();
    const origin = dropOrigin(table, origins, pkt, false);
    this.log.info('dropped flow', {
      src: pkt.src,
      dst: pkt.dst,
      proto: pkt.proto,
      ...(pkt.dport === undefined ? {} : { dport: pkt.dport }),
      direction: origin?.direction ?? 'unknown',
      namespace: origin?.policies[0]?.namespace ?? '',
      policies: origin?.policies.map((p) => p.name) ?? [],
    });
  }
}
