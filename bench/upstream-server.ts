/**
 * A benchmark upstream member, run as its own process (`fork`) so its CPU is apart from the gateway's and
 * the load generator's: answers every request with the same small body, keeps connections alive, sends
 * `{ port, body }` to the parent once listening and exits when the parent goes away.
 */
import { createServer } from 'node:http';

// Small and fixed, so the benchmark measures per-request overhead, not bandwidth.
const UPSTREAM_BODY = 'hello from a tfgate bench member\n';

// What the parent receives once the member listens (see processes.ts).
interface UpstreamReady {
  readonly port: number;
  readonly body: string;
}

const body = Buffer.from(UPSTREAM_BODY);
const server = createServer((req, res) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 120_000; // longer than any run, so the load generator's connections stay open
server.headersTimeout = 130_000;
server.on('error', (err) => {
  process.stderr.write(`bench upstream: ${err.message}\n`);
  process.exit(1);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  const ready: UpstreamReady = { port: typeof address === 'object' && address !== null ? address.port : 0, body: UPSTREAM_BODY };
  process.send?.(ready);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
