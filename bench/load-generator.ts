import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { ChildSet } from './processes.js';

/** What one load run asks for: HTTP/1.1 keep-alive GETs of `url` with the given Host header. */
export interface LoadOptions {
  readonly url: string;
  readonly host: string;
  readonly durationS: number;
  readonly connections: number;
  readonly threads: number;
  /**
   * Requests per second over all connections; undefined = as fast as the target answers. With a rate, each
   * connection waits a random (exponential) time before each request, so arrivals do not come in lockstep.
   */
  readonly rate?: number;
}

/** What one load run measured; latencies in milliseconds. */
export interface LoadResult {
  readonly requestsPerSec: number;
  readonly requests: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Responses other than 2xx/3xx. */
  readonly non2xx: number;
  /** Connect, read, write errors and timeouts. */
  readonly errors: number;
}

/** A load generator: wrk, or autocannon when wrk is missing. */
export interface LoadGenerator {
  readonly name: string;
  /** Why this one was chosen, for the report. */
  readonly note: string;
  /** The equivalent command line, for the report. */
  command(options: Omit<LoadOptions, 'url'>): string;
  run(options: LoadOptions): Promise<LoadResult>;
}

const UNIT_MS: Readonly<Record<string, number>> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses wrk's `--latency` report (Requests/sec, the 50% and 99% lines, non-2xx and socket errors). */
export function parseWrkOutput(text: string): LoadResult {
  const number = (pattern: RegExp, what: string): RegExpMatchArray => {
    const match = pattern.exec(text);
    if (!match) throw new Error(`wrk output has no ${what}:\n${text}`);
    return match;
  };
  const latency = (percent: string): number => {
    const match = number(new RegExp(`^\\s*${percent}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm'), `${percent}% latency line`);
    return Number(match[1]) * UNIT_MS[match[2]!]!;
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  const errors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return {
    requestsPerSec: Number(number(/^Requests\/sec:\s+([\d.]+)/m, 'Requests/sec')[1]),
    requests: Number(number(/^\s*(\d+) requests in /m, 'request count')[1]),
    p50Ms: latency('50'),
    p99Ms: latency('99'),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
    errors,
  };
}

/** The executable `command` on PATH, or undefined. */
export function onPath(command: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A wrk script that spaces each connection's requests by an exponential think time, so that `connections`
 * connections together send about `rate` requests per second. wrk truncates the delay to whole
 * milliseconds and starts each request's clock when it writes it, so the rate is a little above the
 * one asked for and latency is measured from the request's real start.
 */
export function fixedRateScript(rate: number, connections: number): string {
  const meanMs = (connections * 1000) / rate;
  return [
    `-- ${connections} connections, about ${rate} requests/s in all: Poisson arrivals on each connection`,
    'math.randomseed(os.time())',
    `function delay() return -math.log(1 - math.random()) * ${meanMs.toFixed(3)} end`,
    '',
  ].join('\n');
}

function wrk(path: string, children: ChildSet): LoadGenerator {
  return {
    name: 'wrk',
    note: `wrk (${path})`,
    command: (o) => `wrk -t${o.threads} -c${o.connections} -d${o.durationS}s --latency -H 'Host: ${o.host}'${o.rate === undefined ? '' : ` -s fixed-rate.lua (${o.rate} req/s)`}`,
    async run(o) {
      const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${o.durationS}s`, '--latency', '-H', `Host: ${o.host}`, o.url];
      if (o.rate === undefined) return runWrk(path, args, o.durationS, children);
      const scriptDir = mkdtempSync(join(tmpdir(), 'tfgate-wrk-'));
      const script = join(scriptDir, 'fixed-rate.lua');
      try {
        writeFileSync(script, fixedRateScript(o.rate, o.connections));
        return await runWrk(path, ['-s', script, ...args], o.durationS, children);
      } finally {
        rmSync(scriptDir, { recursive: true, force: true });
      }
    },
  };
}

async function runWrk(path: string, args: readonly string[], durationS: number, children: ChildSet): Promise<LoadResult> {
  const child = children.add(spawn(path, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), (durationS + 15) * 1000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c: number | null, s: NodeJS.Signals | null) => resolve([c, s]));
  }).finally(() => clearTimeout(timer));
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} failed (${signal ?? `code ${code}`}):\n${out}`);
  return parseWrkOutput(out);
}

// The slice of autocannon's API used here (it ships no types of its own).
type Autocannon = (
  options: Record<string, unknown>,
  done: (err: Error | null, result: {
    requests: { total: number };
    latency: { p50: number; p99: number };
    duration: number;
    non2xx: number;
    errors: number;
    timeouts: number;
  }) => void,
) => unknown;

function autocannon(run: Autocannon, why: string): LoadGenerator {
  return {
    name: 'autocannon',
    note: `autocannon, ${why}; it runs inside the bench process and costs far more CPU than wrk, so figures are lower; latencies in whole ms`,
    command: (o) => `autocannon -c ${o.connections} -d ${o.durationS} -H 'host=${o.host}'${o.rate === undefined ? '' : ` --overallRate ${o.rate}`}`,
    async run(o) {
      const result = await new Promise<Parameters<Parameters<Autocannon>[1]>[1]>((resolve, reject) => {
        const rate = o.rate === undefined ? {} : { overallRate: o.rate };
        run({ url: o.url, connections: o.connections, duration: o.durationS, headers: { host: o.host }, ...rate }, (err, r) => (err ? reject(err) : resolve(r)));
      });
      return {
        requestsPerSec: result.requests.total / result.duration,
        requests: result.requests.total,
        p50Ms: result.latency.p50,
        p99Ms: result.latency.p99,
        non2xx: result.non2xx,
        errors: result.errors + result.timeouts,
      };
    },
  };
}

/**
 * wrk when it is on PATH (it costs the machine far less CPU than a Node load generator), else autocannon;
 * `BENCH_LOAD=autocannon` forces the fallback. Throws with what to install when neither is there.
 */
export function pickLoadGenerator(children: ChildSet): LoadGenerator {
  const wanted = process.env['BENCH_LOAD'];
  const path = wanted === 'autocannon' ? undefined : onPath('wrk');
  if (path !== undefined) return wrk(path, children);
  const why = wanted === 'autocannon' ? 'forced by BENCH_LOAD=autocannon' : 'because wrk is not on PATH (apt-get install wrk)';
  try {
    const run = createRequire(import.meta.url)('autocannon') as Autocannon;
    return autocannon(run, why);
  } catch {
    throw new Error(`no load generator: autocannon is not installed and wrk is not used (${why}); apt-get install wrk, or npm install --save-dev autocannon`);
  }
}
