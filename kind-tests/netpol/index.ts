// kind-tests/netpol/: the network-policy end-to-end suite's model (upstream's
// namespaces x, y, z and pods a, b, c), truth tables, policy builders and the
// probing harness around wiremesh-prober (kind-tests/prober).
export * from './model.ts';
export * from './prober.ts';
export * from './truth-table.ts';
export * from './policies.ts';
export * from './harness.ts';
