// The `wiremesh` command line: the only place that prints for humans and calls
// process.exit. Each subcommand parses its flags, calls the concern's index,
// and turns an error into one clear line and a non-zero exit code.

const USAGE = `usage: wiremesh <command> [flags]

commands:
  agent      --node-name NAME [--kubeconfig FILE] [--config-dir DIR] [--resync 30s]
             [--wireguard auto|kernel|userspace] [--key-rotation-period 0s] [--tunnel-cidr CIDR]
             [--host-encryption] [--listen-port 51825] [--log-level info]
             [--metrics-address 0.0.0.0:9825|off] [--health-address 127.0.0.1:9826|off]
             [--default-pool-cidr 100.64.0.0/16|off] [--wireguard-go PATH|external] [--bird external]
             the node daemon (Prometheus metrics on GET /metrics, probes on GET /healthz, /readyz)
  status     [-o json|yaml|wide]          on a node: peers (endpoint, path, handshake, bytes),
             pools and their encryption, IPAM usage, policy counts (from the agent's socket)
  status --cluster [--kubeconfig FILE] [-o json|yaml|wide]
             every node's annotations and IPAM usage, the IPPools, from the apiserver
  rotate-key                              on a node: new WireGuard key, peers follow
  health     [--ready] [--address IP:PORT] on a node: exit 0 when the agent is alive (with --ready:
             has applied its dataplane), as the kubelet's probes see it
  plan       --node NAME [--kubeconfig FILE] [--tunnel-cidr CIDR] [--host-mtu 1500]
             the WireGuard mesh the agent on NAME would program (peers, AllowedIPs, routes)
  explain    [--kubeconfig FILE] [-o text|json] SRC DST [PORT/PROTO]
             the path of a new connection (node, device, pool, encrypted or not) and the policy
             verdict at both ends with the rule that decided; SRC/DST: namespace/pod or an address
  graph      [--kubeconfig FILE] [-o dot|svg] [--metrics-port 9825]
             the mesh as a picture: nodes and blocks, an edge per node pair with each pool's path,
             encrypted or not, and problems (agent not answering, no handshake in 3 min, blocked pools)
  install-cni [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--chain portmap,bandwidth|none]
             [--plugins-dir /usr/lib/wiremesh/cni]   the relay and 10-wiremesh.conflist, portmap and
             bandwidth chained (copied from --plugins-dir to a node that has none)
  wireguard-go [--binary /usr/lib/wiremesh/wireguard-go] [--config-dir DIR] [--node-name NAME]
             on a node without the WireGuard module: runs and restarts wireguard-go for the
             agent's device (an agent started with --wireguard-go external), outside its container
  bird       [--dir /run/wiremesh/bird] [--binary /usr/sbin/bird] [--node-name NAME]
             runs BIRD on the bird.conf an agent started with --bird external writes there, outside
             its container; stops BIRD when the file is removed (BGP turned off)
  cleanup    [--pods] [--dry-run] [--force] [--root /] [-o json]   on a node, after deleting the DaemonSet:
             remove wiremesh's devices, routes, rules, nftables table, wireguard-go and files
  manifest   [--check] [--stdout]         regenerate deploy/wiremesh.yaml from deploy/'s parts
  peer-config --peer NAME [--kubeconfig FILE] [--private-key-file FILE] [--tunnel-cidr CIDR]
             a wg-quick file for an external WireGuard Peer
  lab up     [--name lab] [--nodes 3] [--pods-per-node 2] [--pool 100.64.0.0/16] [--ip-family ipv4|dual|ipv6] [--subnets 1|2] [--cni wiremesh|bridge] [--no-agents]
  lab status [--name lab] [-o json]
  lab exec   [--name lab] NODE[/POD] -- COMMAND...
  lab down   [--name lab]
  lab list
  lab connect LAB_A LAB_B              let two labs' nodes reach each other's underlay (undone by lab down)
  lab disconnect LAB_A LAB_B
`;

/** The usage lines of one command (its own lines and their continuations), or null. */
export function usageOf(command: string): string | null {
  const lines = USAGE.split('\n');
  const out: string[] = [];
  let inside = false;
  for (const line of lines) {
    if (/^ {2}\S/.test(line)) inside = line.slice(2).split(/\s+/)[0] === command;
    else if (!/^ {4,}\S/.test(line)) inside = false;
    if (inside) out.push(line);
  }
  return out.length ? `usage: wiremesh ${command} [flags]\n\n${out.join('\n')}\n` : null;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `wiremesh CMD --help` (before any `--`, after which the flags belong to another program).
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (command && (own.includes('--help') || own.includes('-h'))) {
    const usage = usageOf(command);
    if (usage) {
      process.stdout.write(usage);
      return 0;
    }
  }
  switch (command) {
    // Commands load their modules on demand: the agent must not pay, in memory and
    // start-up time, for the lab's and the tools' dependencies.
    case 'lab':
      return (await import('./lab.ts')).runLabCommand(rest);
    case 'agent':
      return (await import('./agent.ts')).runAgent(rest);
    case 'status':
      return (await import('./status.ts')).runStatus(rest);
    case 'rotate-key':
      return (await import('./agent.ts')).runRotateKey(rest);
    case 'plan':
      return (await import('./agent.ts')).runPlan(rest);
    case 'explain':
      return (await import('./explain.ts')).runExplain(rest);
    case 'graph':
      return (await import('./graph.ts')).runGraph(rest);
    case 'health':
      return (await import('./agent.ts')).runHealth(rest);
    case 'install-cni':
      return (await import('./cni.ts')).runInstallCni(rest);
    case 'wireguard-go':
      return (await import('./wireguard-go.ts')).runWireguardGo(rest);
    case 'bird':
      return (await import('./bird.ts')).runBird(rest);
    case 'cleanup':
      return (await import('./cleanup.ts')).runCleanup(rest);
    case 'manifest':
      return (await import('./manifest.ts')).runManifest(rest);
    case 'peer-config':
      return (await import('./peer-config.ts')).runPeerConfig(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`wiremesh: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (e) {
  const err = e as Error;
  process.stderr.write(`wiremesh: ${err.message}\n`);
  if (process.env.WIREMESH_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
  process.exitCode = 1;
}
