// Splits a List answer's JSON into its items as the bytes arrive. A list of 150,000
// pods is hundreds of megabytes of text: read whole, the text, its parse and the
// kept objects all live at once. Here only the item being read is held as text; the
// rest of the answer (kind, apiVersion, metadata) is kept and parsed at the end.
//
// An item's metadata.managedFields (server-side apply's field owners, often a third
// of a pod's text) is never parsed: its value comes out empty. Nothing that lists
// through this client reads it, and parsing it was a good part of a large list's cost.
//
// It works on bytes: JSON's structural characters are ASCII, and no byte of a
// multi-byte UTF-8 character is below 0x80, so none is taken for a quote, brace or
// bracket; an item's bytes are decoded whole, never split inside a character.

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

/** Depths: 1 the answer's members, 3 an item's, 4 an item's metadata's. */
const ITEMS_DEPTH = 2;
const ITEM_DEPTH = 3;
const META_DEPTH = 4;

/** Longest key remembered; a longer one is cut here and matches none of those below. */
const KEY_MAX = 16;

export class ListSplitter {
  private readonly onItem: (item: unknown) => void;
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The last string seen at each depth up to the metadata's (a key, when a value opens). */
  private readonly keys = ['', '', '', '', ''];
  private inItems = false;
  private inItem = false;
  private inMeta = false;
  /** Inside an item's managedFields: its bytes are not kept. */
  private skipping = false;
  /** Pieces of the item under way (earlier chunks, or before a skipped value). */
  private itemParts: Buffer[] = [];
  /** The answer without its items' texts: `{"kind":..,"metadata":{..},"items":[]}`. */
  private rest: Buffer[] = [];
  private bytes = 0;

  constructor(onItem: (item: unknown) => void) {
    this.onItem = onItem;
  }

  write(chunk: Buffer): void {
    this.bytes += chunk.length;
    // Locals, written back at the end: this loop sees every byte of the answer.
    let depth = this.depth;
    let inString = this.inString;
    let escaped = this.escaped;
    const keys = this.keys;
    // Where this chunk's bytes start counting toward the item (or the rest).
    let from = 0;
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const c = chunk[i] as number;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) inString = false;
        else if (depth <= META_DEPTH && (keys[depth] as string).length <= KEY_MAX)
          keys[depth] += String.fromCharCode(c);
        continue;
      }
      if (c === QUOTE) {
        inString = true;
        if (depth <= META_DEPTH) keys[depth] = '';
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (this.inItems && depth === ITEMS_DEPTH && c === OPEN_BRACE) {
          this.inItem = true;
          from = i;
        } else if (depth === 1 && c === OPEN_BRACKET && keys[1] === 'items') {
          this.inItems = true;
          // The rest keeps the brackets, not what is between them.
          this.rest.push(Buffer.from(chunk.subarray(from, i + 1)));
        } else if (this.inMeta && depth === META_DEPTH && keys[META_DEPTH] === 'managedFields') {
          // Kept up to the value's opening bracket; resumed at its closing one.
          this.itemParts.push(Buffer.from(chunk.subarray(from, i + 1)));
          this.skipping = true;
        } else if (this.inItem && depth === ITEM_DEPTH && keys[ITEM_DEPTH] === 'metadata') {
          this.inMeta = c === OPEN_BRACE;
        }
        depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        depth--;
        if (this.inItem && depth === ITEMS_DEPTH) {
          this.inItem = false;
          this.emit(chunk.subarray(from, i + 1));
          from = i + 1;
        } else if (this.inItems && depth === 1) {
          this.inItems = false;
          from = i;
        } else if (this.skipping && depth === META_DEPTH) {
          this.skipping = false;
          from = i;
        } else if (this.inMeta && depth === ITEM_DEPTH) {
          this.inMeta = false;
        }
      }
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    if (this.inItem) {
      if (!this.skipping) this.itemParts.push(Buffer.from(chunk.subarray(from)));
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
