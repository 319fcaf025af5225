// The desired contents of the one nftables table the agent owns (`inet wiremesh`),
// as plain data. Planners (policy/, and the encryption and NAT parts of the mesh)
// return these objects; the table driver renders them into one `nft -f` transaction
// and, afterwards, into incremental changes (set and map elements, rewritten chains).
//
// Rules are nft statement text, e.g. `ip saddr @ns-x-v4 tcp dport 80 accept`: the
// planner that writes a rule knows its meaning, the driver only compares and
// applies. What changes often (which pods, which addresses) belongs in sets and
// maps, so that chains stay static and most updates are element updates.

export const NFT_FAMILY = 'inet';
export const NFT_TABLE = 'wiremesh';

export type NftHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

export interface NftBaseChain {
  type: 'filter' | 'nat' | 'route';
  hook: NftHook;
  /** Numeric priority (filter is 0, srcnat 100, dstnat -100). */
  priority: number;
  policy: 'accept' | 'drop';
}

export interface NftChain {
  /** `[A-Za-z][A-Za-z0-9_-]*`, at most 64 characters. */
  name: string;
  /** Present for base chains (attached to a hook). */
  base?: NftBaseChain;
  /** Rule statements, in order, without the `add rule` prefix. */
  rules: string[];
}

export interface NftSet {
  name: string;
  /** Key type as nft writes it: `ipv4_addr`, `ipv6_addr`, `inet_service`,
   * `ifname`, `ipv4_addr . inet_service`, ... */
  type: string;
  /** `interval` for CIDRs and ranges; elements must then not overlap. */
  flags?: 'interval'[];
  /** Element keys in nft syntax: `10.0.0.1`, `10.0.0.0/24`, `80-90`, `"wm0a1b2c"`. */
  elements: string[];
}

export interface NftMap {
  name: string;
  /** Key type, as for sets. */
  type: string;
  /** Verdict maps only (`vmap`), for dispatch that does not grow with the rule count. */
  value: 'verdict';
  flags?: 'interval'[];
  /** Key (nft syntax) to verdict: `accept`, `drop`, `jump CHAIN`, `goto CHAIN`. */
  elements: Record<string, string>;
}

export interface NftTable {
  sets: NftSet[];
  maps: NftMap[];
  chains: NftChain[];
}

export function emptyTable(): NftTable {
  return { sets: [], maps: [], chains: [] };
}
