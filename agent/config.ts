// The agent's settings (flags of `wiremesh agent`, see cli/agent.ts) and their defaults.
import { WIREGUARD_PORT } from './annotations.ts';
import type { WireGuardMode } from './device.ts';

export interface AgentConfig {
  nodeName: string;
  kubeconfig?: string;
  stateDir: string;
  runDir: string;
  listenPort: number;
  tunnelCIDR: string;
  resyncMs: number;
  wireguardMode: WireGuardMode;
  wireguardGo?: string;
  /** 'external': BIRD is run by the wiremesh-wireguard pod (agent/bgpphase.ts); unset: the agent's child. */
  bird?: string;
  keyRotationPeriodMs: number;
  /** Route host-to-host traffic between nodes through the mesh (pairs where both agree). */
  hostEncryption: boolean;
  /**
   * The IPPools to create at start-up when the cluster has none (one CIDR per family;
   * empty: never), so that one `kubectl apply` of the manifest, which holds no custom
   * resources, gives a working cluster.
   */
  defaultPoolCIDRs: string[];
  /** The nodes' BGP AS number; null: no BGP (agent/bgp.ts). */
  bgpAS: number | null;
  bgpNodeMesh: boolean;
  bgpHoldTimeMs: number;
}

export const DEFAULT_TUNNEL_CIDR = '100.127.0.0/16';
export const DEFAULT_POOL_CIDR = '100.64.0.0/16';

export function defaultAgentConfig(nodeName: string): AgentConfig {
  return {
    nodeName,
    stateDir: '/var/lib/wiremesh',
    runDir: '/run/wiremesh',
    listenPort: WIREGUARD_PORT,
    tunnelCIDR: DEFAULT_TUNNEL_CIDR,
    resyncMs: 30_000,
    wireguardMode: 'auto',
    keyRotationPeriodMs: 0,
    hostEncryption: false,
    defaultPoolCIDRs: [DEFAULT_POOL_CIDR],
    bgpAS: null,
    bgpNodeMesh: true,
    bgpHoldTimeMs: 9000,
  };
}

/** A WireGuard peer as `wg show` reports it, with the node it belongs to. */
