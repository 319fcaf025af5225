// The plans behind the golden bird.conf files in bgp/fixtures/ (NAME.conf), shared by
// plan.test.ts (text equality) and bird.netns.test.ts (real BIRD parses each one).
// One per kind of node: a full-mesh member, a route reflector, a client of one, and a
// node peering with an external top-of-rack router as well as the mesh, which takes
// a node's route only for a block that node owns (nodeOrigins).
import type { BirdPlan } from './plan.ts';

const common = {
  localAS: 64512,
  accept: ['10.250.0.0/16', '10.252.0.0/16'],
  neverAccept: ['10.251.0.0/16'],
  kernelMetric: 1024,
};

export const GOLDEN: Record<'mesh' | 'reflector' | 'client' | 'external', BirdPlan> = {
  mesh: {
    ...common,
    routerId: '198.18.252.2',
    localAddress: '198.18.252.2',
    announce: ['10.250.0.0/26', '10.252.1.0/26'],
    neighbors: [
      { name: 'node_b', address: '198.18.252.130', as: 64512, role: 'mesh' },
      { name: 'node_c', address: '198.18.252.3', as: 64512, role: 'mesh' },
    ],
  },
  reflector: {
    ...common,
    routerId: '198.18.253.1',
    localAddress: '198.18.253.1',
    announce: ['10.250.16.0/26'],
    reflectorClusterId: '198.18.253.1',
    neighbors: [
      { name: 'node_c1', address: '198.18.253.2', as: 64512, role: 'client' },
      { name: 'node_c2', address: '198.18.253.3', as: 64512, role: 'client' },
      { name: 'node_rr2', address: '198.18.253.9', as: 64512, role: 'mesh' },
    ],
  },
  client: {
    ...common,
    routerId: '198.18.253.2',
    localAddress: '198.18.253.2',
    announce: ['10.250.16.64/26'],
    neighbors: [
      { name: 'node_rr', address: '198.18.253.1', as: 64512, role: 'reflector' },
      { name: 'node_rr2', address: '198.18.253.9', as: 64512, role: 'reflector' },
    ],
  },
  external: {
    ...common,
    routerId: '198.18.252.130',
    localAddress: '198.18.252.130',
    announce: ['10.250.0.64/26'],
    neighbors: [
      { name: 'tor', address: '198.18.252.129', as: 65000, role: 'external' },
      { name: 'node_a', address: '198.18.252.2', as: 64512, role: 'mesh' },
    ],
    holdTime: 9,
    keepaliveTime: 3,
    connectRetryTime: 5,
    errorWaitTime: [1, 60],
    nodeOrigins: { '198.18.252.2': ['10.250.0.0/26', '10.252.1.0/26'], '198.18.252.3': [] },
  },
};
