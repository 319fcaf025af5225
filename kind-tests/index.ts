// kind-tests/: end-to-end suites (*.e2e.test.ts) written against ClusterDriver, so
// they run against the lab here and against kind where Docker exists.
export type { ClusterDriver, ClusterPod, ContainerPort } from './driver.ts';
export { LabDriver, openCluster } from './lab-driver.ts';
