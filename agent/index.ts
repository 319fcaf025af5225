// agent/: the node daemon. It watches the API (Nodes, IP pools and blocks, pods,
// policies), keeps a snapshot, and runs one serialised, coalescing reconcile loop
// that asks the planners for desired state and the drivers to apply it. Nothing is
// written to the dataplane before the first full list has arrived.
// Built under the WireGuard mesh issue; this file is its public face.
export {};
