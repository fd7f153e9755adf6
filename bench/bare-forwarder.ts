/**
 * A reference floor, not a proxy: the least that tfgate's chosen forwarding path (node:http server +
 * undici `Pool.dispatch()` with a raw handler) costs, under node:cluster with SCHED_NONE like tfgate. No
 * routing, health, limits, retries or metrics, so tfgate's CPU per request minus this one's is what those
 * cost, and the rest of the gap to nginx is the Node http + undici stack itself.
 * Usage: node bare-forwarder.js HTTP_PORT HTTPS_PORT PEM_FILE WORKERS MEMBER_PORT...
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';

const [httpPort, httpsPort, pemFile, workers, ...members] = process.argv.slice(2);
cluster.schedulingPolicy = cluster.SCHED_NONE;
// Hop-by-hop: undici refuses these in a request (and `Connection: close` would close the member connection),
// and relaying them from the member's response would contradict the client connection's own framing.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'expect']);

if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  cluster.on('exit', () => process.exit(1)); // a reference that lost a worker is not measuring anything any more
  process.on('SIGTERM', () => process.exit(0));
} else {
  const pools = members.map((port) => new Pool(`http://127.0.0.1:${port}`, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 }));
  let next = 0;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const headers: string[] = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      if (!HOP_BY_HOP.has(req.rawHeaders[i]!.toLowerCase())) headers.push(req.rawHeaders[i]!, req.rawHeaders[i + 1]!);
    }
    headers.push('x-forwarded-for', req.socket.remoteAddress ?? '');
    const bodiless = req.method === 'GET' || req.method === 'HEAD';
    let controller: Dispatcher.DispatchController | undefined;
    res.on('close', () => {
      if (!res.writableFinished && controller !== undefined && !controller.aborted) controller.abort(new Error('client closed'));
    });
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: (c) => (controller = c),
      onResponseStart: (c, status, _headers, statusMessage) => {
        if (status < 200) return;
        const flat: string[] = [];
        const raw = c.rawHeaders as Buffer[];
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i]!.toString('latin1');
          if (!HOP_BY_HOP.has(name.toLowerCase())) flat.push(name, raw[i + 1]!.toString('latin1'));
        }
        res.writeHead(status, statusMessage || undefined, flat);
      },
      onResponseData: (c, chunk) => {
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd: () => res.end(),
      onResponseError: (_c, _err) => {
        if (res.headersSent) res.destroy();
        else res.writeHead(502).end();
      },
    };
    pools[next++ % pools.length]!.dispatch({ path: req.url ?? '/', method: req.method as Dispatcher.HttpMethod, headers, body: bodiless ? null : req }, handler);
  };
  const pem = readFileSync(pemFile!);
  createServer(handle).listen(Number(httpPort), '127.0.0.1');
  createTlsServer({ cert: pem, key: pem }, handle).listen(Number(httpsPort), '127.0.0.1');
}
