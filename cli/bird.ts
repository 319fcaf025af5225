// `wiremesh bird`: the BIRD of a node whose agent runs with `--bird external`, in the
// wiremesh-wireguard DaemonSet's pod. A container runtime ends every process of a
// container when the container stops; were BIRD the agent's child, every agent
// upgrade or restart of its container would close the node's BGP sessions, and its
// peers would withdraw its pod blocks (and routers drop them) until the new agent's
// sessions were up again. Here BIRD outlives the agent: the agent writes bird.conf
// into the shared host directory and has BIRD reload it through the control socket;
// this process starts BIRD when the file appears, restarts it if it dies, and stops
// it (withdrawing the node's routes) when the file is removed, which is what an agent
// with BGP turned off does.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { onStopSignal } from './signals.ts';
import { jsonLogger } from '../agent/index.ts';
import { BirdDaemon } from '../bgp/index.ts';

const POLL_MS = 1000;

export async function runBird(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string', default: '/run/wiremesh/bird' },
      binary: { type: 'string', default: '/usr/sbin/bird' },
      birdc: { type: 'string', default: '/usr/sbin/birdc' },
      'node-name': { type: 'string', default: process.env.NODE_NAME },
    },
  });
  const log = jsonLogger({ node: values['node-name'] ?? '', component: 'bird' }, 'info');
  const configPath = join(values.dir, 'bird.conf');
  await mkdir(values.dir, { recursive: true, mode: 0o700 });
  const daemon = new BirdDaemon({
    configPath,
    socketPath: join(values.dir, 'bird.ctl'),
    // No pid file: a BIRD of an earlier container of this pod went with that container.
    birdPath: values.binary,
    birdcPath: values.birdc,
    log: (line) => log.info('bird', { line }),
  });
  daemon.on('restarted', (pid: number) => log.warn('bird restarted after it died', { pid }));

  const { stopped, stopping } = onStopSignal();

  let waiting = false;
  while (!stopping()) {
    const configured = existsSync(configPath);
    if (configured) {
      waiting = false;
      try {
        if (await daemon.ensureRunning()) log.info('bird running', { pid: daemon.pid, configPath });
      } catch (e) {
        // BIRD's own restart with backoff is pending; said once per failure.
        log.error('starting bird failed', { error: (e as Error).message });
      }
    } else if (daemon.pid) {
      log.info('bird.conf removed (BGP turned off): stopping bird', { pid: daemon.pid });
      await daemon.stop();
    } else if (!waiting) {
      log.info('waiting for the agent to write bird.conf (BGP is off until then)', {
        configPath,
      });
      waiting = true;
    }
    await Promise.race([sleep(POLL_MS), stopped]);
  }
  // Deleting this pod (uninstall, or an upgrade of it) ends BIRD: on SIGTERM it closes
  // its sessions, so the peers withdraw this node's blocks at once.
  log.info('stopping bird; its sessions and routes go with it', { pid: daemon.pid ?? null });
  await daemon.stop();
  return 0;
}
