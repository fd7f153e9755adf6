import type { LoadResult } from './load-generator.js';
import { formatNumber, markdownTable, median } from './stats.js';
import type { Target } from './targets.js';

/** One measured run: the generator's result and the target's CPU per request (µs) where /proc tells. */
export type Run = LoadResult & { readonly cpuUsPerRequest: number | undefined; readonly generatorCpuPercent?: number };

/** One target in one scenario: its runs, or why it could not be measured. */
export interface Cell {
  readonly target: Target;
  readonly runs: Run[];
  error?: string;
}

/** One scenario's results and how they were produced. */
export interface ScenarioResult {
  readonly title: string;
  /** The load generator and its settings, as a command line. */
  readonly command: string;
  /** Requests/s asked of every target, when the scenario measures latency below saturation, not throughput. */
  readonly fixedRate?: number;
  readonly cells: readonly Cell[];
}

const rpsOf = (cell: Cell): number | undefined => (cell.runs.length > 0 ? median(cell.runs.map((r) => r.requestsPerSec)) : undefined);
const cpuOf = (cell: Cell): number | undefined => {
  const cpu = cell.runs.map((r) => r.cpuUsPerRequest).filter((c): c is number => c !== undefined);
  return cpu.length > 0 ? median(cpu) : undefined;
};
const p99Of = (cell: Cell): number | undefined => (cell.runs.length > 0 ? median(cell.runs.map((r) => r.p99Ms)) : undefined);
const ratio = (value: number | undefined, base: number | undefined): string =>
  value === undefined || base === undefined || base === 0 ? 'n/a' : `${formatNumber(value / base, 2)}×`;

/**
 * The markdown table of one scenario: medians and min–max over rounds, CPU per request, p99 against
 * nginx's, and (at full load) throughput ratios to direct, nginx and the best peer (peers only: never
 * tfgate, the bare forwarder or the naive baseline); then the line saying how much CPU tfgate spends above
 * the bare undici forwarder. At a fixed rate every target gets the same requests/s, so only latency and
 * CPU are compared.
 */
export function scenarioTable(result: ScenarioResult): string {
  const direct = result.cells.find((c) => c.target.kind === 'direct');
  const nginx = result.cells.find((c) => c.target.name === 'nginx');
  const peers = result.cells.filter((c) => c.target.kind === 'peer' && c.runs.length > 0);
  const best = peers.reduce<Cell | undefined>((b, c) => (b === undefined || rpsOf(c)! > rpsOf(b)! ? c : b), undefined);
  const fixed = result.fixedRate !== undefined;
  const withGenerator = result.cells.some((c) => c.runs.some((r) => r.generatorCpuPercent !== undefined));
  const rows = result.cells.map((cell) => {
    if (cell.runs.length === 0) return [cell.target.name, `failed: ${cell.error ?? 'no runs'}`];
    const rps = cell.runs.map((r) => r.requestsPerSec);
    const cpu = cpuOf(cell);
    const failures = cell.runs.reduce((sum, r) => sum + r.non2xx + r.errors, 0);
    const generator = cell.runs.map((r) => r.generatorCpuPercent).filter((c): c is number => c !== undefined);
    return [
      cell.target.name,
      formatNumber(median(rps)),
      `${formatNumber(Math.min(...rps))}–${formatNumber(Math.max(...rps))}`,
      formatNumber(median(cell.runs.map((r) => r.p50Ms)), 2),
      formatNumber(median(cell.runs.map((r) => r.p99Ms)), 2),
      cpu !== undefined ? formatNumber(cpu, 1) : 'n/a',
      ratio(p99Of(cell), nginx && p99Of(nginx)),
      ...(fixed ? [] : [ratio(rpsOf(cell), direct && rpsOf(direct)), ratio(rpsOf(cell), nginx && rpsOf(nginx)), ratio(rpsOf(cell), best && rpsOf(best))]),
      ...(withGenerator ? [generator.length > 0 ? `${formatNumber(median(generator))}%` : 'n/a'] : []),
      formatNumber(failures) + (cell.error ? ` (${cell.error})` : ''),
    ];
  });
  const header = ['target', 'req/s', 'min–max', 'p50 ms', 'p99 ms', 'CPU µs/req', 'p99 vs nginx'];
  if (!fixed) header.push('vs direct', 'vs nginx', `vs best peer${best ? ` (${best.target.name})` : ''}`);
  if (withGenerator) header.push('load gen CPU');
  header.push('errors');
  const overhead = overheadLine(result.cells);
  return [`### ${result.title}`, '', `\`${result.command}\``, '', markdownTable(header, rows), ...(overhead ? ['', overhead] : [])].join('\n');
}

/**
 * How much more CPU per request each tfgate target spends than the bare forwarder on the same stack (the
 * one with its worker count, else the N one, flagged as not like for like): the cost of routing, health,
 * limits and metrics, apart from the cost of Node http + undici. Undefined when no pair has CPU figures.
 */
function overheadLine(cells: readonly Cell[]): string | undefined {
  const references = cells.filter((c) => c.target.kind === 'reference' && cpuOf(c) !== undefined);
  const parts: string[] = [];
  for (const cell of cells) {
    const cpu = cpuOf(cell);
    if (cell.target.kind !== 'tfgate' || cpu === undefined) continue;
    const reference = references.find((r) => r.target.workers === cell.target.workers) ?? references[0];
    const floor = reference && cpuOf(reference);
    if (reference === undefined || floor === undefined || floor === 0) continue;
    const diff = cpu - floor;
    const unlike = cell.target.workers !== reference.target.workers ? ` (${cell.target.workers ?? '?'} against ${reference.target.workers ?? '?'} workers: not like for like)` : '';
    parts.push(`${cell.target.name} uses ${formatNumber(Math.abs(diff), 1)} µs/req (${formatNumber((100 * Math.abs(diff)) / floor)}%) ${diff >= 0 ? 'more' : 'less'} CPU than ${reference.target.name}${unlike}`);
  }
  return parts.length > 0 ? `${parts.join('; ')}: at the same worker count, that is what routing, health, limits and metrics cost.` : undefined;
}

/** One line per target: what ran, its version and the worker count it was given. */
export function targetList(targets: readonly Target[]): string {
  return targets.map((t) => `- ${t.name}: ${t.version}`).join('\n');
}
