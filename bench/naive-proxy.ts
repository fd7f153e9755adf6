/**
 * The naive baseline: plain http-proxy with a keep-alive agent, round robin over the members, under
 * node:cluster (SCHED_NONE like tfgate, so only the forwarding path differs). Kept deliberately short so
 * the gain of tfgate's forwarding path stays visible in `npm run bench`.
 * Usage: node naive-proxy.js HTTP_PORT HTTPS_PORT PEM_FILE WORKERS MEMBER_PORT...
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { Agent, createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import httpProxy from 'http-proxy';

const [httpPort, httpsPort, pemFile, workers, ...members] = process.argv.slice(2);
cluster.schedulingPolicy = cluster.SCHED_NONE;

if (cluster.isPrimary) {
  for (let i = 0; i < Number(workers); i++) cluster.fork();
  cluster.on('exit', () => process.exit(1)); // a baseline that lost a worker is not measuring anything any more
  process.on('SIGTERM', () => process.exit(0));
} else {
  const proxy = httpProxy.createProxyServer({ agent: new Agent({ keepAlive: true, maxSockets: 128 }), xfwd: true });
  let next = 0;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const port = members[next++ % members.length];
    proxy.web(req, res, { target: `http://127.0.0.1:${port}` }, () => {
      res.statusCode = 502;
      res.end();
    });
  };
  const pem = readFileSync(pemFile!);
  createServer(handle).listen(Number(httpPort), '127.0.0.1');
  createTlsServer({ cert: pem, key: pem }, handle).listen(Number(httpsPort), '127.0.0.1');
}
