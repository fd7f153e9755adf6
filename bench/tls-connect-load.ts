/**
 * The handshake-bound load generator: every request on a fresh TLS connection (SNI and Host = the bench
 * host, no session offered so every handshake is a full one), a fixed number of connections in flight.
 * wrk cannot do this, and h2load or `openssl s_time` are not on every machine or cannot hold a fixed
 * concurrency, so it is a small Node program run as its own process (forked; its CPU is not the target's).
 */
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { connect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { pathToFileURL } from 'node:url';
import type { LoadGenerator, LoadOptions, LoadResult } from './load-generator.js';
import type { ChildSet } from './processes.js';

/** A result of the new-connection generator: a LoadResult plus what tells whether the generator was the limit. */
export interface NewConnectionResult extends LoadResult {
  /** The generator's own CPU use over the run, in % of one core (≈100: it was the bottleneck). */
  readonly generatorCpuPercent: number;
  /** Handshakes the server resumed (0 unless `resume` was asked for). */
  readonly resumed: number;
  /** Handshakes in which a session was offered. */
  readonly offered: number;
}

interface RunRequest {
  readonly port: number;
  readonly host: string;
  readonly durationS: number;
  readonly connections: number;
  /** Offer each lane's last session (to measure how many resumable handshakes the target resumes). */
  readonly resume: boolean;
}

const PER_CONNECTION_TIMEOUT_MS = 10_000;

/** One request on one fresh connection; resolves with its latency in ms and outcome once the connection is closed. */
function oneRequest(r: RunRequest, request: Buffer, session: Buffer | undefined, onSession: (s: Buffer) => void): Promise<{ ms: number; status: number; resumed: boolean }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let ms = -1;
    let status = 0;
    let resumed = false;
    let buffered = '';
    let bodyLeft = -1;
    const socket: TLSSocket = connect({ host: '127.0.0.1', port: r.port, servername: r.host, rejectUnauthorized: false, ...(session ? { session } : {}) });
    if (r.resume) socket.on('session', onSession);
    socket.setTimeout(PER_CONNECTION_TIMEOUT_MS, () => socket.destroy());
    socket.once('secureConnect', () => {
      resumed = socket.isSessionReused();
      socket.write(request);
    });
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      if (ms >= 0) return;
      if (bodyLeft < 0) {
        buffered += chunk;
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        status = Number(buffered.slice(9, 12));
        const length = /\r\ncontent-length:\s*(\d+)/i.exec(buffered.slice(0, end));
        bodyLeft = (length ? Number(length[1]) : 0) - (buffered.length - end - 4);
      } else {
        bodyLeft -= chunk.length;
      }
      if (bodyLeft <= 0) {
        ms = performance.now() - started;
        socket.setTimeout(1000); // the server closes (Connection: close); don't wait on one that doesn't
      }
    });
    socket.on('error', () => socket.destroy());
    socket.once('close', () => resolve({ ms, status, resumed }));
  });
}

/** What one generator process measured (latencies sorted, in ms). */
interface RawResult {
  readonly latencies: number[];
  readonly elapsedS: number;
  readonly cpuMs: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly resumed: number;
  readonly offered: number;
}

/** Runs the loop in this process: `connections` lanes, each opening a new connection when its last one closed. */
async function runLoad(r: RunRequest): Promise<RawResult> {
  const request = Buffer.from(`GET / HTTP/1.1\r\nHost: ${r.host}\r\nConnection: close\r\n\r\n`);
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  let resumed = 0;
  let offered = 0;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const deadline = started + r.durationS * 1000;
  const lane = async (): Promise<void> => {
    let session: Buffer | undefined;
    const keep = (s: Buffer): void => {
      session = s;
    };
    while (performance.now() < deadline) {
      const offer = session;
      const result = await oneRequest(r, request, offer, keep);
      if (offer !== undefined) offered++;
      if (result.resumed) resumed++;
      if (result.ms < 0) errors++;
      else if (result.status < 200 || result.status >= 400) non2xx++;
      else latencies.push(result.ms);
    }
  };
  await Promise.all(Array.from({ length: r.connections }, lane));
  const cpu = process.cpuUsage(cpuBefore);
  return { latencies, elapsedS: (performance.now() - started) / 1000, cpuMs: (cpu.user + cpu.system) / 1000, non2xx, errors, resumed, offered };
}

/** Adds up what several generator processes measured. */
function merge(parts: readonly RawResult[]): NewConnectionResult {
  const latencies = parts.flatMap((p) => p.latencies).sort((a, b) => a - b);
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
  const sum = (f: (p: RawResult) => number): number => parts.reduce((total, p) => total + f(p), 0);
  return {
    requestsPerSec: sum((p) => p.latencies.length / p.elapsedS),
    requests: latencies.length,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    non2xx: sum((p) => p.non2xx),
    errors: sum((p) => p.errors),
    resumed: sum((p) => p.resumed),
    offered: sum((p) => p.offered),
    generatorCpuPercent: sum((p) => (p.cpuMs / (p.elapsedS * 1000)) * 100),
  };
}

async function runProcess(children: ChildSet, req: RunRequest): Promise<RawResult> {
  const child = children.add(fork(new URL(import.meta.url), [JSON.stringify(req)], { detached: true, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  const outcome = await Promise.race([
    once(child, 'message').then(([m]) => m as RawResult, (err: Error) => err),
    once(child, 'exit').then(([code, signal]) => new Error(`tls-connect-load exited without a result (${String(signal ?? `code ${String(code)}`)})`), (err: Error) => err),
  ]);
  if (outcome instanceof Error) throw outcome;
  return outcome;
}

/** The new-connection generator: a LoadGenerator whose results say how busy the generator itself was. */
export interface NewConnectionLoad extends LoadGenerator {
  run(options: LoadOptions): Promise<NewConnectionResult>;
}

/**
 * The new-connection-per-request generator as a {@link LoadGenerator}; `url` must be `https://127.0.0.1:PORT/`.
 * With `resume`, each connection offers the session its lane received last (resumption rate, not speed);
 * the connections are spread over `processes` generator processes.
 */
export function tlsConnectLoad(children: ChildSet, resume = false, processes = 1): NewConnectionLoad {
  return {
    name: 'tls-connect-load',
    note: `bench/tls-connect-load.ts (Node, ${processes} process${processes > 1 ? 'es' : ''}): a fresh TLS connection per request, ${resume ? 'offering the last session received' : 'full handshake (no session offered)'}, Connection: close`,
    command: (o) => `tls-connect-load -c ${o.connections} -p ${processes} -d ${o.durationS}s (SNI and Host ${o.host}, TLS 1.3${resume ? ', resumption offered' : ', no resumption'})`,
    async run(o) {
      const port = Number(new URL(o.url).port);
      const lanes = Array.from({ length: processes }, (_, i) => Math.floor(o.connections / processes) + (i < o.connections % processes ? 1 : 0)).filter((n) => n > 0);
      const parts = await Promise.all(lanes.map((connections) => runProcess(children, { port, host: o.host, durationS: o.durationS, connections, resume })));
      return merge(parts);
    },
  };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && process.send) {
  const r = JSON.parse(process.argv[2] ?? '{}') as RunRequest;
  process.on('disconnect', () => process.exit(0));
  runLoad(r).then(
    (result) => process.send!(result, () => process.exit(0)),
    (err: unknown) => {
      process.stderr.write(`tls-connect-load: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
