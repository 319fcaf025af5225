// Helpers for kernel tests that load tables into throwaway network namespaces
// (nftables/ and policy/ both do): the nft binary check that fails naming what is
// missing, and a namespace removed when the test ends.
import type { ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { defaultRunner as runner, requireRoot } from '../sys/index.ts';

/** Fails, naming the missing piece, without root or without nftables' nft. */
export async function requireNft(what: string): Promise<void> {
  requireRoot(what);
  const res = await runner.run(['nft', '--version'], { allowFailure: true }).catch((e: Error) => ({
    code: 127,
    stdout: '',
    stderr: e.message,
  }));
  if (res.code !== 0 || !/^nftables v/.test(res.stdout)) {
    throw new Error(
      `nftables' nft is required (apt-get install nftables): ${res.stderr || res.stdout}`,
    );
  }
}

/** A fresh network namespace named `<prefix>-<n>`, deleted when the test ends. */
export async function throwawayNetns(t: ExecutionContext, prefix: string): Promise<string> {
  const name = `${prefix}-${++serial}`;
  if (existsSync(`/run/netns/${name}`)) throw new Error(`netns ${name} already exists`);
  t.teardown(() =>
    runner.run(['ip', 'netns', 'del', name], { allowFailure: true }).then(() => undefined),
  );
  await runner.run(['ip', 'netns', 'add', name]);
  return name;
}

let serial = 0;
