// sys/: how wiremesh touches the machine: running programs, checking for root and
// for tools. Kept tiny and dependency-free so every concern can use it.
export * from './exec.ts';
export * from './host.ts';
export * from './ip.ts';
export * from './fakeip.ts';
export * from './linemonitor.ts';
