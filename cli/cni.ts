// `wiremesh install-cni`.
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CHAIN, installCni, type ChainedPlugin } from '../cni/install.ts';
import { toolCacheDir } from '../sys/index.ts';

export async function runInstallCni(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      relay: { type: 'string' },
      'bin-dir': { type: 'string', default: '/opt/cni/bin' },
      'conf-dir': { type: 'string', default: '/etc/cni/net.d' },
      chain: { type: 'string', default: DEFAULT_CHAIN.join(',') },
      'plugins-dir': { type: 'string', default: '/usr/lib/wiremesh/cni' },
      mtu: { type: 'string' },
    },
  });
  const candidates = [
    values.relay,
    process.env.WIREMESH_CNI_RELAY,
    '/usr/lib/wiremesh/wiremesh-cni',
    join(toolCacheDir(), 'bin', 'wiremesh-cni'),
  ];
  const relay = candidates.find((c): c is string => Boolean(c) && existsSync(c ?? ''));
  if (!relay)
    throw new Error(
      `the CNI relay binary was not found (looked at ${candidates.filter(Boolean).join(', ')}); run 'make deps' or pass --relay`,
    );
  // `--chain none` (or an empty value): wiremesh alone, with 1.1.0 offered besides.
  const chain = values.chain === 'none' ? [] : values.chain.split(',').filter(Boolean);
  for (const c of chain)
    if (c !== 'portmap' && c !== 'bandwidth')
      throw new Error(`--chain takes portmap and/or bandwidth, or none, not '${c}'`);
  let mtu: number | undefined;
  if (values.mtu !== undefined) {
    mtu = Number(values.mtu);
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535)
      throw new Error(`--mtu ${values.mtu} is not a usable MTU`);
  }
  const res = await installCni({
    relay,
    binDir: values['bin-dir'],
    confDir: values['conf-dir'],
    chain: chain as ChainedPlugin[],
    pluginsDir: values['plugins-dir'],
    ...(mtu ? { mtu } : {}),
  });
  const copied = res.plugins.length
    ? ` (and ${res.plugins.join(', ')}, which the node lacked)`
    : '';
  process.stdout.write(`installed ${res.binary} and ${res.conflist}${copied}\n`);
  return 0;
}
