import { request as httpRequest } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { BENCH_HOST, WRK_TLS_HOST } from './bench-certificate.js';
import type { BenchCertificate } from './bench-certificate.js';
import type { Target } from './targets.js';

interface Answer {
  readonly status: number;
  readonly body: string;
  readonly fingerprint256: string | undefined;
}

/** GETs `/` with the bench Host (over TLS with `servername`, trusting only the bench certificate). */
async function get(port: number, tls: { servername: string; ca: string } | undefined): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage): void => {
      const socket = res.socket as TLSSocket;
      const fingerprint256 = typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate().fingerprint256 : undefined;
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint256 }));
      res.on('error', reject);
    };
    const common = { host: '127.0.0.1', port, path: '/', headers: { host: BENCH_HOST }, agent: false as const, timeout: 5000 };
    const req = tls === undefined ? httpRequest(common, onResponse) : httpsRequest({ ...common, servername: tls.servername, ca: tls.ca }, onResponse);
    req.on('timeout', () => req.destroy(new Error(`no answer on port ${port} within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Checks that a target answers the member's body over HTTP and over HTTPS with the bench certificate, for
 * SNI bench.test and localhost (what wrk sends); throws saying which check failed.
 */
export async function checkTarget(target: Target, body: string, certificate: BenchCertificate): Promise<void> {
  const checks: [string, number, { servername: string; ca: string } | undefined][] = [
    ['HTTP', target.httpPort, undefined],
    [`HTTPS (SNI ${BENCH_HOST})`, target.httpsPort, { servername: BENCH_HOST, ca: certificate.certPem }],
    [`HTTPS (SNI ${WRK_TLS_HOST})`, target.httpsPort, { servername: WRK_TLS_HOST, ca: certificate.certPem }],
  ];
  for (const [what, port, tls] of checks) {
    for (let i = 0; i < 2; i++) {
      let answer: Answer;
      try {
        answer = await get(port, tls);
      } catch (err) {
        throw new Error(`${what} on port ${port}: ${(err as Error).message}`);
      }
      if (answer.status !== 200 || answer.body !== body) {
        throw new Error(`${what} on port ${port} (Host: ${BENCH_HOST}) answered ${answer.status} ${JSON.stringify(answer.body.slice(0, 200))}, expected 200 with the member's body`);
      }
      if (tls !== undefined && answer.fingerprint256 !== certificate.fingerprint256) throw new Error(`${what} on port ${port} did not serve the bench certificate`);
    }
  }
}
