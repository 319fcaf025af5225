// `wiremesh wireguard-go`: the process of the wiremesh-wireguard DaemonSet. On a node
// whose kernel has no WireGuard module it runs wireguard-go for the agent's device and
// restarts it if it dies; the agent (started with `--wireguard-go external`) only
// configures that device. A container runtime ends every process of a container when
// the container stops, so wireguard-go must not live in the agent's container: an
// agent upgrade, a liveness restart or a killed agent container would take the device,
// and every encrypted packet of the node, down with it. This DaemonSet's pods change
// only when an operator deletes them (updateStrategy OnDelete).
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { onStopSignal } from './signals.ts';
import { jsonLogger, kernelHasWireGuard, WIREGUARD_DEVICE } from '../agent/index.ts';
import { UserspaceDevice } from '../agent/device.ts';
import { dirSource, readSettingsDir, resolveAgentSettings } from '../install/settings.ts';
import { IpCli, defaultRunner } from '../sys/index.ts';

export async function runWireguardGo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      binary: { type: 'string', default: '/usr/lib/wiremesh/wireguard-go' },
      'config-dir': { type: 'string' },
      'node-name': { type: 'string', default: process.env.NODE_NAME },
    },
  });
  const dir = values['config-dir'];
  // The same settings as the agent: `wireguard: userspace` makes both use wireguard-go.
  const settings = resolveAgentSettings(dir ? [dirSource(dir, await readSettingsDir(dir))] : []);
  const log = jsonLogger(
    { node: values['node-name'] ?? '', component: 'wireguard-go' },
    settings.logLevel,
  );
  const ip = new IpCli(defaultRunner);

  const { stopped, stopping } = onStopSignal();

  const mode = settings.wireguardMode;
  if (mode === 'kernel' || (mode === 'auto' && (await kernelHasWireGuard(ip)))) {
    log.info('the agent uses the kernel WireGuard module here; nothing to run', { mode });
    await stopped;
    return 0;
  }

  // A device already there is another wireguard-go's: an agent of an older manifest
  // ran it in its own container, and it goes when that container does. Two processes
  // cannot own one TUN device, so this one waits.
  let told = false;
  while (!stopping() && (await ip.linkShow(WIREGUARD_DEVICE))) {
    if (!told)
      log.info('waiting for the existing device (run by another wireguard-go) to go', {
        device: WIREGUARD_DEVICE,
      });
    told = true;
    await Promise.race([sleep(1000), stopped]);
  }
  if (stopping()) return 0;

  // The agent's own supervision of wireguard-go (agent/device.ts), run here instead.
  const device = new UserspaceDevice(ip, values.binary, log);
  await device.ensure(WIREGUARD_DEVICE);
  log.info('wireguard-go running', { device: WIREGUARD_DEVICE, pid: device.pid });
  const sig = await stopped;
  // Deleting this pod (uninstall, or an operator's upgrade of wireguard-go) ends the
  // device: said here so nobody mistakes it for a crash.
  log.info('stopping wireguard-go; the device goes with it', { signal: sig });
  await device.stop();
  return 0;
}
