// Splits a List answer's JSON into its items as the bytes arrive. A list of 150,000
// pods is hundreds of megabytes of text: read whole, the text, its parse and the
// kept objects all live at once. Here only the item being read is held as text; the
// rest of the answer (kind, apiVersion, metadata) is kept and parsed at the end.
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

/** Longest top-level key remembered: only "items" matters. */
const KEY_MAX = 16;

export class ListSplitter {
  private readonly onItem: (item: unknown) => void;
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The top-level object's last string (a key, when an array opens after it). */
  private key = '';
  private keyTooLong = false;
  private inItems = false;
  /** Pieces of the item under way from earlier chunks. */
  private itemParts: Buffer[] = [];
  private inItem = false;
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
    // Where this chunk's bytes start counting toward the item (or the rest).
    let from = 0;
    const n = chunk.length;
    for (let i = 0; i < n; i++) {
      const c = chunk[i] as number;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) inString = false;
        else if (depth === 1) this.noteKeyByte(c);
        continue;
      }
      if (c === QUOTE) {
        inString = true;
        if (depth === 1) {
          this.key = '';
          this.keyTooLong = false;
        }
      } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (this.inItems && depth === 2 && c === OPEN_BRACE) {
          this.inItem = true;
          from = i;
        } else if (depth === 1 && c === OPEN_BRACKET && this.key === 'items') {
          this.inItems = true;
          // The rest keeps the brackets, not what is between them.
          this.rest.push(Buffer.from(chunk.subarray(from, i + 1)));
        }
        depth++;
      } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        depth--;
        if (this.inItem && depth === 2) {
          this.inItem = false;
          this.emit(chunk.subarray(from, i + 1));
          from = i + 1;
        } else if (this.inItems && depth === 1) {
          this.inItems = false;
          from = i;
        }
      }
    }
    this.depth = depth;
    this.inString = inString;
    this.escaped = escaped;
    if (this.inItem) this.itemParts.push(Buffer.from(chunk.subarray(from)));
    else if (!this.inItems) this.rest.push(Buffer.from(chunk.subarray(from)));
  }

  /** The answer without its items, parsed; throws when the text was cut or is not a List. */
  end(): { metadata?: { resourceVersion?: string; continue?: string } } {
    if (this.depth !== 0 || this.inString || this.inItem)
      throw new Error(`list answer cut short after ${this.bytes} bytes`);
    const text = Buffer.concat(this.rest).toString('utf8');
    return JSON.parse(text) as { metadata?: { resourceVersion?: string } };
  }

  private noteKeyByte(c: number): void {
    if (this.keyTooLong) return;
    if (this.key.length >= KEY_MAX) {
      this.keyTooLong = true;
      this.key = '';
      return;
    }
    this.key += String.fromCharCode(c);
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
