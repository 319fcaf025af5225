// IPv6 only, end to end on lab 'v6only' (`lab up --ip-family ipv6`): nodes with an
// IPv6 InternalIP (WireGuard endpoints on the IPv6 underlay, 80 bytes of overhead),
// pods with an address from the IPv6 pool only; the same connectivity and encryption
// checks as the dual-stack lab (kind-tests/ipfamily-suite.ts), and the apiserver at
// its IPv6 underlay address (https://[2001:db8:<lab>::1]:6443), not the IPv4 one.
import { ipFamilySuite } from './ipfamily-suite.ts';

ipFamilySuite('v6only', 'ipv6');
