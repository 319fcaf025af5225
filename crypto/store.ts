// The node's WireGuard private key on disk: `${dir}/private.key` (production dir
// /var/lib/wiremesh), base64 plus a newline as `wg genkey` writes it, mode 0600 in
// a 0700 directory. The key is the node's identity, so it is reused across
// restarts, created only when absent, and never silently replaced: unreadable or
// invalid content is an error naming the file and the reason, never the content.
// Writes go to `private.key.tmp` (unlinked first, so a stale one from a crash can
// neither break nor loosen anything), are fsynced, renamed over the key, and the
// directory is fsynced, so a crash leaves either the old key or the new one.
// One agent per node owns the directory; concurrent writers are not coordinated.
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, parsePrivateKey, publicKeyOf, type WireGuardKeyPair } from './keys.ts';

export interface LoadedKey {
  keyPair: WireGuardKeyPair;
  /** No key file existed, so a new identity was generated and written. */
  created: boolean;
  /** The file was readable by group or others and has been chmod'ed to 0600. */
  tightenedMode: boolean;
}

/** A key file is 45 bytes; anything much larger is not one, so it is not read whole. */
const MAX_KEY_FILE_BYTES = 1024;

export class KeyStore {
  private readonly dir: string;
  private readonly file: string;

  constructor(dir: string) {
    this.dir = dir;
    this.file = join(dir, 'private.key');
  }

  get path(): string {
    return this.file;
  }

  async loadOrCreate(): Promise<LoadedKey> {
    const loaded = await this.load();
    if (loaded) return { ...loaded, created: false };
    return { keyPair: await this.rotate(), created: true, tightenedMode: false };
  }

  /** Generates a new key pair and persists it in place of the old one. */
  async rotate(): Promise<WireGuardKeyPair> {
    const keyPair = generateKeyPair();
    await this.write(keyPair.privateKey);
    return keyPair;
  }

  /** The stored pair, or undefined when there is no key file. */
  private async load(): Promise<Omit<LoadedKey, 'created'> | undefined> {
    let handle;
    try {
      handle = await open(this.file, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot open WireGuard private key ${this.file}: ${message(e)}`, {
        cause: e,
      });
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile())
        throw new Error(`WireGuard private key ${this.file} is not a regular file`);
      if (stat.size > MAX_KEY_FILE_BYTES) {
        throw new Error(`WireGuard private key ${this.file} is ${stat.size} bytes, not a key file`);
      }
      const tightenedMode = (stat.mode & 0o077) !== 0;
      if (tightenedMode) await handle.chmod(0o600);
      const content = (await handle.readFile('utf8')).replace(/\n$/, '');
      const parsed = parsePrivateKey(content);
      if (!parsed.ok) {
        throw new Error(
          `WireGuard private key ${this.file} ${parsed.reason}; refusing to replace ` +
            `this node's identity: fix or remove the file`,
        );
      }
      return {
        keyPair: { privateKey: parsed.key, publicKey: publicKeyOf(parsed.key) },
        tightenedMode,
      };
    } finally {
      await handle.close();
    }
  }

  private async write(privateKey: string): Promise<void> {
    const tmp = `${this.file}.tmp`;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await rm(tmp, { force: true });
      const handle = await open(tmp, 'w', 0o600);
      try {
        await handle.chmod(0o600); // in case the umask took bits we need
        await handle.writeFile(`${privateKey}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, this.file);
      const dir = await open(this.dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => {});
      throw new Error(`cannot write WireGuard private key ${this.file}: ${message(e)}`, {
        cause: e,
      });
    }
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
