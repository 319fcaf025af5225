import test from 'ava';
import {
  ProcessRunner,
  CommandError,
  PrefixRunner,
  WorkerRunner,
  requireProgram,
  type Runner,
} from './exec.ts';

const runner = new ProcessRunner();

test('stdout, stdin and exit codes', async (t) => {
  t.is((await runner.run(['sh', '-c', 'cat; echo done'], { input: 'in ' })).stdout, 'in done\n');
  t.is((await runner.run(['sh', '-c', 'exit 3'], { allowFailure: true })).code, 3);
});

test('a failing command throws an error with its argv, code and stderr', async (t) => {
  const e = await t.throwsAsync(runner.run(['sh', '-c', 'echo bad >&2; exit 4']), {
    instanceOf: CommandError,
  });
  t.is(e?.code, 4);
  t.regex(e?.message ?? '', /sh -c .*exit code 4: bad/);
});

test('a missing program and a timeout are errors that say so', async (t) => {
  await t.throwsAsync(runner.run(['/nonexistent/prog']), { message: /cannot start/ });
  await t.throwsAsync(runner.run(['sleep', '5'], { timeoutMs: 100 }), {
    message: /timed out after 100 ms/,
  });
});

test('PrefixRunner puts its prefix before every command', async (t) => {
  const seen: string[][] = [];
  const fake: Runner = {
    run: async (argv) => {
      seen.push([...argv]);
      return { stdout: '', stderr: '', code: 0 };
    },
  };
  await new PrefixRunner(fake, ['nsenter', '--net=/x', '--']).run(['ip', 'link']);
  t.deepEqual(seen, [['nsenter', '--net=/x', '--', 'ip', 'link']]);
});

test('requireProgram names a missing program and how to get it', async (t) => {
  t.regex(await requireProgram('sh', 'x'), /\/sh$/);
  await t.throwsAsync(requireProgram('no-such-program-wm', 'install foo'), {
    message: /'no-such-program-wm' not found on PATH \(install foo\)/,
  });
});

test('WorkerRunner runs through the worker while it runs, and spawns otherwise', async (t) => {
  const calls: string[] = [];
  let up = false;
  const worker = {
    running: () => up,
    run: async (argv: readonly string[]) => {
      calls.push(`worker ${argv.join(' ')}`);
      return { stdout: 'w', stderr: '', code: 0 };
    },
  };
  const fallback: Runner = {
    run: async (argv) => {
      calls.push(`spawn ${argv.join(' ')}`);
      return { stdout: 's', stderr: '', code: 0 };
    },
  };
  const r = new WorkerRunner(fallback);
  await r.run(['ip', 'a']);
  r.use(worker);
  await r.run(['ip', 'b']);
  up = true;
  t.is((await r.run(['ip', 'c'])).stdout, 'w');
  up = false;
  await r.run(['ip', 'd']);
  t.deepEqual(calls, ['spawn ip a', 'spawn ip b', 'worker ip c', 'spawn ip d']);
});
