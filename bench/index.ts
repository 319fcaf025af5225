// bench/: reproducible scenarios reporting medians and ratios to a baseline
// measured in the same run. Not tests: nothing here asserts a time.
export * from './harness.ts';
export { scenarios, type Scenario } from './scenarios.ts';
