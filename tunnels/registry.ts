// The registry of encapsulations, by kind: WireGuard (availability and MTU here; its
// device and peers are agent/meshdriver.ts's), VXLAN and IP-in-IP. An explicit list
// rather than self-registration on import, so what exists does not depend on which
// module happened to be loaded first. `probeEncapsulations` runs at start-up.
import type { IpClient } from '../sys/index.ts';
import type {
  Availability,
  Encapsulation,
  EncapsulationKind,
  ProbeOptions,
} from './encapsulation.ts';
import { PROBE_DEVICE, WIREGUARD_DEVICE_NAME } from './constants.ts';
import { probeLinkKind } from './probe.ts';
import { vxlanEncapsulation } from './vxlan.ts';
import { ipipEncapsulation } from './ipip.ts';

export const wireguardEncapsulation: Encapsulation = {
  kind: 'wireguard',
  device: WIREGUARD_DEVICE_NAME,
  carries: () => true,
  async probe(ip, options) {
    const kernel = await probeLinkKind(ip, 'wireguard', PROBE_DEVICE.wireguard, () =>
      ip.linkAddWireGuard(PROBE_DEVICE.wireguard),
    );
    if (kernel.available || !options.wireguardGo) return kernel;
    return {
      kind: 'wireguard',
      available: true,
      detail: `userspace wireguard-go (${kernel.detail})`,
    };
  },
};

const REGISTRY: ReadonlyMap<EncapsulationKind, Encapsulation> = new Map(
  [wireguardEncapsulation, vxlanEncapsulation, ipipEncapsulation].map((e) => [e.kind, e]),
);

export function encapsulation(kind: EncapsulationKind): Encapsulation {
  const e = REGISTRY.get(kind);
  if (!e) throw new Error(`no encapsulation '${kind}'`);
  return e;
}

export function encapsulations(): Encapsulation[] {
  return [...REGISTRY.values()];
}

/** Probes every registered encapsulation, one after another (they create links). */
export async function probeEncapsulations(
  ip: IpClient,
  options: ProbeOptions,
): Promise<Availability[]> {
  const out: Availability[] = [];
  for (const e of REGISTRY.values()) out.push(await e.probe(ip, options));
  return out;
}
