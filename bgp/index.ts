// bgp/: BIRD 2 as wiremesh's BGP speaker, for routing plaintext pools' pod blocks
// natively across subnets. plan.ts renders bird.conf from a plan (pure), status.ts
// reads birdc's answers (pure), daemon.ts runs BIRD and moves text between the two.
export * from './plan.ts';
export * from './status.ts';
export * from './daemon.ts';
