// Which CNI plugin the lab's nodes use, the configuration it is given, and how a
// plugin's result is read. Until the wiremesh plugin is wired into the lab, nodes
// use the reference bridge + host-local plugins, which proves the lab machinery
// (cnitool, node mount namespaces, pod namespaces) with plugins known to be right.

export type CniChoice = 'bridge' | 'wiremesh';

export function parseCniChoice(value: string): CniChoice {
  if (value === 'bridge' || value === 'wiremesh') return value;
  throw new Error(`unknown CNI '${value}': choose 'bridge' (reference plugins) or 'wiremesh'`);
}

export function cniNetworkName(cni: CniChoice): string {
  return cni === 'bridge' ? 'lab-bridge' : 'wiremesh';
}

export function bridgeConflist(podCIDR: string): object {
  return {
    cniVersion: '1.0.0',
    name: 'lab-bridge',
    plugins: [
      {
        type: 'bridge',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: false,
        ipam: {
          type: 'host-local',
          ranges: [[{ subnet: podCIDR }]],
          routes: [{ dst: '0.0.0.0/0' }],
        },
      },
    ],
  };
}

/** The addresses (without prefix length) in a CNI ADD result. */
export function parseCniResultIPs(stdout: string): string[] {
  let result: unknown;
  try {
    result = JSON.parse(stdout);
  } catch (e) {
    throw new Error(`CNI result is not JSON: ${stdout.slice(0, 200)}`, { cause: e });
  }
  const ips = (result as { ips?: unknown }).ips;
  if (!Array.isArray(ips)) return [];
  return ips
    .map((entry) => (entry as { address?: unknown }).address)
    .filter((a): a is string => typeof a === 'string')
    .map((a) => a.split('/')[0] ?? a);
}
