import { request } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { pickLoadGenerator } from './load-generator.js';
import type { LoadGenerator, LoadResult } from './load-generator.js';
import { ChildSet, processTreeCpuMs, startGateway, startUpstream } from './processes.js';
import { envNumber, formatNumber, markdownTable, median } from './stats.js';

/** The virtual host the benchmark routes (the routes file maps it to both members). */
const HOST = 'bench.test';

/** One thing the load generator is pointed at. */
interface Target {
  readonly name: string;
  readonly url: string;
  /** Process (tree) whose CPU time is charged to this target. */
  readonly pid: number;
}

/** One target's results over all rounds. */
export interface TargetMeasurement {
  readonly name: string;
  readonly runs: readonly (LoadResult & { readonly cpuUsPerRequest: number | undefined })[];
}

/** The result of {@link runProxyThroughputBench}: measurements and the printable table. */
export interface ThroughputReport {
  readonly measurements: readonly TargetMeasurement[];
  readonly text: string;
}

/** GETs `url` with the bench Host and resolves with status and body; used to check a target before loading it. */
async function probe(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { host: HOST }, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

async function checkTarget(target: Target, body: string): Promise<void> {
  for (let i = 0; i < 4; i++) {
    const res = await probe(target.url);
    if (res.status !== 200 || res.body !== body) {
      throw new Error(`${target.name} (${target.url}, Host: ${HOST}) answered ${res.status} ${JSON.stringify(res.body.slice(0, 200))}, expected 200 with the member's body`);
    }
  }
}

async function measure(generator: LoadGenerator, target: Target, durationS: number, connections: number) {
  const cpuBefore = processTreeCpuMs(target.pid);
  const result = await generator.run({ url: target.url, host: HOST, durationS, connections, threads: 1 });
  const cpuAfter = processTreeCpuMs(target.pid);
  const cpuUsPerRequest = cpuBefore !== undefined && cpuAfter !== undefined && result.requests > 0 ? ((cpuAfter - cpuBefore) * 1000) / result.requests : undefined;
  return { ...result, cpuUsPerRequest };
}

/**
 * Starts two upstream members and tfgate (`--workers 1`; `BENCH_TFGATE_CLI` names another CLI file) routing
 * `bench.test` to both, then loads each target in turn, interleaved round by round (A B A B …) so drift
 * on a shared machine hits both alike.
 * Every child process is ended before it returns or throws.
 */
export async function runProxyThroughputBench(): Promise<ThroughputReport> {
  const durationS = Math.round(envNumber('BENCH_DURATION_S', 5));
  const rounds = Math.round(envNumber('BENCH_ROUNDS', 3));
  const connections = Math.round(envNumber('BENCH_CONNECTIONS', 64));
  const warmupS = Math.min(2, durationS);
  const children = new ChildSet();
  const dir = await mkdtemp(join(tmpdir(), 'tfgate-bench-'));
  children.removeOnClose(dir);
  try {
    const generator = pickLoadGenerator(children);
    const [first, second] = await Promise.all([startUpstream(children), startUpstream(children)]);
    const routes = join(dir, 'routes.json');
    await writeFile(routes, JSON.stringify({ [HOST]: { members: [`127.0.0.1:${first.port}`, `127.0.0.1:${second.port}`] } }));
    const cli = process.env['BENCH_TFGATE_CLI'] ?? fileURLToPath(new URL('../src/cli/tfgate.js', import.meta.url));
    const gatewayArgs = ['--http', '0', '--https', '0', '--admin', '127.0.0.1:0', '--control', '0', '--state-dir', join(dir, 'state'), '--certs-dir', join(dir, 'certs'), '--routes', routes, '--access-log=false', '--workers', '1'];
    const gateway = await startGateway(children, cli, gatewayArgs);
    const targets: Target[] = [
      { name: 'direct to a member', url: `http://127.0.0.1:${first.port}/`, pid: first.pid },
      { name: process.env['BENCH_TFGATE_CLI'] ? 'BENCH_TFGATE_CLI --workers 1' : 'tfgate --workers 1', url: `http://127.0.0.1:${gateway.http}/`, pid: gateway.pid },
    ];
    for (const target of targets) await checkTarget(target, first.body);

    for (const target of targets) await generator.run({ url: target.url, host: HOST, durationS: warmupS, connections, threads: 1 });
    const runs = targets.map(() => [] as TargetMeasurement['runs'][number][]);
    for (let round = 0; round < rounds; round++) {
      for (const [i, target] of targets.entries()) runs[i]!.push(await measure(generator, target, durationS, connections));
    }
    const measurements = targets.map((t, i) => ({ name: t.name, runs: runs[i]! }));
    return { measurements, text: report(measurements, generator, { durationS, rounds, connections, warmupS, bodyBytes: Buffer.byteLength(first.body) }) };
  } finally {
    await children.close();
  }
}

interface Settings {
  readonly durationS: number;
  readonly rounds: number;
  readonly connections: number;
  readonly warmupS: number;
  readonly bodyBytes: number;
}

function report(measurements: readonly TargetMeasurement[], generator: LoadGenerator, s: Settings): string {
  const direct = median(measurements[0]!.runs.map((r) => r.requestsPerSec));
  const rows = measurements.map((m) => {
    const rps = m.runs.map((r) => r.requestsPerSec);
    const cpu = m.runs.map((r) => r.cpuUsPerRequest).filter((c): c is number => c !== undefined);
    const failures = m.runs.reduce((sum, r) => sum + r.non2xx + r.errors, 0);
    return [
      m.name,
      formatNumber(median(rps)),
      `${formatNumber(Math.min(...rps))}–${formatNumber(Math.max(...rps))}`,
      formatNumber(median(m.runs.map((r) => r.p50Ms)), 2),
      formatNumber(median(m.runs.map((r) => r.p99Ms)), 2),
      cpu.length > 0 ? formatNumber(median(cpu), 1) : 'n/a',
      `${formatNumber(median(rps) / direct, 2)}×`,
      formatNumber(failures),
    ];
  });
  const failed = measurements.some((m) => m.runs.some((r) => r.non2xx + r.errors > 0));
  return [
    `Proxy throughput, HTTP/1.1 keep-alive: ${generator.command({ host: HOST, durationS: s.durationS, connections: s.connections, threads: 1 })}, ` +
      `${s.bodyBytes}-byte body; ${s.rounds} round(s) interleaved after a ${s.warmupS} s warm-up of each target; ` +
      `${cpus().length} CPUs shared by load generator, gateway and members; Node ${process.version}.`,
    `Load generator: ${generator.note}. CPU µs/req = user+sys of the target's process tree ÷ requests (the member's for direct).`,
    '',
    markdownTable(['target', 'req/s (median)', 'min–max', 'p50 ms', 'p99 ms', 'CPU µs/req', 'vs direct', 'non-2xx+errors'], rows),
    '',
    `Ratio ${measurements[1]?.name ?? 'tfgate'} / direct: ${formatNumber(median(measurements[1]?.runs.map((r) => r.requestsPerSec) ?? [0]) / direct, 2)}×`,
    ...(failed ? ['', 'WARNING: some responses failed or were not 2xx/3xx; those runs do not measure proxying.'] : []),
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runProxyThroughputBench().then(
    (r) => console.log(r.text),
    (err: unknown) => {
      console.error(`proxy-throughput: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 1;
    },
  );
}
