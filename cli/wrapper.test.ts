// bin/wiremesh, the shell wrapper that starts the CLI, as the image runs it: through
// a symlink in another directory (/usr/local/bin/wiremesh -> /opt/wiremesh/bin/wiremesh),
// so it must find the checkout from its own real path, not from the link's.
import test from 'ava';
import { mkdtemp, mkdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessRunner } from '../sys/exec.ts';

const WRAPPER = new URL('../bin/wiremesh', import.meta.url).pathname;
const runner = new ProcessRunner();

test('bin/wiremesh runs the CLI when started through a chain of symlinks', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wiremesh-wrapper-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // An absolute link elsewhere, then a relative link to it from another directory.
  await mkdir(join(dir, 'opt'));
  await mkdir(join(dir, 'usr', 'local', 'bin'), { recursive: true });
  await symlink(WRAPPER, join(dir, 'opt', 'wiremesh'));
  await symlink('../../../opt/wiremesh', join(dir, 'usr', 'local', 'bin', 'wiremesh'));
  for (const argv of [
    [join(dir, 'usr', 'local', 'bin', 'wiremesh'), 'help'],
    ['sh', join(dir, 'usr', 'local', 'bin', 'wiremesh'), 'help'],
  ]) {
    const r = await runner.run(argv, { allowFailure: true, cwd: dir });
    t.is(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    t.regex(r.stdout, /^usage: wiremesh <command>/, argv.join(' '));
  }
  // Found on PATH by its bare name, as the image's ENTRYPOINT ["wiremesh"] is.
  const r = await runner.run(['wiremesh', 'help'], {
    allowFailure: true,
    env: { ...process.env, PATH: `${join(dir, 'usr', 'local', 'bin')}:${process.env.PATH ?? ''}` },
  });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^usage: wiremesh <command>/);
});
