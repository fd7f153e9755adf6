import { mkdtemp, readFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BENCH_HOST, WRK_TLS_HOST, createBenchCertificate } from './bench-certificate.js';
import { checkTarget } from './check-target.js';
import { pickLoadGenerator } from './load-generator.js';
import type { LoadGenerator } from './load-generator.js';
import { ChildSet, processTreeCpuMs, startUpstream } from './processes.js';
import { envNumber, formatNumber } from './stats.js';
import { startTargets } from './targets.js';
import type { FailedTarget, Target } from './targets.js';
import { scenarioTable, targetList } from './throughput-report.js';
import type { Cell, Run, ScenarioResult } from './throughput-report.js';
import { tlsConnectLoad } from './tls-connect-load.js';

/** One way of loading every target: a generator, its connection count and the URL it uses for a target. */
interface Scenario {
  readonly title: string;
  readonly generator: LoadGenerator;
  readonly connections: number;
  /** Requests/s over all connections, for a latency-below-saturation scenario; undefined = full load. */
  readonly rate?: number;
  url(target: Target): string;
}

/** The result of {@link runProxyThroughputBench}: per-scenario results and the printable report. */
export interface ThroughputReport {
  readonly scenarios: readonly ScenarioResult[];
  readonly text: string;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 160);
}

const loadOf = (scenario: Scenario): { connections: number; threads: number; rate?: number } =>
  ({ connections: scenario.connections, threads: 1, ...(scenario.rate === undefined ? {} : { rate: scenario.rate }) });

async function measure(scenario: Scenario, target: Target, durationS: number): Promise<Run> {
  const cpuBefore = processTreeCpuMs(target.pid);
  const result = await scenario.generator.run({ url: scenario.url(target), host: BENCH_HOST, durationS, ...loadOf(scenario) });
  const cpuAfter = processTreeCpuMs(target.pid);
  const cpuUsPerRequest = cpuBefore !== undefined && cpuAfter !== undefined && result.requests > 0 ? ((cpuAfter - cpuBefore) * 1000) / result.requests : undefined;
  return { ...result, cpuUsPerRequest };
}

/** Warms every target up, then runs `rounds` interleaved rounds (A B C … A B C …); a target that errors is dropped from the scenario with its reason. */
async function runScenario(scenario: Scenario, targets: readonly Target[], durationS: number, warmupS: number, rounds: number): Promise<ScenarioResult> {
  const cells: Cell[] = targets.map((target) => ({ target, runs: [] }));
  for (const cell of cells) {
    try {
      await scenario.generator.run({ url: scenario.url(cell.target), host: BENCH_HOST, durationS: warmupS, ...loadOf(scenario) });
    } catch (err) {
      cell.error = `warm-up: ${firstLine(err)}`;
    }
  }
  for (let round = 0; round < rounds; round++) {
    for (const cell of cells) {
      if (cell.error !== undefined) continue;
      try {
        cell.runs.push(await measure(scenario, cell.target, durationS));
      } catch (err) {
        cell.error = `round ${round + 1}: ${firstLine(err)}`;
      }
    }
  }
  const command = scenario.generator.command({ host: BENCH_HOST, durationS, ...loadOf(scenario) });
  return { title: scenario.title, command, cells, ...(scenario.rate === undefined ? {} : { fixedRate: scenario.rate }) };
}

/** How many resumable handshakes each target resumed (a short pass offering the last session, not interleaved). */
async function resumptionLine(children: ChildSet, targets: readonly Target[]): Promise<string> {
  const generator = tlsConnectLoad(children, true);
  const parts: string[] = [];
  for (const target of targets) {
    try {
      const r = await generator.run({ url: `https://127.0.0.1:${target.httpsPort}/`, host: BENCH_HOST, durationS: 1, connections: 8, threads: 1 });
      parts.push(`${target.name} ${r.offered > 0 ? formatNumber((100 * r.resumed) / r.offered, 1) : 'n/a'}%`);
    } catch (err) {
      parts.push(`${target.name} failed (${firstLine(err)})`);
    }
  }
  return `TLS session resumption (1 s per target, 8 connections, each offering the session it received last): ${parts.join(', ')}. At this low rate the kernel may hand most accepts to one worker, so misses across workers can hide.`;
}

/**
 * Starts two members, tfgate with 1 and N workers, the naive http-proxy baseline and every peer proxy on PATH
 * (nginx, HAProxy, Caddy; same members, virtual host, certificate, N workers), then measures HTTP keep-alive,
 * HTTPS keep-alive (wrk) and HTTPS with a new connection per request (tls-connect-load), each interleaving
 * the targets round by round. Every child process and temp dir is gone before it returns or throws.
 */
export async function runProxyThroughputBench(): Promise<ThroughputReport> {
  const durationS = Math.round(envNumber('BENCH_DURATION_S', 3));
  const rounds = Math.round(envNumber('BENCH_ROUNDS', 3));
  const connections = Math.round(envNumber('BENCH_CONNECTIONS', 64));
  const newConnections = Math.round(envNumber('BENCH_NEWCONN_CONNECTIONS', 16));
  const newConnectionProcesses = Math.round(envNumber('BENCH_NEWCONN_PROCS', 1));
  const warmupS = Math.round(envNumber('BENCH_WARMUP_S', 1));
  const fixedRate = Math.round(envNumber('BENCH_FIXED_RATE', 4000));
  const workers = Math.round(envNumber('BENCH_WORKERS', cpus().length));
  const children = new ChildSet();
  const dir = await mkdtemp(join(tmpdir(), 'tfgate-bench-'));
  children.removeOnClose(dir);
  try {
    const wrk = pickLoadGenerator(children);
    const certificate = await createBenchCertificate(dir);
    const members = [await startUpstream(children, 10_000, certificate.pemFile), await startUpstream(children, 10_000, certificate.pemFile)] as const;
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const started = await startTargets(children, { dir, members, certificate, workers, tfgateVersion: `${pkg.version}, Node ${process.version}` });
    const failed: FailedTarget[] = [...started.failed];
    const targets: Target[] = [];
    for (const target of started.targets) {
      try {
        await checkTarget(target, members[0].body, certificate);
        targets.push(target);
      } catch (err) {
        failed.push({ name: target.name, reason: `check failed: ${err instanceof Error ? err.message : String(err)}` });
      }
    }
    const scenarios: Scenario[] = [
      { title: 'HTTP/1.1 keep-alive', generator: wrk, connections, url: (t) => `http://127.0.0.1:${t.httpPort}/` },
      { title: 'HTTPS keep-alive', generator: wrk, connections, url: (t) => `https://${WRK_TLS_HOST}:${t.httpsPort}/` },
      { title: 'HTTPS, a new connection (full handshake) per request', generator: tlsConnectLoad(children, false, newConnectionProcesses), connections: newConnections, url: (t) => `https://127.0.0.1:${t.httpsPort}/` },
      // At full load a closed-loop generator's latency is connections ÷ throughput (Little's law), so p99
      // there mostly restates throughput; at one rate every target sustains, it is the delay each one adds.
      { title: `HTTP/1.1 keep-alive at a fixed ${formatNumber(fixedRate)} req/s (latency below saturation)`, generator: wrk, connections, rate: fixedRate, url: (t) => `http://127.0.0.1:${t.httpPort}/` },
    ];
    const only = process.env['BENCH_SCENARIOS']?.split(',').map(Number);
    const results: ScenarioResult[] = [];
    for (const [i, scenario] of scenarios.entries()) {
      if (only === undefined || only.includes(i + 1)) results.push(await runScenario(scenario, targets, durationS, warmupS, rounds));
    }
    const resumption = process.env['BENCH_RESUMPTION'] === '0' ? undefined : await resumptionLine(children, targets.filter((t) => t.kind !== 'direct'));
    const text = [
      `Proxy throughput: ${rounds} interleaved rounds of ${durationS} s per target and scenario after a ${warmupS} s warm-up; median and min–max over rounds.`,
      `Every target: the same two members (Node http, ${Buffer.byteLength(members[0].body)}-byte body), virtual host ${BENCH_HOST}, one ECDSA P-256 certificate, ${workers} workers/threads for the multi-process ones.`,
      `Keep-alive load: ${wrk.note}, 1 thread; HTTPS URLs use https://${WRK_TLS_HOST}:PORT because wrk sends the URL's host as SNI (the certificate covers both names; Host is ${BENCH_HOST}).`,
      'CPU µs/req = user+sys of the target\'s whole process tree ÷ requests (for direct: the member\'s). "vs best peer" is against the fastest of nginx, HAProxy and Caddy in that scenario.',
      '',
      targetList(targets),
      ...failed.map((f) => `- ${f.name}: NOT MEASURED, ${f.reason.split('\n').join('\n  ')}`),
      ...started.missing.map((name) => `- ${name}: not on PATH, skipped`),
      '',
      ...results.flatMap((r) => [scenarioTable(r), '']),
      ...(resumption ? [resumption] : []),
      ...(results.some((r) => r.cells.some((c) => c.runs.some((run) => run.non2xx + run.errors > 0)))
        ? ['', 'WARNING: some responses failed or were not 2xx/3xx; those runs do not measure proxying alone.']
        : []),
    ].join('\n');
    return { scenarios: results, text };
  } finally {
    await children.close();
  }
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
