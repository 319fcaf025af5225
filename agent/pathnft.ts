// The nftables fragment of the path planner (agent/paths.ts): the encryption guard
// that keeps a Required pool's traffic from leaving in plaintext, and the masquerade
// for natOutgoing pools. Pure; planPaths puts it in its plan.
//
// The guard's destinations (`encrypt-remote-*`) are everything the mesh reaches: remote
// pod blocks, other clusters' ranges, and other nodes' own addresses. A Required pool's
// packet to one of them leaves through WireGuard or not at all. Other nodes' addresses
// are not exempt from natOutgoing: a pool that asks for it is masqueraded towards them
// as towards any address outside the pools.
import { formatCidr, hostCidr, parseCidr, type Cidr } from './cidr.ts';
import type { PathPool } from './paths.ts';
import { cidrLast } from '../ipam/cidr.ts';
import type { NftChain, NftSet, NftTable } from '../nftables/model.ts';
import { WIREGUARD_DEVICE_NAME } from '../tunnels/index.ts';

/** CIDRs of one family, none inside another (nft interval sets refuse overlaps). */
function disjoint(cidrs: readonly string[], family: 4 | 6): string[] {
  const parsed: Cidr[] = cidrs
    .map(parseCidr)
    .filter((c) => c.family === family)
    .sort((a, b) => (a.base < b.base ? -1 : a.base > b.base ? 1 : a.prefix - b.prefix));
  const out: Cidr[] = [];
  for (const c of parsed) {
    const last = out.at(-1);
    if (last && c.base <= cidrLast(last)) continue; // sorted: overlapping means contained
    out.push(c);
  }
  return out.map(formatCidr);
}

/** The comment prefix of the encryption guard's drop rules, before the range. */
export const ENCRYPT_DROP_TAG = 'wm-encrypt ';

/** Up to this many Required ranges of a family are matched inline, beyond through a set. */
const INLINE_REQUIRED_RANGES = 4;

/** Names of the sets and chains in the fragment, for the agent and for status. */
export const PATH_NFT = {
  forward: 'encrypt-forward',
  output: 'encrypt-output',
  natPostrouting: 'nat-postrouting',
} as const;

/**
 * The fragment of `inet wiremesh` this planner owns. Chains are static; what changes
 * (pools, remote blocks) is in sets. The agent jumps to `encrypt-forward` from its
 * filter forward base chain and to `encrypt-output` from a filter output base chain,
 * both before any accept, and to `nat-postrouting` (only while some pool has
 * natOutgoing) from a `type nat hook postrouting priority srcnat` base chain.
 */
export function planPathNft(
  pools: readonly PathPool[],
  dsts: {
    /** Pod blocks held by other nodes. */
    remoteBlocks: readonly string[];
    /** Ranges reached only through wiremesh.wg (other clusters, Peer objects). */
    meshRanges?: readonly string[];
    /** Other nodes' own addresses (their InternalIPs). */
    remoteNodeAddresses?: readonly string[];
  },
): NftTable {
  const meshRanges = dsts.meshRanges ?? [];
  const sets: NftSet[] = [];
  const chainRules = { forward: [] as string[], nat: [] as string[] };
  for (const family of [4, 6] as const) {
    const v = `v${family}`;
    const ip = family === 4 ? 'ip' : 'ip6';
    const type = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
    const set = (name: string, cidrs: readonly string[]) =>
      sets.push({
        name: `${name}-${v}`,
        type,
        flags: ['interval'],
        elements: disjoint(cidrs, family),
      });
    set(
      'encrypt-required',
      pools
        .filter((p) => p.encryptionMode === 'Required' && p.encryption === 'WireGuard')
        .map((p) => p.cidr),
    );
    set('encrypt-remote', [
      ...dsts.remoteBlocks,
      ...meshRanges,
      ...(dsts.remoteNodeAddresses ?? []).map(hostCidr),
    ]);
    set(
      'nat-outgoing',
      pools.filter((p) => p.natOutgoing).map((p) => p.cidr),
    );
    set('nat-pools', [...pools.map((p) => p.cidr), ...meshRanges]);
    const notWg = `oifname != "${WIREGUARD_DEVICE_NAME}"`;
    const required = disjoint(
      pools
        .filter((p) => p.encryptionMode === 'Required' && p.encryption === 'WireGuard')
        .map((p) => p.cidr),
      family,
    );
    // Rules only for a family with a Required pool: every forwarded packet walks them.
    // A packet of no Required pool must get through cheaply: with a few Required
    // ranges, each is a prefix compare in the rule (an interval set lookup per packet
    // cost about 5% of a forwarded pod stream here); the remote lookup comes
    // last, so only traffic of a Required pool that is not leaving through WireGuard
    // pays for it.
    // The comment names the Required range the rule guards (`*`: all of them, through
    // the set), so the agent can count drops per pool (agent/drops.ts).
    const guard = (match: 'saddr' | 'daddr', range: string) =>
      `${ip} ${match} ${range} ${notWg} ${ip} daddr @encrypt-remote-${v} counter drop ` +
      `comment "${ENCRYPT_DROP_TAG}${range.startsWith('@') ? '*' : range}"`;
    const ranges =
      required.length <= INLINE_REQUIRED_RANGES ? required : [`@encrypt-required-${v}`];
    for (const match of ['saddr', 'daddr'] as const)
      for (const range of required.length ? ranges : [])
        chainRules.forward.push(guard(match, range));
    if (pools.some((p) => p.natOutgoing && parseCidr(p.cidr).family === family))
      chainRules.nat.push(
        `${ip} saddr @nat-outgoing-${v} ${ip} daddr != @nat-pools-${v} masquerade`,
      );
  }
  const chains: NftChain[] = [
    { name: PATH_NFT.forward, rules: chainRules.forward },
    { name: PATH_NFT.output, rules: [...chainRules.forward] },
  ];
  // A NAT hook makes the kernel track and NAT-check every packet in the node's
  // namespace: about 14% of a forwarded pod stream's throughput here (bench/paths.ts).
  // So the chain, and with it the agent's `type nat` base chain, exists only while a
  // pool asks for natOutgoing.
  if (chainRules.nat.length) chains.push({ name: PATH_NFT.natPostrouting, rules: chainRules.nat });
  return { sets, maps: [], chains };
}

/** The path plan's fragment as the table composer's parts: `encrypt-*` and `nat-*`. */
export function splitPathNft(t: NftTable): { encrypt: NftTable; nat: NftTable } {
  const part = (prefix: string): NftTable => ({
    sets: t.sets.filter((x) => x.name.startsWith(prefix)),
    maps: t.maps.filter((x) => x.name.startsWith(prefix)),
    chains: t.chains.filter((x) => x.name.startsWith(prefix)),
  });
  return { encrypt: part('encrypt-'), nat: part('nat-') };
}
