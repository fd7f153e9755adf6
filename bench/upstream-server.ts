/**
 * A benchmark upstream member, run as its own process (`fork`) so its CPU is apart from the gateway's and
 * the load generator's: answers every request with the same small body, keeps connections alive, sends
 * `{ port, httpsPort, body }` to the parent once listening and exits when the parent goes away. With
 * `BENCH_UPSTREAM_TLS` (a PEM file holding certificate and key) it also answers HTTPS, so "direct to a
 * member" has a TLS ceiling too.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

// Small and fixed, so the benchmark measures per-request overhead, not bandwidth.
const UPSTREAM_BODY = 'hello from a tfgate bench member\n';

// What the parent receives once the member listens (see processes.ts).
interface UpstreamReady {
  readonly port: number;
  readonly httpsPort: number | undefined;
  readonly body: string;
}

const body = Buffer.from(UPSTREAM_BODY);
const answer = (req: IncomingMessage, res: ServerResponse): void => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
};

async function listen(server: Server): Promise<number> {
  server.keepAliveTimeout = 120_000; // longer than any run, so the load generator's connections stay open
  server.headersTimeout = 130_000;
  server.on('error', (err) => {
    process.stderr.write(`bench upstream: ${err.message}\n`);
    process.exit(1);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

const tlsPem = process.env['BENCH_UPSTREAM_TLS'];
const port = await listen(createServer(answer));
const pem = tlsPem === undefined ? undefined : readFileSync(tlsPem);
const httpsPort = pem === undefined ? undefined : await listen(createTlsServer({ cert: pem, key: pem }, answer));
const ready: UpstreamReady = { port, httpsPort, body: UPSTREAM_BODY };
process.send?.(ready);
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
