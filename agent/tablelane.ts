// The nftables table of the node: this node's compiled policy composed with the path
// plan's fragment (the encryption guard's fail-closed drops, the pools' masquerade),
// applied as one table. Two loops write it: the policy loop (a pod's new label, a
// NetworkPolicy, a resync) and the mesh pass, whose fragment must be in the table
// before any of its routes move. So TableLane serialises every compile and apply
// behind one lock, whichever loop asks, and the mesh pass re-applies only when its
// fragment changed. It also keeps what the drop accounting and the drop log read: the
// rule origins and the policy table last applied.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { NftCli, type NftTableMonitor, TableDriver } from '../nftables/index.ts';
import type { NftTable } from '../nftables/model.ts';
import type { RuleOrigin } from '../policy/index.ts';
import type { Runner } from '../sys/index.ts';
import { DropAccounting, readRuleCounters, type DropTotals } from './drops.ts';
import { DropLog } from './droplog.ts';
import type { KubeEventRecorder } from './events.ts';
import type { Logger } from './log.ts';
import { composeTable } from './nftable.ts';
import { splitPathNft } from './pathnft.ts';
import type { PolicyWatch } from './policy.ts';
import type { AgentStatus } from './status.ts';

export interface TableLaneOptions {
  /** Runs nft (the table's transactions and the drop counters' reads). */
  runner: Runner;
  /** Tells the lane when a resync must read the table back, and is told of its own nft runs. */
  monitor: NftTableMonitor;
  log: Logger;
  events: KubeEventRecorder;
  /** This node's name, the one the policy is compiled for. */
  node: string;
  /** The policy watch, once the agent's start made it; until then nothing is applied. */
  policy: () => PolicyWatch | undefined;
}

export class TableLane {
  private readonly opts: TableLaneOptions;
  private readonly log: Logger;
  private readonly table: TableDriver;
  private readonly dropLog: DropLog;
  private readonly drops = new DropAccounting();
  /** Serialises the table's compile and apply between the two loops. */
  private lock: Promise<void> = Promise.resolve();
  private policyStatus: AgentStatus['policy'] = { stats: null, problems: 0, lastApply: null };
  /** The rule origins of the policy table last applied, and the drop totals read with them. */
  private policyOrigins: Record<string, RuleOrigin> = {};
  private policyTable: NftTable = { sets: [], maps: [], chains: [] };
  private tableReads = 0;
  /** The path plan's nftables fragment, composed into the table by the policy phase. */
  private pathNft: { encrypt: NftTable; nat: NftTable } | null = null;
  private pathNftKey = '';

  constructor(opts: TableLaneOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.dropLog = new DropLog(opts.log, () => ({
      table: this.policyTable,
      origins: this.policyOrigins,
    }));
    const monitor = opts.monitor;
    this.table = new TableDriver(
      new NftCli(opts.runner, { onTransaction: (pid) => monitor.ownProcess(pid) }),
    );
  }

  /** Compile this node's policy, compose the table and apply the difference, one at a time. */
  reconcile(resync: boolean): Promise<void> {
    const run = this.lock.then(() => this.apply(resync));
    this.lock = run.catch(() => undefined);
    return run;
  }

  /** A mesh pass's path plan fragment: the table is applied again only when it changed. */
  async usePathNft(nft: NftTable): Promise<void> {
    const fragment = splitPathNft(nft);
    const fragmentKey = JSON.stringify(fragment);
    if (fragmentKey === this.pathNftKey) return;
    this.pathNft = fragment;
    await this.reconcile(false);
    this.pathNftKey = fragmentKey;
  }

  /** Packets dropped by policy and by the encryption guard, read from the table now. */
  async dropTotals(): Promise<DropTotals> {
    this.drops.observe(await readRuleCounters(this.opts.runner), this.policyOrigins);
    return this.drops.totals();
  }

  status(): AgentStatus['policy'] {
    return { ...this.policyStatus, watching: this.opts.monitor.attributing };
  }

  async stop(): Promise<void> {
    await this.dropLog.stop();
  }

  private async apply(resync: boolean): Promise<void> {
    const policy = this.opts.policy();
    if (!policy) return;
    // The compile is synchronous (tens of ms at 10,000 pods): a turn of the event
    // loop before and after it lets the status socket and watches get a word in.
    await nextTurn();
    const compileStart = performance.now();
    const result = policy.compile(this.opts.node);
    const compileMs = performance.now() - compileStart;
    await nextTurn();
    policy.report(result.problems, this.opts.events);
    const table = composeTable({
      ...(this.pathNft ?? {}),
      policy: result.table,
    });
    const applyStart = performance.now();
    // A resync reads the table back only when the monitor cannot vouch that nobody
    // else changed it (see NftTableMonitor.fullVerifyDue).
    if (resync && this.opts.monitor.fullVerifyDue()) {
      this.tableReads++;
      const check = await this.table.verify();
      if (!check.inSync)
        this.log.warn('nftables table changed outside the agent; restoring it', {
          differences: check.differences.slice(0, 5),
        });
    }
    const report = await this.table.apply(table);
    this.policyOrigins = result.origins;
    this.policyTable = result.table;
    // The reader runs only while some namespace asks for the log (its rules exist then).
    await this.dropLog.want(
      result.table.chains.some((c) => c.rules.some((r) => r.includes(' log group '))),
    );
    if (report.mode !== 'unchanged') this.log.info('nftables table applied', { ...report });
    this.policyStatus = {
      stats: result.stats,
      problems: result.problems.length,
      lastApply: report.mode === 'unchanged' ? this.policyStatus.lastApply : report,
      lastPass: { compileMs, applyMs: performance.now() - applyStart },
      tableReads: this.tableReads,
    };
  }
}
