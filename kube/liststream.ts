// Splits a List answer's JSON into its items as the bytes arrive. A list of 150,000
// pods is hundreds of megabytes of text: read whole, the text, its parse and the
// kept objects all live at once. Here only the item being read is held as text; the
// rest of the answer (kind, apiVersion, metadata) is kept and parsed at the end.
//
// Most of an object's text is never read by whoever lists it (a pod's containers'
// environment, volumes and status conditions, a node's images, an IPAM block's
// allocations, every object's managedFields). The caller says which values it reads
// (ListFields); an object or array value outside them is cut out of the bytes and
// comes out empty, so it is never decoded, parsed or collected. Without fields, only
// metadata.managedFields (server-side apply's field owners) is cut.
//
// It works on bytes: JSON's structural characters are ASCII, and no byte of a
// multi-byte UTF-8 character is below 0x80, so none is taken for a quote, brace or
// bracket; an item's bytes are decoded whole, never split inside a character. A
// string's end is found with indexOf (most of the bytes are in strings).

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** A List answer without its items: they went to the caller one by one. */
export interface ListMeta {
  metadata?: { resourceVersion?: string };
}

/**
 * Which of an item's values the caller reads. Under a key given `true`, everything;
 * under a key given fields, those fields. An object or array value under any other
 * key comes out empty (`{}` or `[]`). Strings, numbers, booleans and null come out
 * wherever they stand: they cost little, and checks of a malformed object read them.
 * An array's elements are read with the array's fields.
 */
export interface ListFields {
  readonly [key: string]: ListFields | true;
}

/** A ListFields entry, or what unlisted keys get: `others` true keeps them whole. */
interface FieldNode {
  readonly keys: ReadonlyMap<string, FieldNode | boolean>;
  readonly others: boolean;
}

function compile(fields: ListFields): FieldNode {
  return {
    keys: new Map(
      Object.entries(fields).map(([k, v]) => [k, v === true ? true : compile(v)] as const),
    ),
    others: false,
  };
}

/** Without fields: everything but metadata.managedFields. */
const EVERYTHING_BUT_MANAGED_FIELDS: FieldNode = {
  keys: new Map([['metadata', { keys: new Map([['managedFields', false]]), others: true }]]),
  others: true,
};

/** Depths: 1 the answer's members, 2 the items array's elements, 3 an item's members. */
const ITEMS_DEPTH = 2;
const ITEM_DEPTH = 3;

/**
 * A key as written in the answer (bytes as latin1 characters) as its text; undefined
 * when it is longer than any field's (matching none, it is not decoded).
 */
function decodeKey(raw: string, max: number): string | undefined {
  if (raw.length > max) return undefined;
  // Plain ASCII without escapes, as nearly every key is, is already its text.
  if (!/[\\\x80-\xff]/.test(raw)) return raw;
  return JSON.parse(`"${Buffer.from(raw, 'latin1').toString('utf8')}"`) as string;
}

/** The longest name among the fields (and `items`), in UTF-16 units. */
function longestName(node: FieldNode): number {
  let longest = 'items'.length;
  for (const [k, v] of node.keys)
    longest = Math.max(longest, k.length, typeof v === 'boolean' ? 0 : longestName(v));
  return longest;
}

export class ListSplitter {
  private readonly onItem: (item: unknown) => void;
  private readonly root: FieldNode;
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The key being read (a string at a depth whose keys are looked up), or null. */
  private key: string | null = null;
  /** The last key read at each depth where keys are looked up (undefined: too long). */
  private readonly keys: (string | undefined)[] = [];
  /**
   * Keys longer than this many bytes in the answer match no field: a character takes
   * at most 6 (`\\uXXXX`), so they are not read further.
   */
  private readonly keyMax: number;
  /** The fields of the container open at each depth inside an item (true: all). */
  private readonly nodes: (FieldNode | true)[] = [];
  /** Whether the container open at each depth inside an item is an array. */
  private readonly arrays: boolean[] = [];
  private inItems = false;
  private inItem = false;
  /** The depth of the value being cut out (its brackets kept), or -1. */
  private skipDepth = -1;
  /** Pieces of the item under way (earlier chunks, or before a cut value). */
  private itemParts: Buffer[] = [];
  /** The answer without its items' texts: `{"kind":..,"metadata":{..},"items":[]}`. */
  private rest: Buffer[] = [];
  private bytes = 0;

  constructor(onItem: (item: unknown) => void, fields?: ListFields) {
    this.onItem = onItem;
    this.root = fields ? compile(fields) : EVERYTHING_BUT_MANAGED_FIELDS;
    this.keyMax = 6 * longestName(this.root);
  }

  write(chunk: Buffer): void {
    this.bytes += chunk.length;
    // Locals, written back at the end: this loop sees every byte of the answer.
    let depth = this.depth;
    let inString = this.inString;
    let escaped = this.escaped;
    let key = this.key;
    let skipDepth = this.skipDepth;
    const { keys, nodes, arrays, keyMax } = this;
    // Where this chunk's bytes start counting toward the item (or the rest).
    let from = 0;
    const n = chunk.length;
    // The next backslash at or after i (n: none in this chunk), looked up lazily.
    let backslash = -1;
    let i = 0;
    while (i < n) {
      if (inString) {
        if (escaped) {
          if (key !== null) key += chunk.toString('latin1', i, i + 1);
          escaped = false;
          i++;
          continue;
        }
        let end = chunk.indexOf(QUOTE, i);
        if (end === -1) end = n;
        if (backslash < i) {
          backslash = chunk.indexOf(BACKSLASH, i);
          if (backslash === -1) backslash = n;
        }
        const escapes = backslash < end;
        const stop = escapes ? backslash + 1 : end;
        // Kept as raw bytes (latin1 is one char per byte), decoded when it ends.
        if (key !== null && key.length <= keyMax) key += chunk.toString('latin1', i, stop);
        if (escapes) {
          i = stop;
          escaped = true;
          continue;
        }
        if (end === n) break;
        inString = false;
        if (key !== null) {
          keys[depth] = decodeKey(key, keyMax);
          key = null;
        }
        i = end + 1;
        continue;
      }
      const c = chunk[i] as number;
      if (c === QUOTE) {
        inString = true;
        // Keys are read at the answer's top (to find `items`) and wherever an item's
        // fields are looked up; everywhere else a string is only skipped.
        if (
          skipDepth < 0 &&
          (depth === 1 ||
            (depth >= ITEM_DEPTH && this.inItem && !arrays[depth] && nodes[depth] !== true))
        )
          key = '';
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (skipDepth >= 0) {
          // Inside a value being cut out: only its depth matters.
        } else if (this.inItem) {
          const parent = nodes[depth] as FieldNode | true;
          let child: FieldNode | boolean;
          if (parent === true) child = true;
          else if (arrays[depth]) child = parent;
          else {
            const k = keys[depth];
            child = (k === undefined ? undefined : parent.keys.get(k)) ?? parent.others;
          }
          if (child === false) {
            // Kept up to the value's opening bracket; resumed at its closing one.
            this.itemParts.push(Buffer.from(chunk.subarray(from, i + 1)));
            skipDepth = depth;
          } else {
            nodes[depth + 1] = child;
            arrays[depth + 1] = c === OPEN_BRACKET;
          }
        } else if (this.inItems && depth === ITEMS_DEPTH && c === OPEN_BRACE) {
          this.inItem = true;
          nodes[ITEM_DEPTH] = this.root;
          arrays[ITEM_DEPTH] = false;
          from = i;
        } else if (depth === 1 && c === OPEN_BRACKET && keys[1] === 'items') {
          this.inItems = true;
          // The rest keeps the brackets, not what is between them.
          this.rest.push(Buffer.from(chunk.subarray(from, i + 1)));
        }
        depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        depth--;
        if (skipDepth >= 0) {
          if (depth === skipDepth) {
            skipDepth = -1;
            from = i;
          }
        } else if (this.inItem && depth === ITEMS_DEPTH) {
          this.inItem = false;
          this.emit(chunk.subarray(from, i + 1));
          from = i + 1;
        } else if (this.inItems && depth === 1) {
          this.inItems = false;
          from = i;
        }
      }
      i++;
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    this.key = key;
    this.skipDepth = skipDepth;
    if (this.inItem) {
      if (skipDepth < 0) this.itemParts.push(Buffer.from(chunk.subarray(from)));
    } else if (!this.inItems) this.rest.push(Buffer.from(chunk.subarray(from)));
  }

  /** The answer without its items, parsed; throws when the text was cut or is not a List. */
  end(): ListMeta {
    if (this.depth !== 0 || this.inString || this.inItem)
      throw new Error(`list answer cut short after ${this.bytes} bytes`);
    const text = Buffer.concat(this.rest).toString('utf8');
    return JSON.parse(text) as ListMeta;
  }

  private emit(last: Buffer): void {
    let text: string;
    if (this.itemParts.length) {
      this.itemParts.push(last);
      text = Buffer.concat(this.itemParts).toString('utf8');
      this.itemParts = [];
    } else {
      text = last.toString('utf8');
    }
    this.onItem(JSON.parse(text));
  }
}
