// nftables/: the agent's one table, `inet wiremesh`. Planners return an NftTable
// (model.ts); the TableDriver applies it through an NftClient (NftCli in production,
// FakeNft in tests): whole in one transaction the first time and after failures or
// drift, as element and chain changes afterwards.
export * from './model.ts';
export * from './names.ts';
export * from './ops.ts';
export * from './table.ts';
export * from './diff.ts';
export * from './client.ts';
export * from './fake.ts';
export * from './driver.ts';
export * from './monitor.ts';
