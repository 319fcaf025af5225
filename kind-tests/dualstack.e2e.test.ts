// Dual-stack, end to end on lab 'dual' (`lab up --ip-family dual`): nodes with an
// IPv4 and an IPv6 InternalIP, pods with an address from the IPv4 pool and one from
// the IPv6 pool; every pod pair reaches each other over both families, and the
// underlay (WireGuard over IPv4) shows both families only inside WireGuard. The
// checks are kind-tests/ipfamily-suite.ts, shared with the IPv6-only lab.
import { ipFamilySuite } from './ipfamily-suite.ts';

ipFamilySuite('dual', 'dual');
