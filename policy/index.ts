// policy/: a pure compiler from pods, namespaces and NetworkPolicies to the one
// `inet wiremesh` nftables table, and the driver that applies it transactionally.
// Built under the network policy issue; this file is its public face.
export {};
