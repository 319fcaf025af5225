// Every annotation key wiremesh reads or writes, in one place.

/** Written by the agent: the node's WireGuard public key (base64, 32 bytes). */
export const ANNOTATION_PUBLIC_KEY = 'wiremesh.io/wireguard-public-key';
/** Written by the agent: where peers reach this node's WireGuard port (host:port). */
export const ANNOTATION_ENDPOINT = 'wiremesh.io/endpoint';
/** Set by an operator: an endpoint that wins over the published one (e.g. behind NAT). */
export const ANNOTATION_ENDPOINT_OVERRIDE = 'wiremesh.io/endpoint-override';
/** Set by an operator: persistent keepalive in seconds towards this node (0 = off). */
export const ANNOTATION_PERSISTENT_KEEPALIVE = 'wiremesh.io/persistent-keepalive';

/** Written by the agent: "true" when this node routes host-to-host traffic through the mesh. */
export const ANNOTATION_HOST_ENCRYPTION = 'wiremesh.io/host-encryption';

export const WIREGUARD_DEVICE = 'wiremesh.wg';
/** Mark on the WireGuard device's own UDP packets, so policy routing never loops them into the tunnel. */
export const WIREGUARD_FWMARK = 0x51825;
/** Routing table for host-to-host encryption (peers' node addresses via the tunnel). */
export const HOST_ROUTE_TABLE = 51825;
/** Priority of the `not fwmark WIREGUARD_FWMARK lookup HOST_ROUTE_TABLE` rule. */
export const HOST_RULE_PRIORITY = 5182;
export const WIREGUARD_PORT = 51825;
/** Routes the agent owns carry this protocol number, so it finds and repairs exactly those. */
export const ROUTE_PROTOCOL = 251;
