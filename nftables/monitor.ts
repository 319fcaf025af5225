// Watches the kernel's change notifications for the agent's table (one long-lived
// `nft monitor`, no polling), for two reasons:
// - a change made by anyone else (`nft delete table inet wiremesh` by hand, another
//   tool flushing the ruleset, a rule deleted) is reported at once through `onChange`,
//   rather than found at the next resync: until the table is restored the node may
//   have no policy and no fail-closed drop;
// - a resync need not read the whole table back while nobody else touched it
//   (`fullVerifyDue`). Listing and parsing a table of 1,000 policies (thousands of
//   rules, tens of thousands of elements) costs a good part of a core every resync.
//
// Telling the agent's transactions from others': nft prints, after each transaction,
// `# new generation N by process PID (comm)`. The agent reports the process id of each
// nft it runs (`ownProcess`); a transaction that touched the table from any other
// process is foreign. Process ids only match when the agent sees the host's PID
// namespace (the DaemonSet runs with hostPID): until one of the agent's own
// transactions has been recognised, every change counts as foreign and every resync
// reads the table back, as it would without the monitor. So does a monitor that
// stopped (changes meanwhile were not seen), anything nft prints on stderr (such as
// lost events), and a resync more than `fullVerifyEveryMs` after the last full one.
import { LineMonitor } from '../sys/index.ts';
import { NFT_FAMILY, NFT_TABLE } from './model.ts';

export interface TableMonitorOptions {
  /** The nft binary (default `nft` on the system PATH) and an argv prefix (e.g. `ip netns exec NS`). */
  nft?: string;
  prefix?: readonly string[];
  /** The table may have been changed by someone else: `reason` says what and who. */
  onChange: (reason: string) => void;
  onError?: (error: Error) => void;
  /** The longest time between two resyncs that read the whole table (default 10 min). */
  fullVerifyEveryMs?: number;
  /** Clock for tests. */
  now?: () => number;
}

/** True for the monitor line that reports the deletion of the agent's table. */
export function isTableDeletion(line: string): boolean {
  return line.trim() === `delete table ${NFT_FAMILY} ${NFT_TABLE}`;
}

const OUR_TABLE = new RegExp(`(^|\\s)${NFT_FAMILY} ${NFT_TABLE}(\\s|$)`);

/** True for an event line about the agent's table or anything in it. */
export function touchesTable(line: string): boolean {
  return !line.startsWith('#') && OUR_TABLE.test(line);
}

/** The end of one transaction in `nft monitor` output; null for any other line. */
export function parseGeneration(
  line: string,
): { generation: number; pid?: number; comm?: string } | null {
  const m = /^# new generation (\d+)(?: by process (\d+) \((.*)\))?\s*$/.exec(line);
  if (!m) return null;
  const out: { generation: number; pid?: number; comm?: string } = { generation: Number(m[1]) };
  if (m[2] !== undefined) out.pid = Number(m[2]);
  if (m[3] !== undefined) out.comm = m[3];
  return out;
}

const OWN_PROCESSES_KEPT = 64;

/**
 * What of `nft monitor`'s stderr may mean a change unseen, or '' for none. nft cannot
 * print the xtables expressions of iptables-nft's rules (kube-proxy, the portmap
 * plugin) and says so on stderr for each ("XT match comment not found"); such rules
 * are never in the agent's table, which holds no xtables expression, so those lines
 * say nothing about it. Without this, every pod ADD or DEL with portmap chained
 * would make the agent read its whole table back.
 */
export function stderrWorthAVerify(text: string): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^XT (match|target) \S+ not found$/.test(l))
    .join('\n');
}

export class NftTableMonitor {
  private readonly opts: TableMonitorOptions;
  private readonly process: LineMonitor;
  private readonly own: number[] = [];
  /** Set once one of the agent's own transactions was recognised by its process id. */
  private attributes = false;
  /** Grows each time the table may have changed behind the agent's back. */
  private epoch = 0;
  private verifiedEpoch = -1;
  private verifiedAt = -Infinity;
  /** The transaction being read: did it touch the table, did it delete it. */
  private touched = false;
  private deleted = false;

  constructor(options: TableMonitorOptions) {
    this.opts = options;
    this.process = new LineMonitor({
      name: 'nft monitor',
      argv: [...(options.prefix ?? []), options.nft ?? 'nft', 'monitor'],
      onLine: (line) => this.line(line),
      // e.g. events lost to a full socket buffer: what happened is unknown.
      onStderr: (text) => {
        const unknown = stderrWorthAVerify(text);
        if (unknown) this.foreign(`nftables monitor: ${unknown}`);
      },
      onExit: (why) => {
        this.touched = false;
        this.deleted = false;
        options.onError?.(new Error(why));
        // Changes while nft was away were not seen: report a possible change.
        this.foreign('nftables monitor restarted; changes meanwhile unseen');
      },
    });
  }

  /** Resolves once nft runs (the kernel reports changes from then on). */
  start(): Promise<void> {
    this.touched = false;
    this.deleted = false;
    return this.process.start();
  }

  /** The running nft's process id (for tests that kill it), if any. */
  get pid(): number | undefined {
    return this.process.pid;
  }

  /** True while the agent's own transactions are told apart from others'. */
  get attributing(): boolean {
    return this.attributes && this.process.running;
  }

  /** Records the process id of an nft the agent started (call before it can commit). */
  ownProcess(pid: number): void {
    this.own.push(pid);
    if (this.own.length > OWN_PROCESSES_KEPT) this.own.shift();
  }

  /**
   * Whether a resync must read the whole table back; when it says yes, it counts the
   * read as done from now on, so call it just before listing the table.
   */
  fullVerifyDue(): boolean {
    const now = (this.opts.now ?? Date.now)();
    const due =
      !this.attributing ||
      this.epoch !== this.verifiedEpoch ||
      now - this.verifiedAt >= (this.opts.fullVerifyEveryMs ?? 600_000);
    if (due) {
      this.verifiedEpoch = this.epoch;
      this.verifiedAt = now;
    }
    return due;
  }

  stop(): void {
    this.process.stop();
  }

  /** Feeds one line of `nft monitor` output (exposed for unit tests). */
  line(line: string): void {
    const gen = parseGeneration(line);
    if (gen === null) {
      if (!touchesTable(line)) return;
      this.touched = true;
      if (isTableDeletion(line)) {
        this.deleted = true;
        // Without attribution the deletion is reported at once, as any change is.
        if (!this.attributes) this.foreign('nftables table deleted');
      }
      return;
    }
    const { touched, deleted } = this;
    this.touched = false;
    this.deleted = false;
    if (!touched) return;
    if (gen.pid !== undefined && this.own.includes(gen.pid)) {
      this.attributes = true;
      return;
    }
    if (!this.attributes) {
      // Maybe the agent's own (a deletion was reported at its line): the next resync
      // reads the table back in any case.
      this.epoch++;
      return;
    }
    const who = gen.pid === undefined ? 'an unknown process' : `process ${gen.pid} (${gen.comm})`;
    this.foreign(`nftables table ${deleted ? 'deleted' : 'changed'} by ${who}`);
  }

  private foreign(reason: string): void {
    this.epoch++;
    this.opts.onChange(reason);
  }
}
