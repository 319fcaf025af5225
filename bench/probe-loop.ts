// A probe loop for policy-enforce (bench/policy-lab.ts), run inside a lab pod's
// network namespace: every --interval ms it sends one UDP datagram from a fresh
// socket to --target ip:port, where
// wiremesh-prober serve echoes it, and prints one JSON line per probe once its
// outcome is known: {"t": send time, "ok": echoed within --timeout ms, "rtt": ms
// from send to echo when it came}. Times are
// wall-clock milliseconds (performance.timeOrigin + performance.now()), so the
// benchmark process on the same machine can compare them with its own clock.
//
// Every probe must be a new flow that policy judges: a datagram matching a conntrack
// entry still alive from an earlier probe would pass as established whatever the
// policy says. So source ports are not left to the kernel (a random ephemeral port
// hits one of the few thousand live entries often enough to blur a change) but taken
// in turn from 20000-59999: at one probe per 5 ms a port comes back after 200 s, past
// the UDP conntrack timeouts (30 s, 120 s for streams). A probe whose port is taken
// is skipped, not counted. The timeout is generous (1 s): on a loaded machine this
// process may not run for a few hundred ms, and a late echo must not read as a drop.
//
//   node bench/probe-loop.ts --target 100.64.1.2:8080 [--interval 5] [--timeout 300]
import { createSocket } from 'node:dgram';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    target: { type: 'string' },
    interval: { type: 'string', default: '5' },
    timeout: { type: 'string', default: '1000' },
  },
});
const [host, portText] = (values.target ?? '').split(':');
const port = Number(portText);
if (!host || !Number.isInteger(port)) {
  process.stderr.write('usage: probe-loop.ts --target IP:PORT [--interval MS] [--timeout MS]\n');
  process.exit(2);
}
const intervalMs = Number(values.interval);
const timeoutMs = Number(values.timeout);
const wallNow = () => performance.timeOrigin + performance.now();

const FIRST_PORT = 20_000;
const PORTS = 40_000;
let seq = 0;
function probe(): void {
  const id = `${process.pid}-${seq}`;
  const sourcePort = FIRST_PORT + (seq++ % PORTS);
  const socket = createSocket('udp4');
  let done = false;
  let timer: NodeJS.Timeout | undefined;
  let t = 0;
  const finish = (ok: boolean | null) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.close();
    const rtt = ok ? { rtt: Math.round((wallNow() - t) * 1000) / 1000 } : {};
    if (ok !== null)
      process.stdout.write(`${JSON.stringify({ t: Math.round(t * 100) / 100, ok, ...rtt })}\n`);
  };
  socket.on('message', (msg) => {
    if (msg.toString().startsWith(id)) finish(true);
  });
  socket.on('error', () => finish(timer === undefined ? null : false));
  socket.bind(sourcePort, () => {
    t = wallNow();
    timer = setTimeout(() => finish(false), timeoutMs);
    socket.send(id, port, host);
  });
}

setInterval(probe, intervalMs);
process.on('SIGTERM', () => process.exit(0));
