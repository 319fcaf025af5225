// Every CNI version the plugin speaks, end to end through the handler: for each
// cniVersion a config may ask for (0.3.0 to 1.1.0), what the runtime reads back from
// ADD, CHECK, DEL, VERSION, GC and STATUS, as golden snapshots (versions.test.ts.md).
// The runtimes in the field decide which version they ask for: containerd 1.6 and
// podman 4 (libcni 1.1) know results up to 1.0.0, which is why the installed conflist
// says 1.0.0 (cni/install.ts); a verb newer than the config's version is refused with
// the spec's error, code 1, as the reference plugins' skel does.
import test from 'ava';
import { CniHandler } from './handler.ts';
import { FakeWiring } from './wiring-fake.ts';
import { MemoryIpam } from './ipam-fake.ts';
import { SUPPORTED_VERSIONS, type CniCommand } from './protocol.ts';

const env = (command: CniCommand) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'c0ffee',
  CNI_NETNS: '/var/run/netns/cni-c0ffee',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
  CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0',
});
const conf = (cniVersion: string, extra: object = {}) =>
  JSON.stringify({ cniVersion, name: 'wiremesh', type: 'wiremesh', ...extra });

/** One reply as the runtime sees it: the exit code and stdout, parsed when not empty. */
async function ask(handler: CniHandler, command: CniCommand, stdin: string) {
  const r = await handler.handle(env(command), stdin);
  return { exit: r.code, stdout: r.stdout === '' ? '' : (JSON.parse(r.stdout) as unknown) };
}

for (const version of SUPPORTED_VERSIONS) {
  test(`cniVersion ${version}: every verb`, async (t) => {
    const ipam = new MemoryIpam();
    ipam.dualStack = true;
    const handler = new CniHandler({ ipam, wiring: new FakeWiring(), mtu: () => 1420 });
    const add = await ask(handler, 'ADD', conf(version));
    t.is(add.exit, 0);
    t.is((add.stdout as { cniVersion: string }).cniVersion, version, 'ADD answers in its version');
    // What a runtime's cache hands back on CHECK and DEL.
    const withPrev = conf(version, { prevResult: add.stdout });
    const replies = {
      ADD: add,
      CHECK: await ask(handler, 'CHECK', withPrev),
      VERSION: await ask(handler, 'VERSION', conf(version)),
      GC: await ask(handler, 'GC', conf(version, { 'cni.dev/valid-attachments': [] })),
      STATUS: await ask(handler, 'STATUS', conf(version)),
      DEL: await ask(handler, 'DEL', withPrev),
    };
    t.snapshot(replies);
    // CHECK from 0.4.0, GC and STATUS from 1.1.0; refused before with code 1.
    const since = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' } as const;
    for (const [verb, from] of Object.entries(since)) {
      const known = SUPPORTED_VERSIONS.indexOf(version) >= SUPPORTED_VERSIONS.indexOf(from);
      const r = replies[verb as keyof typeof since];
      if (known) t.deepEqual(r, { exit: 0, stdout: '' }, verb);
      else
        t.like(r, { exit: 1, stdout: { cniVersion: version, code: 1 } }, `${verb} before ${from}`);
    }
  });
}

test('errors answer in the config’s version; STATUS not ready is code 50', async (t) => {
  const ipam = new MemoryIpam();
  ipam.isReady = false;
  const handler = new CniHandler({ ipam, wiring: new FakeWiring(), mtu: () => 1420 });
  t.like(await ask(handler, 'STATUS', conf('1.1.0')), {
    exit: 1,
    stdout: { cniVersion: '1.1.0', code: 50, msg: 'wiremesh IPAM is not ready' },
  });
  // CHECK of a container never added: code 3, in each version's own words.
  for (const version of ['0.4.0', '1.0.0'])
    t.like(await ask(handler, 'CHECK', conf(version)), {
      exit: 1,
      stdout: { cniVersion: version, code: 3 },
    });
  // A version the plugin does not speak: code 1, reported in its newest version.
  t.like(await ask(handler, 'ADD', conf('0.2.0')), {
    exit: 1,
    stdout: { cniVersion: '1.1.0', code: 1, msg: 'incompatible CNI version' },
  });
});
