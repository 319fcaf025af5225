// install/: what it takes to put wiremesh on a cluster and take it off a node. The
// agent's settings (the wiremesh-config ConfigMap and the flags of the same names),
// the combined manifest generated from deploy/'s parts, and `wiremesh cleanup`'s
// planner and driver. Pure planners here; the CLI in cli/ does the printing.
export * from './settings.ts';
export * from './manifest.ts';
