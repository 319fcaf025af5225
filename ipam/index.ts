// ipam/: IP pools, blocks with node affinity claimed by compare-and-swap, per-pod
// allocation made durable before it is handed out, and garbage collection.
// Built under the IPAM/CNI issue; this file is its public face.
export {};
