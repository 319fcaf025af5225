// The node's IPAM journal: the durable record of the blocks a node holds and the
// addresses it gave out, so that an address is handed to the container runtime only
// once its allocation is on disk, and a restart (or a crash at any point) rebuilds
// exactly what was promised.
//
// Format: `${dir}/journal.jsonl`, mode 0600, one JSON record per line, each tagged
// with the number of the write batch it went out in ("b"); batch numbers go up by
// one per write. Every file starts with a `begin` record (format version), written
// and fsynced when the file is created or rewritten. Records are appended
// with O_APPEND; concurrent callers are grouped into one write and one fdatasync
// (group commit), and `flushed()` resolves only after the fdatasync that covers
// every record appended so far. Batches are written strictly one after another, so
// only the last batch can be torn by a crash, and no record of it was acknowledged.
//
// Replay: lines are parsed in order. The first line that does not parse and
// everything after it are a torn tail, dropped and truncated away, provided every
// parseable line after it belongs to one batch, the last good batch or the next one
// (the shape a crash in the middle of the last write leaves; pages of one write can
// reach the disk in any order). Anything else (a bad line followed by several
// batches or a later one, a bad `begin` line with records after it, batch numbers
// going backwards) is corruption: the journal refuses to open and says how to
// recover, rather than guess and risk handing out an address twice.
//
// Compaction rewrites the journal as a snapshot of the current state:
// `journal.jsonl.tmp` (any stale one removed first) is written and fsynced, renamed
// over the journal, and the directory is fsynced; a crash leaves the old journal or
// the new one, never a mix. A failed write or fsync poisons the journal: page cache
// state after a failed fsync cannot be trusted, so every later append fails until
// the journal is reopened (the agent restarts IPAM).
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate as yieldLoop } from 'node:timers/promises';
import { isRecord } from './selector.ts';

export const JOURNAL_VERSION = 1;

export type JournalRecord =
  /** The node holds the block (its IPAMBlock object exists with spec.node = this node). */
  | { op: 'claim'; block: string; pool: string; uid: string }
  /** The block is being given back: never allocate from it again; delete its object. */
  | { op: 'unclaim'; block: string }
  | {
      op: 'alloc';
      handle: string;
      address: string;
      block: string;
      namespace: string;
      pod: string;
      containerID: string;
      ifName: string;
      /** Absent in records written before pod UIDs were recorded. */
      podUID?: string;
      at: number;
    }
  | { op: 'release'; handle: string };

/** Named points where a test can simulate a crash (the hook throws). */
export type CrashPoint =
  | 'journal.before-write'
  | 'journal.before-sync'
  | 'journal.after-sync'
  | 'compact.tmp-written'
  | 'compact.renamed'
  | 'compact.dir-synced';

export type FaultHook = (point: string) => void | Promise<void>;

export const JOURNAL_FILE = 'journal.jsonl';

export class JournalCorruptError extends Error {
  constructor(file: string, line: number, why: string) {
    super(
      `IPAM journal ${file} is corrupt at line ${line} (${why}); refusing to guess which ` +
        `addresses are in use. Restore it, or move it aside to rebuild this node's state ` +
        `from its IPAMBlock objects (addresses allocated after the last sync may then be ` +
        `given out twice)`,
    );
    this.name = 'JournalCorruptError';
  }
}

export interface OpenedJournal {
  journal: Journal;
  records: JournalRecord[];
  /** Lines of a torn tail that were dropped. */
  dropped: number;
}

export class Journal {
  readonly path: string;
  private readonly dir: string;
  private readonly fault: FaultHook;
  private fd: FileHandle;
  private batch: number;
  private pending: JournalRecord[] = [];
  private appended = 0;
  private durable = 0;
  private waiters: { upto: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing: Promise<void> | null = null;
  private failure: Error | null = null;
  private linesOnDisk: number;

  private constructor(dir: string, fd: FileHandle, batch: number, lines: number, fault: FaultHook) {
    this.dir = dir;
    this.path = join(dir, JOURNAL_FILE);
    this.fd = fd;
    this.batch = batch;
    this.linesOnDisk = lines;
    this.fault = fault;
  }

  static async open(dir: string, fault: FaultHook = () => {}): Promise<OpenedJournal> {
    const path = join(dir, JOURNAL_FILE);
    const made = await mkdir(dir, { recursive: true, mode: 0o700 });
    if (made !== undefined) {
      // New directories are durable only once their parents' entries are: fsync each
      // parent from the first one created down, or a crash could lose the whole dir.
      for (let d = dir; ; d = dirname(d)) {
        await syncDir(dirname(d));
        if (d === made || dirname(d) === d) break;
      }
    }
    // A tmp file is a compaction that never got renamed: the journal is authoritative.
    await rm(`${path}.tmp`, { force: true });
    let fd: FileHandle;
    let created = false;
    try {
      fd = await open(path, 'r+');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fd = await open(path, 'a+', 0o600);
      created = true;
    }
    try {
      const text = created ? '' : await fd.readFile('utf8');
      const parsed = parseJournal(text, path);
      if (parsed.dropped > 0) {
        await fd.truncate(parsed.goodBytes);
        await fd.sync();
      }
      await fd.close();
      fd = await open(path, 'a', 0o600);
      await fd.chmod(0o600);
      let batch = parsed.lastBatch;
      let lines = parsed.lines;
      if (lines === 0) {
        await writeAll(fd, beginLine(++batch));
        await fd.sync();
        await syncDir(dir);
        lines = 1;
      }
      const journal = new Journal(dir, fd, batch, lines, fault);
      return { journal, records: parsed.records, dropped: parsed.dropped };
    } catch (e) {
      await fd.close().catch(() => {});
      throw e;
    }
  }

  /** Lines in the file: what compaction would shrink. */
  get lines(): number {
    return this.linesOnDisk + this.pending.length;
  }

  /** The error that poisoned the journal, if any. */
  get failed(): Error | null {
    return this.failure;
  }

  /** Queue a record; it is durable once `flushed()` resolves. */
  append(record: JournalRecord): void {
    if (this.failure) throw this.failure;
    this.pending.push(record);
    this.appended++;
    this.flushing ??= this.flushLoop();
  }

  /** Resolves when every record appended so far is on disk (fdatasync returned). */
  flushed(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.durable >= this.appended) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ upto: this.appended, resolve, reject });
    });
  }

  private async flushLoop(): Promise<void> {
    await yieldLoop(); // let the callers of this tick join the batch
    try {
      while (this.pending.length) {
        const records = this.pending.splice(0);
        const b = ++this.batch;
        const text = records.map((r) => JSON.stringify({ b, ...r })).join('\n') + '\n';
        await this.fault('journal.before-write');
        await writeAll(this.fd, text);
        await this.fault('journal.before-sync');
        await this.fd.datasync();
        await this.fault('journal.after-sync');
        this.durable += records.length;
        this.linesOnDisk += records.length;
        const ready = this.waiters.filter((w) => w.upto <= this.durable);
        this.waiters = this.waiters.filter((w) => w.upto > this.durable);
        for (const w of ready) w.resolve();
      }
    } catch (e) {
      this.poison(e);
    } finally {
      this.flushing = null;
    }
  }

  private poison(e: unknown): void {
    this.failure = new Error(
      `IPAM journal ${this.path} could not be written (${e instanceof Error ? e.message : String(e)}); ` +
        `no address is handed out until IPAM restarts and replays it`,
      { cause: e },
    );
    this.pending = [];
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
  }

  /**
   * Replace the journal with `records` (a snapshot of the current state). The caller
   * must hold off appends until this returns; everything appended before must be flushed.
   */
  async compact(records: readonly JournalRecord[]): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.flushing) await this.flushing;
    const failed = this.failed; // the flush may have failed meanwhile
    if (failed) throw failed;
    if (this.pending.length || this.durable < this.appended) {
      throw new Error('journal compaction while records are being written');
    }
    const tmp = `${this.path}.tmp`;
    const b = ++this.batch;
    try {
      await rm(tmp, { force: true });
      const out = await open(tmp, 'w', 0o600);
      try {
        await writeAll(
          out,
          beginLine(b) + records.map((r) => JSON.stringify({ b, ...r }) + '\n').join(''),
        );
        await out.sync();
      } finally {
        await out.close();
      }
      await this.fault('compact.tmp-written');
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new Error(`compacting IPAM journal ${this.path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    // From the rename on, the file the fd points at is gone: any failure poisons.
    try {
      await rename(tmp, this.path);
      await this.fault('compact.renamed');
      await syncDir(this.dir);
      await this.fault('compact.dir-synced');
      const old = this.fd;
      this.fd = await open(this.path, 'a', 0o600);
      await old.close().catch(() => {});
      this.linesOnDisk = records.length + 1;
    } catch (e) {
      this.poison(e);
      throw this.failure ?? e;
    }
  }

  async close(): Promise<void> {
    if (!this.failure) await this.flushed().catch(() => {});
    await this.fd.close().catch(() => {});
    this.failure ??= new Error(`IPAM journal ${this.path} is closed`);
  }
}

async function writeAll(fd: FileHandle, text: string): Promise<void> {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fd.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

function beginLine(b: number): string {
  return JSON.stringify({ b, op: 'begin', version: JOURNAL_VERSION }) + '\n';
}

async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

interface ParsedJournal {
  records: JournalRecord[];
  lastBatch: number;
  /** Good lines kept, the begin line included. */
  lines: number;
  dropped: number;
  /** Byte length of the good prefix. */
  goodBytes: number;
}

type Line = { b: number; record: JournalRecord | 'begin' } | null;

/** Exported for tests: the replay rules of the module comment. */
export function parseJournal(text: string, file = JOURNAL_FILE): ParsedJournal {
  const lines = text.split('\n');
  // A file that ends with '\n' splits into a last empty string: not a line.
  if (lines.at(-1) === '') lines.pop();
  const parsed: Line[] = lines.map(parseLine);
  const firstBad = parsed.indexOf(null);
  const good = firstBad < 0 ? parsed : parsed.slice(0, firstBad);
  let lastBatch = 0;
  for (const [i, p] of good.entries()) {
    if (!p) continue;
    if (p.b < lastBatch) throw new JournalCorruptError(file, i + 1, 'batch numbers go backwards');
    if ((i === 0) !== (p.record === 'begin')) {
      throw new JournalCorruptError(file, i + 1, 'the begin record must open the file, once');
    }
    lastBatch = p.b;
  }
  if (firstBad >= 0) {
    const batches = new Set(parsed.slice(firstBad + 1).flatMap((p) => (p ? [p.b] : [])));
    const [tail] = batches;
    if (tail !== undefined) {
      if (firstBad === 0) {
        throw new JournalCorruptError(file, 1, 'the begin record is unreadable');
      }
      if (batches.size > 1 || (tail !== lastBatch && tail !== lastBatch + 1)) {
        throw new JournalCorruptError(
          file,
          firstBad + 1,
          'an unreadable record before later writes',
        );
      }
    }
  }
  const records = good.flatMap((p) => (p && p.record !== 'begin' ? [p.record] : []));
  const goodBytes =
    firstBad < 0
      ? Buffer.byteLength(text, 'utf8')
      : lines.slice(0, firstBad).reduce((n, l) => n + Buffer.byteLength(l, 'utf8') + 1, 0);
  return {
    records,
    lastBatch,
    lines: good.length,
    dropped: firstBad < 0 ? 0 : lines.length - firstBad,
    goodBytes,
  };
}

function parseLine(line: string): Line {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return null;
  }
  if (!isRecord(v) || !Number.isSafeInteger(v.b) || (v.b as number) < 1) return null;
  const s = (k: string) => typeof v[k] === 'string';
  const b = v.b as number;
  switch (v.op) {
    case 'begin':
      if (v.version !== JOURNAL_VERSION) {
        throw new Error(
          `IPAM journal format ${String(v.version)} is not ${JOURNAL_VERSION}: written by another wiremesh release`,
        );
      }
      return { b, record: 'begin' };
    case 'claim':
      if (s('block') && s('pool') && s('uid')) {
        return {
          b,
          record: { op: 'claim', block: str(v.block), pool: str(v.pool), uid: str(v.uid) },
        };
      }
      return null;
    case 'unclaim':
      return s('block') ? { b, record: { op: 'unclaim', block: str(v.block) } } : null;
    case 'alloc':
      if (
        ['handle', 'address', 'block', 'namespace', 'pod', 'containerID', 'ifName'].every(s) &&
        typeof v.at === 'number'
      ) {
        return {
          b,
          record: {
            op: 'alloc',
            handle: str(v.handle),
            address: str(v.address),
            block: str(v.block),
            namespace: str(v.namespace),
            pod: str(v.pod),
            containerID: str(v.containerID),
            ifName: str(v.ifName),
            ...(typeof v.podUID === 'string' && v.podUID ? { podUID: v.podUID } : {}),
            at: v.at,
          },
        };
      }
      return null;
    case 'release':
      return s('handle') ? { b, record: { op: 'release', handle: str(v.handle) } } : null;
    default:
      return null;
  }
}

function str(v: unknown): string {
  return v as string;
}
