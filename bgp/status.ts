// Reading BIRD's answers: the text birdc prints for `show protocols [all]`, `show
// route count` and `configure`. Pure functions over captured output, so the shapes are
// pinned by table tests with real text (bgp/fixtures/). birdc prints human-oriented
// columns; we rely on what BIRD 2 keeps stable: one protocol per unindented line
// (name, protocol, table, state, since, info) followed, with `all`, by indented
// "Key: value" details, where each channel has a "Routes:" line of counts.

export interface BirdProtocol {
  name: string;
  /** BIRD's protocol type: BGP, Kernel, Static, Device, Direct, Pipe... */
  proto: string;
  table: string;
  /** up, start, down, flush... */
  state: string;
  since: string;
  /** For BGP the session state: Established, Active, Connect, Idle, OpenSent... */
  info: string;
  description?: string;
  neighborAddress?: string;
  neighborAS?: number;
  /** BIRD's reason for the last failure, e.g. "Socket: Connection refused". */
  lastError?: string;
  /** Sums over the protocol's channels (with `show protocols all`). */
  importedRoutes?: number;
  exportedRoutes?: number;
  preferredRoutes?: number;
}

/** A BGP protocol of BIRD: one session with one neighbour. */
export type BgpSession = BirdProtocol;

const PROTOCOL_LINE =
  /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?|\S+)(?:\s+(.*?))?\s*$/;

/** The protocols in `birdc show protocols` or `show protocols all` output. */
export function parseProtocols(text: string): BirdProtocol[] {
  const out: BirdProtocol[] = [];
  let current: BirdProtocol | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim() || /^BIRD \S+ ready\.$/.test(line) || /^Name\s+Proto\s/.test(line)) continue;
    if (!/^\s/.test(line)) {
      const m = PROTOCOL_LINE.exec(line);
      if (!m) throw new Error(`unexpected line in BIRD's protocol list: ${JSON.stringify(line)}`);
      current = {
        name: m[1] ?? '',
        proto: m[2] ?? '',
        table: m[3] ?? '',
        state: m[4] ?? '',
        since: m[5] ?? '',
        // BGP appends the last error after a wide gap: "Active        Socket: ...".
        info: (m[6] ?? '').split(/\s{2,}/)[0] ?? '',
      };
      const error = (m[6] ?? '')
        .split(/\s{2,}/)
        .slice(1)
        .join(' ');
      if (error) current.lastError = error;
      out.push(current);
      continue;
    }
    if (!current) continue;
    const kv = /^\s+([^:]+):\s*(.*?)\s*$/.exec(line);
    if (!kv) continue; // e.g. "  Channel ipv4"
    const [, key = '', value = ''] = kv;
    switch (key) {
      case 'Description':
        current.description = value;
        break;
      case 'Neighbor address':
        current.neighborAddress = value;
        break;
      case 'Neighbor AS':
        current.neighborAS = Number(value);
        break;
      case 'Last error':
        current.lastError = value;
        break;
      case 'Routes': {
        const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(value)?.[1] ?? 0);
        current.importedRoutes = (current.importedRoutes ?? 0) + count('imported');
        current.exportedRoutes = (current.exportedRoutes ?? 0) + count('exported');
        current.preferredRoutes = (current.preferredRoutes ?? 0) + count('preferred');
        break;
      }
    }
  }
  return out;
}

/** The BGP sessions among the protocols. */
export function parseBgpSessions(text: string): BgpSession[] {
  return parseProtocols(text).filter((p) => p.proto === 'BGP');
}

export interface RouteCount {
  table: string;
  /** Routes that matched the command's selection (all of them without one). */
  routes: number;
  total: number;
  networks: number;
}

/** `show route count` (optionally with `protocol X` or `table T`): one entry per table. */
export function parseRouteCount(text: string): RouteCount[] {
  const out: RouteCount[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) of (\d+) routes for (\d+) networks in table (\S+)$/.exec(line.trim());
    if (m)
      out.push({
        routes: +(m[1] ?? 0),
        total: +(m[2] ?? 0),
        networks: +(m[3] ?? 0),
        table: m[4] ?? '',
      });
  }
  return out;
}

/** Replies of `birdc configure` that mean BIRD took the new configuration. */
const CONFIGURE_OK = [
  'Reconfigured',
  'Reconfiguration in progress',
  'Reconfiguration already in progress, queueing new config',
];

export type ConfigureReply = { ok: true; message: string } | { ok: false; message: string };

/**
 * What `birdc configure` said: accepted ("Reconfigured", "Reconfiguration in progress",
 * or queued behind a running one), or BIRD's own words for why not (a parse error
 * "FILE:LINE:COL message", "Reconfiguration ignored, shutting down", a socket error).
 */
export function parseConfigureReply(text: string): ConfigureReply {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^BIRD \S+ ready\.$/.test(l) && !l.startsWith('Reading configuration'));
  const ok = lines.find((l) => CONFIGURE_OK.includes(l));
  if (ok) return { ok: true, message: ok };
  return { ok: false, message: lines.join('; ') || 'no reply from BIRD' };
}
