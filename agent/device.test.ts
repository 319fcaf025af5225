// How the agent picks its WireGuard device where the kernel has no module: with
// `--wireguard-go external` it waits for the device another process runs and never
// starts wireguard-go itself.
import test from 'ava';
import { FakeIp } from '../sys/index.ts';
import { chooseDevice, ExternalUserspaceDevice, EXTERNAL_WIREGUARD_GO } from './device.ts';
import { silentLogger } from './log.ts';

const noKernelModule = () => {
  const ip = new FakeIp();
  ip.unsupportedKinds.add('wireguard');
  return ip;
};

test('external: chosen without a wireguard-go binary when the kernel has no module', async (t) => {
  const device = await chooseDevice('auto', noKernelModule(), EXTERNAL_WIREGUARD_GO, silentLogger);
  t.true(device instanceof ExternalUserspaceDevice);
  t.is(device.mode, 'userspace');
});

test('external: the kernel module still wins in auto mode', async (t) => {
  const device = await chooseDevice('auto', new FakeIp(), EXTERNAL_WIREGUARD_GO, silentLogger);
  t.is(device.mode, 'kernel');
});

test('external: ensure waits for the device and creates nothing', async (t) => {
  const ip = noKernelModule();
  const device = new ExternalUserspaceDevice(ip, { waitMs: 2000 });
  setTimeout(() => ip.addLink('wiremesh.wg'), 300);
  await device.ensure('wiremesh.wg');
  t.false(
    ip.calls.some((c) => c.startsWith('add')),
    ip.calls.join('; '),
  );
});

test('external: a device that never comes is an error naming the pod that runs it', async (t) => {
  const device = new ExternalUserspaceDevice(noKernelModule(), { waitMs: 400 });
  const err = await t.throwsAsync(device.ensure('wiremesh.wg'));
  t.regex(err?.message ?? '', /wiremesh-wireguard pod/);
});
