// What may be written into an `nft -f` script, checked before anything is rendered, so
// a planner's mistake (or a hostile value that slipped through one) can never inject a
// second command, a comment or a stray element into the agent's transaction.
//
// Names: nft 1.0.6 (Debian 12) accepts neither quoted identifiers (`add chain inet t
// "x"` is a syntax error) nor keywords as bare ones (`add chain inet t fwd` fails), so
// a name that collides with a keyword cannot be written at all and is refused here.
// NFT_KEYWORDS is every word nft's scanner (src/scanner.l) turns into a token, in any
// scanner state: a superset of what collides in a given position, deliberately, since
// later nft versions move words between states. Elements are the other way round: they
// may be quoted (`"wm0a1b2c"`), and an ifname key must be, because a bare interface
// name can be a keyword or contain the concatenation dot (`wiremesh.wg`).

export const NAME_MAX = 64;
const NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

// prettier-ignore
export const NFT_KEYWORDS: ReadonlySet<string> = new Set(`
eq ne le lt ge gt lshift rshift xor and or not vmap include define redefine undefine describe
chains sets tables rules trace hook device devices table chain rule set element map flowtable
handle ruleset socket transparent wildcard cgroupv2 level tproxy accept drop continue jump goto
return to inet netdev add replace update create insert delete get list reset flush rename import
export monitor destroy position index comment constant interval dynamic auto-merge timeout
gc-interval elements expires policy size performance memory flow offload meter meters flowtables
limits maps secmarks synproxys tunnel tunnels hooks counter name packets bytes last never counters
quotas log prefix snaplen queue-threshold group queue num bypass fanout limit rate burst second
minute week over quota until used hour day reject with icmpx snat dnat masquerade redirect random
fully-random persistent port ll nh th bridge ether saddr daddr type typeof vlan id cfi dei pcp
arp htype ptype hlen plen operation ip version hdrlength dscp ecn length frag-off ttl protocol
checksum lsrr rr ssrr ra ptr value option options ackseq doff window urgptr echo eol maxseg mss
nop noop sack sack0 sack1 sack2 sack3 sack-permitted sack-perm timestamp fastopen mptcp md5sig
left right count tsval tsecr subtype time icmp icmpv6 gateway code param-problem max-delay mtu
taddr sequence igmp mrt ip6 priority flowlabel hoplimit nexthdr ah reserved spi esp comp cpi
flags udp udplite csumcov sport dport vxlan vni geneve gre gretap tcp dccp sctp chunk vtag data
init init-ack heartbeat heartbeat-ack abort shutdown shutdown-ack error cookie-echo cookie-ack
ecne cwr shutdown-complete asconf-ack forward-tsn asconf tsn stream ssn ppid init-tag a-rwnd
num-outbound-streams num-inbound-streams initial-tsn cum-tsn-ack num-gap-ack-blocks num-dup-tsns
lowest-tsn seqno new-cum-tsn rt rt0 rt2 srh addr hbh frag reserved2 more-fragments dst mh meta
mark iif iifname iiftype oif oifname oiftype skuid skgid nftrace rtclassid ibriport ibrname
obriport obrname pkttype cpu iifgroup oifgroup cgroup nexthop seg-left last-entry tag sid classid
ct avgpkt l3proto proto-src proto-dst zone original reply direction event expectation expiration
helper helpers label state status numgen inc jhash symhash seed mod offset dup fwd fib check osf
synproxy wscale tos notrack all xml json vm exists missing exthdr ipsec reqid spnum in out
secmark xt
`.split(/\s+/).filter(Boolean));

/** Throws unless `name` can be written bare as a chain, set or map name. */
export function assertObjectName(kind: string, name: string): void {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new Error(`nftables: ${kind} name ${JSON.stringify(name)} must match ${NAME.source}`);
  }
  if (name.length > NAME_MAX) {
    throw new Error(`nftables: ${kind} name '${name}' is longer than ${NAME_MAX} characters`);
  }
  if (NFT_KEYWORDS.has(name)) {
    throw new Error(
      `nftables: ${kind} name '${name}' is an nft keyword and nft cannot quote names; choose another`,
    );
  }
}

/** A set or map key type as nft writes it: `ipv4_addr`, `ifname . inet_service`. */
export function assertKeyType(owner: string, type: string): void {
  if (typeof type !== 'string' || !/^[a-z][a-z0-9_]*( \. [a-z][a-z0-9_]*)*$/.test(type)) {
    throw new Error(`nftables: ${owner} has an invalid type ${JSON.stringify(type)}`);
  }
}

/**
 * A rule is one line of statements. Newlines, `;` (a second command) and `#` (a comment
 * that would swallow the rest of the line) are refused; braces stay allowed for
 * anonymous sets (`tcp dport { 80, 443 } accept`).
 */
export function assertRuleText(chain: string, rule: string): void {
  if (typeof rule !== 'string' || rule.trim() === '') {
    throw new Error(`nftables: chain '${chain}' has an empty rule`);
  }
  const bad = /[\n\r;#\0]/.exec(rule);
  if (bad) {
    throw new Error(
      `nftables: rule in chain '${chain}' contains ${JSON.stringify(bad[0])}: ${JSON.stringify(rule)}`,
    );
  }
}

// Unquoted runs: addresses (v4, v6), prefixes, ranges, ports, bare words; quoted runs:
// no quote, backslash or control character inside.
const ELEMENT = /^(?:[A-Za-z0-9_.:/\- ]|"[^"\\\n\r\0;]*")+$/;

/** An element key: one element, nothing that ends it (`,` `}`) or starts another command. */
export function assertElementText(owner: string, element: string): void {
  if (typeof element !== 'string' || element.trim() === '' || !ELEMENT.test(element)) {
    throw new Error(`nftables: ${owner} has an invalid element ${JSON.stringify(element)}`);
  }
  if (/\s:\s/.test(element)) {
    throw new Error(`nftables: ${owner} element ${JSON.stringify(element)} contains ' : '`);
  }
}

/** A verdict-map value: accept, drop, continue, return, or jump/goto a chain. */
export function parseVerdict(owner: string, verdict: string): { jump?: string } {
  if (['accept', 'drop', 'continue', 'return'].includes(verdict)) return {};
  const m = /^(jump|goto) (\S+)$/.exec(verdict);
  if (!m?.[2]) {
    throw new Error(`nftables: ${owner} has an invalid verdict ${JSON.stringify(verdict)}`);
  }
  assertObjectName(`${owner} verdict target`, m[2]);
  return { jump: m[2] };
}

/** `"name"`: an nft quoted string (interface names, strings). */
export function quoteString(value: string): string {
  if (/["\\\n\r\0]/.test(value)) {
    throw new Error(`nftables: cannot quote ${JSON.stringify(value)}`);
  }
  return `"${value}"`;
}

/**
 * The key in the form nft needs: every component whose type is `ifname` or `string`
 * quoted (a no-op when the planner quoted it already), components split on ` . `.
 */
export function canonicalElement(owner: string, type: string, element: string): string {
  const types = type.split(' . ');
  if (!types.some((t) => t === 'ifname' || t === 'string')) return element.trim();
  const parts = element.trim().split(' . ');
  if (parts.length !== types.length) {
    throw new Error(
      `nftables: ${owner} element ${JSON.stringify(element)} does not have the ${types.length} parts of '${type}'`,
    );
  }
  return parts
    .map((part, i) => {
      const t = types[i];
      if (t !== 'ifname' && t !== 'string') return part;
      return /^".*"$/.test(part) ? part : quoteString(part);
    })
    .join(' . ');
}

/** Names of chains a rule jumps or goes to, and of sets and maps it references (`@x`). */
export function ruleReferences(rule: string): { chains: string[]; sets: string[] } {
  const chains = [...rule.matchAll(/\b(?:jump|goto)\s+([A-Za-z][A-Za-z0-9_-]*)/g)].map(
    (m) => m[1] ?? '',
  );
  const sets = [...rule.matchAll(/@([A-Za-z][A-Za-z0-9_-]*)/g)].map((m) => m[1] ?? '');
  return { chains, sets };
}
