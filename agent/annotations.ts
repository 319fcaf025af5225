// Every annotation key wiremesh reads or writes, in one place.

/** Written by the agent: the node's WireGuard public key (base64, 32 bytes). */
export const ANNOTATION_PUBLIC_KEY = 'wiremesh.io/wireguard-public-key';
/** Written by the agent: where peers reach this node's WireGuard port (host:port). */
export const ANNOTATION_ENDPOINT = 'wiremesh.io/endpoint';
/** Set by an operator: an endpoint that wins over the published one (e.g. behind NAT). */
export const ANNOTATION_ENDPOINT_OVERRIDE = 'wiremesh.io/endpoint-override';
/** Set by an operator: persistent keepalive in seconds towards this node (0 = off). */
export const ANNOTATION_PERSISTENT_KEEPALIVE = 'wiremesh.io/persistent-keepalive';

export const WIREGUARD_DEVICE = 'wiremesh.wg';
export const WIREGUARD_PORT = 51825;
/** Routes the agent owns carry this protocol number, so it finds and repairs exactly those. */
export const ROUTE_PROTOCOL = 251;
