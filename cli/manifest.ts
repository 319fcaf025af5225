// `wiremesh manifest`: regenerate deploy/wiremesh.yaml from its parts, or with
// --check, fail when it is out of date (what CI and the unit test look at).
import { parseArgs } from 'node:util';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  COMBINED_MANIFEST,
  DEPLOY_DIR,
  readManifestParts,
  renderCombinedManifest,
  writeCombinedManifest,
} from '../install/index.ts';

export async function runManifest(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      check: { type: 'boolean', default: false },
      stdout: { type: 'boolean', default: false },
    },
  });
  if (values.stdout) {
    process.stdout.write(renderCombinedManifest(await readManifestParts()));
    return 0;
  }
  if (values.check) {
    const path = join(DEPLOY_DIR, COMBINED_MANIFEST);
    const want = renderCombinedManifest(await readManifestParts());
    if ((await readFile(path, 'utf8').catch(() => '')) === want) return 0;
    process.stderr.write(`${path} is out of date with its parts; run 'wiremesh manifest'\n`);
    return 1;
  }
  const res = await writeCombinedManifest();
  process.stdout.write(`${res.path} ${res.changed ? 'written' : 'already up to date'}\n`);
  return 0;
}
