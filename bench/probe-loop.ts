// A probe loop for policy-enforce (bench/policy-lab.ts), run inside a lab pod's
// network namespace: every --interval ms it sends one UDP datagram from a fresh
// socket (so a fresh source port, so a new conntrack entry that policy must judge:
// an ongoing flow would be let through as established) to --target ip:port, where
// wiremesh-prober serve echoes it, and prints one JSON line per probe once its
// outcome is known: {"t": send time, "ok": echoed within --timeout ms}. Times are
// wall-clock milliseconds (performance.timeOrigin + performance.now()), so the
// benchmark process on the same machine can compare them with its own clock.
//
//   node bench/probe-loop.ts --target 100.64.1.2:8080 [--interval 5] [--timeout 300]
import { createSocket } from 'node:dgram';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    target: { type: 'string' },
    interval: { type: 'string', default: '5' },
    timeout: { type: 'string', default: '300' },
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

let seq = 0;
function probe(): void {
  const t = wallNow();
  const id = `${process.pid}-${seq++}`;
  const socket = createSocket('udp4');
  let done = false;
  const finish = (ok: boolean) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.close();
    process.stdout.write(`${JSON.stringify({ t: Math.round(t * 100) / 100, ok })}\n`);
  };
  const timer = setTimeout(() => finish(false), timeoutMs);
  socket.on('message', (msg) => {
    if (msg.toString().startsWith(id)) finish(true);
  });
  socket.on('error', () => finish(false));
  socket.send(id, port, host);
}

setInterval(probe, intervalMs);
process.on('SIGTERM', () => process.exit(0));
