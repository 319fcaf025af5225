// cni/: the CNI plugin (spec 1.1: ADD, DEL, CHECK, VERSION, GC, STATUS). The binary
// in /opt/cni/bin is a minimal static relay to the agent's unix socket; parsing,
// validation, error codes, IPAM and the netns and veth work live here, in the agent.
// Built under the IPAM/CNI issue; this file is its public face.
export {};
