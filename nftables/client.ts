// The kernel touchpoint of the nftables layer: apply a transaction, read the agent's
// table back, delete it. `NftCli` runs nft (1.0.6 on Debian 12) through a Runner: a
// transaction is one `nft -f -` with the script on stdin (atomic: all or nothing), the
// table is read with `nft -j list table inet wiremesh`. Tests use `FakeNft` (fake.ts).
//
// What is read back is the table's shape (NftObservedTable): chains with their hook,
// priority, policy and rule count, sets and maps with type, flags and elements. Rules
// come back from the kernel as JSON expressions, not as the text a planner wrote, so
// only their number is compared; elements come back normalised (`10.0.0.1/32` as
// `10.0.0.1`), so the driver compares their number too.
import { CommandError, type Runner } from '../sys/index.ts';
import { NFT_FAMILY, NFT_TABLE, type NftBaseChain, type NftHook } from './model.ts';
import { renderScript, type NftOp } from './ops.ts';

export interface NftObservedChain {
  name: string;
  base?: NftBaseChain;
  rules: number;
}

export interface NftObservedSet {
  name: string;
  type: string;
  flags: string[];
  /** In nft syntax as the kernel reports them: `10.0.0.0/24`, `80-90`, `wm0 . 53`. */
  elements: string[];
}

export interface NftObservedMap extends NftObservedSet {
  /** `verdict` for verdict maps. */
  value: string;
  /** Verdict per element, in the order of `elements`: `accept`, `jump pol-a`. */
  verdicts: string[];
}

export interface NftObservedTable {
  chains: NftObservedChain[];
  sets: NftObservedSet[];
  maps: NftObservedMap[];
}

export interface NftClient {
  /** Applies the operations as one atomic transaction; nothing happens when empty. */
  apply(ops: readonly NftOp[]): Promise<void>;
  /** The table `inet wiremesh` as the kernel holds it; null when it does not exist. */
  listTable(): Promise<NftObservedTable | null>;
  /** Deletes the table; no error when it does not exist. */
  deleteTable(): Promise<void>;
}

const NO_TABLE = /No such file or directory/;

export class NftCli implements NftClient {
  private readonly runner: Runner;
  private readonly nft: string;
  private readonly onTransaction: ((pid: number) => void) | undefined;
  /**
   * `onTransaction` is told the process id of each nft that may change the table
   * (NftTableMonitor.ownProcess), before it can commit.
   */
  constructor(
    runner: Runner,
    options: { nft?: string; onTransaction?: (pid: number) => void } = {},
  ) {
    this.runner = runner;
    this.nft = options.nft ?? 'nft';
    this.onTransaction = options.onTransaction;
  }

  private own(): { onSpawn?: (pid: number) => void } {
    return this.onTransaction ? { onSpawn: this.onTransaction } : {};
  }

  async apply(ops: readonly NftOp[]): Promise<void> {
    const script = renderScript(ops);
    if (!script) return;
    await this.runner.run([this.nft, '-f', '-'], {
      input: script,
      timeoutMs: 120_000,
      ...this.own(),
    });
  }

  async listTable(): Promise<NftObservedTable | null> {
    const argv = [this.nft, '-j', 'list', 'table', NFT_FAMILY, NFT_TABLE];
    const res = await this.runner.run(argv, { allowFailure: true, timeoutMs: 60_000 });
    if (res.code !== 0) {
      if (NO_TABLE.test(res.stderr)) return null;
      throw new CommandError(argv, res.code, res.stdout, res.stderr, `exit code ${res.code}`);
    }
    return parseNftJson(res.stdout);
  }

  async deleteTable(): Promise<void> {
    const argv = [this.nft, 'delete', 'table', NFT_FAMILY, NFT_TABLE];
    const res = await this.runner.run(argv, {
      allowFailure: true,
      timeoutMs: 60_000,
      ...this.own(),
    });
    if (res.code !== 0 && !NO_TABLE.test(res.stderr)) {
      throw new CommandError(argv, res.code, res.stdout, res.stderr, `exit code ${res.code}`);
    }
  }
}

type Json = unknown;

/** The agent's table out of `nft -j list table inet wiremesh` output. */
export function parseNftJson(text: string): NftObservedTable {
  const doc = JSON.parse(text) as { nftables?: Record<string, Json>[] };
  if (!Array.isArray(doc.nftables)) throw new Error('nft -j: no "nftables" array in the output');
  const table: NftObservedTable = { chains: [], sets: [], maps: [] };
  const rules = new Map<string, number>();
  for (const item of doc.nftables) {
    if ('chain' in item) {
      const c = item.chain as Record<string, Json>;
      const chain: NftObservedChain = { name: String(c.name), rules: 0 };
      if (typeof c.hook === 'string') {
        chain.base = {
          type: c.type as NftBaseChain['type'],
          hook: c.hook as NftHook,
          priority: Number(c.prio),
          policy: c.policy === 'drop' ? 'drop' : 'accept',
        };
      }
      table.chains.push(chain);
    } else if ('rule' in item) {
      const chain = String((item.rule as Record<string, Json>).chain);
      rules.set(chain, (rules.get(chain) ?? 0) + 1);
    } else if ('set' in item || 'map' in item) {
      const s = (item.set ?? item.map) as Record<string, Json>;
      const type = Array.isArray(s.type) ? s.type.map(String).join(' . ') : String(s.type);
      const flags = Array.isArray(s.flags) ? s.flags.map(String) : [];
      const elem = Array.isArray(s.elem) ? (s.elem as Json[]) : [];
      if ('map' in item) {
        table.maps.push({
          name: String(s.name),
          type,
          flags,
          value: String(s.map),
          elements: elem.map((e) => jsonElement(Array.isArray(e) ? e[0] : e)),
          verdicts: elem.map((e) => jsonVerdict(Array.isArray(e) ? e[1] : e)),
        });
      } else {
        table.sets.push({ name: String(s.name), type, flags, elements: elem.map(jsonElement) });
      }
    }
  }
  for (const c of table.chains) c.rules = rules.get(c.name) ?? 0;
  return table;
}

/** An element key from nft's JSON back into nft syntax. */
function jsonElement(e: Json): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  if (e && typeof e === 'object') {
    const o = e as Record<string, Json>;
    if ('elem' in o) return jsonElement((o.elem as Record<string, Json>).val);
    if ('prefix' in o) {
      const p = o.prefix as Record<string, Json>;
      return `${jsonElement(p.addr)}/${String(p.len)}`;
    }
    if ('range' in o && Array.isArray(o.range)) return o.range.map(jsonElement).join('-');
    if ('concat' in o && Array.isArray(o.concat)) return o.concat.map(jsonElement).join(' . ');
  }
  return JSON.stringify(e);
}

function jsonVerdict(v: Json): string {
  if (v && typeof v === 'object') {
    const [kind, arg] = Object.entries(v as Record<string, Json>)[0] ?? [];
    if (kind === 'jump' || kind === 'goto') {
      return `${kind} ${String((arg as Record<string, Json>).target)}`;
    }
    if (kind) return kind;
  }
  return JSON.stringify(v);
}
