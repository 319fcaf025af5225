// What the DaemonSet in deploy/daemonset.yaml promises a real node: the privileges
// the agent needs, and probes that reach the agent's health endpoints where its
// settings (deploy/config.yaml) put them, with timeouts a loaded node can meet.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { DEPLOY_DIR } from './manifest.ts';
import { DEFAULT_AGENT_SETTINGS, parseListenAddress } from './settings.ts';

interface Probe {
  httpGet?: { host?: string; port?: number | string; path?: string };
  exec?: unknown;
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}
interface Container {
  name: string;
  ports?: { name: string; containerPort: number }[];
  securityContext?: { privileged?: boolean };
  livenessProbe?: Probe;
  readinessProbe?: Probe;
}
const ds = parseYaml(readFileSync(join(DEPLOY_DIR, 'daemonset.yaml'), 'utf8')) as {
  spec: { template: { spec: { hostNetwork?: boolean; containers: Container[] } } };
};
const config = parseYaml(readFileSync(join(DEPLOY_DIR, 'config.yaml'), 'utf8')) as {
  data: Record<string, string>;
};
const agent = ds.spec.template.spec.containers.find((c) => c.name === 'agent');

test('the agent runs privileged: /proc/sys is read-only in any other container', (t) => {
  t.true(agent?.securityContext?.privileged);
  t.true(ds.spec.template.spec.hostNetwork);
});

test('probes are HTTP GETs of the health endpoints on the health-address', (t) => {
  const health = parseListenAddress(config.data['health-address'] ?? '');
  t.deepEqual(health, parseListenAddress(DEFAULT_AGENT_SETTINGS.healthAddress ?? ''));
  const port = agent?.ports?.find((p) => p.name === 'health')?.containerPort;
  t.is(port, health?.port);
  for (const [probe, path] of [
    [agent?.livenessProbe, '/healthz'],
    [agent?.readinessProbe, '/readyz'],
  ] as const) {
    t.is(probe?.exec, undefined, 'no process started per probe');
    t.deepEqual(probe?.httpGet, { host: health?.host, port: 'health', path });
    // A loaded node must be able to answer in time; the kubelet's default is 1 s.
    t.true((probe?.timeoutSeconds ?? 1) >= 3, `${path} timeout`);
  }
  // A minute of failed liveness probes before the kubelet restarts the agent.
  const l = agent?.livenessProbe;
  t.true((l?.periodSeconds ?? 10) * (l?.failureThreshold ?? 3) >= 60);
});

interface WgDaemonSet {
  spec: {
    updateStrategy?: { type?: string };
    template: {
      spec: {
        hostNetwork?: boolean;
        containers: {
          name?: string;
          command?: string[];
          volumeMounts?: { name: string; mountPath: string }[];
        }[];
        volumes: { name: string; hostPath?: { path: string } }[];
      };
    };
  };
}
const wgDs = parseYaml(readFileSync(join(DEPLOY_DIR, 'wireguard.yaml'), 'utf8')) as WgDaemonSet;
const agentDs = ds as unknown as WgDaemonSet;

const hostPathAt = (d: WgDaemonSet, mountPath: string): string | undefined => {
  const spec = d.spec.template.spec;
  const mount = spec.containers
    .flatMap((c) => c.volumeMounts ?? [])
    .find((m) => m.mountPath === mountPath);
  return spec.volumes.find((v) => v.name === mount?.name)?.hostPath?.path;
};

test('wireguard-go runs outside the agent’s pod, which only configures its device', (t) => {
  // The agent's container restarting (upgrade, liveness, crash) must not end the device.
  const agentCmd = agentDs.spec.template.spec.containers.find((c) =>
    c.command?.includes('agent'),
  )?.command;
  t.is(agentCmd?.[agentCmd.indexOf('--wireguard-go') + 1], 'external');
  const wg = wgDs.spec.template.spec;
  t.true(wg.hostNetwork, 'the device is the node’s');
  t.deepEqual(wg.containers[0]?.command?.slice(0, 2), ['wiremesh', 'wireguard-go']);
  // A new manifest applied never restarts it: only deleting its pod does.
  t.is(wgDs.spec.updateStrategy?.type, 'OnDelete');
  // The agent's `wg` reaches wireguard-go's UAPI socket through the same host directory.
  t.is(hostPathAt(wgDs, '/run/wireguard'), '/run/wireguard');
  t.is(hostPathAt(agentDs, '/run/wireguard'), '/run/wireguard');
  t.is(hostPathAt(wgDs, '/dev/net/tun'), '/dev/net/tun');
});

test('BIRD runs outside the agent’s pod, on the bird.conf the agent writes', (t) => {
  // BGP sessions must not close with the agent's container (upgrade, liveness, crash).
  const agentCmd = agentDs.spec.template.spec.containers.find((c) =>
    c.command?.includes('agent'),
  )?.command;
  t.is(agentCmd?.[agentCmd.indexOf('--bird') + 1], 'external');
  const bird = wgDs.spec.template.spec.containers.find((c) => c.name === 'bird');
  t.deepEqual(bird?.command?.slice(0, 2), ['wiremesh', 'bird']);
  const dir = bird?.command?.[bird.command.indexOf('--dir') + 1];
  t.is(dir, '/run/wiremesh/bird');
  // Both see one host directory: the agent's run directory holds bird/.
  t.is(hostPathAt(wgDs, '/run/wiremesh/bird'), '/run/wiremesh/bird');
  t.is(hostPathAt(agentDs, '/run/wiremesh'), '/run/wiremesh');
});
