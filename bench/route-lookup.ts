import { pathToFileURL } from 'node:url';
import { RouteTable } from '../src/vhost/index.js';
import { envNumber, formatNumber, markdownTable, median } from './stats.js';

/** Route table sizes measured; the issue asks that 100,000 routes cost the same per lookup as 10. */
export const ROUTE_COUNTS: readonly number[] = [10, 1_000, 10_000, 100_000];

/**
 * Distinct hostnames looked up in a cycle (powers of two, so the index is a mask): a hot set, the same
 * size at every table size, isolates the algorithm; a spread set over the whole table adds the cache
 * misses that random access to a large table costs on any data structure.
 */
const QUERY_SETS = { hot: 16, spread: 4096 } as const;

/** Which query set a measurement used. */
export type QuerySet = keyof typeof QUERY_SETS;

/** One table size and query set: ns per lookup of every recorded round. */
export interface LookupMeasurement {
  readonly routes: number;
  readonly set: QuerySet;
  readonly nsPerLookup: readonly number[];
  readonly hitRate: number;
}

/** The result of {@link runRouteLookupBench}: measurements, the printable table and the 100k/10 ratios. */
export interface LookupReport {
  readonly measurements: readonly LookupMeasurement[];
  readonly ratio: Readonly<Record<QuerySet, number>>;
  readonly text: string;
}

interface Case {
  readonly routes: number;
  readonly set: QuerySet;
  readonly table: RouteTable<number>;
  readonly queries: readonly string[];
  readonly samples: number[];
  hits: number;
  lookups: number;
}

/**
 * Builds a table of `count` routes (half exact `site-N.bench.example`, half wildcard `*.zone-N.bench.example`)
 * and a query mix spread over the whole table: a quarter each exact hits, wildcard hits, misses on the
 * exact map, and two-label-deep misses under a wildcard (both probes fail).
 */
function buildCase(count: number, set: QuerySet): Case {
  const entries: [string, number][] = [];
  for (let i = 0; i < count; i++) entries.push([i % 2 === 0 ? `site-${i}.bench.example` : `*.zone-${i}.bench.example`, i]);
  const table = new RouteTable(1, entries);
  let seed = 0x9e3779b9 ^ count;
  const random = (below: number): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; // LCG: same queries every run
    return seed % below;
  };
  const even = (): number => 2 * random(Math.ceil(count / 2));
  const odd = (): number => 2 * random(Math.floor(count / 2)) + 1;
  const queries: string[] = [];
  for (let q = 0; q < QUERY_SETS[set]; q++) {
    switch (q % 4) {
      case 0: queries.push(`site-${even()}.bench.example`); break;
      case 1: queries.push(`w${q}.zone-${odd()}.bench.example`); break;
      case 2: queries.push(`missing-${q}.bench.example`); break;
      default: queries.push(`a${q}.b.zone-${odd()}.bench.example`); break;
    }
  }
  return { routes: count, set, table, queries, samples: [], hits: 0, lookups: 0 };
}

/** Times `iterations` lookups cycling through the case's queries; returns ns per lookup (loop overhead included). */
function timeRound(c: Case, iterations: number): number {
  const { table, queries } = c;
  const mask = queries.length - 1;
  let hits = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    if (table.lookup(queries[i & mask]!) !== undefined) hits++;
  }
  const elapsed = Number(process.hrtime.bigint() - start);
  c.hits += hits; // keeps the lookups observable so the JIT cannot drop them
  c.lookups += iterations;
  return elapsed / iterations;
}

/** Measures RouteTable.lookup at each size and query set, interleaving them round by round after a warm-up. */
export function runRouteLookupBench(): LookupReport {
  const iterations = Math.round(envNumber('BENCH_LOOKUPS', 1_000_000));
  const rounds = Math.round(envNumber('BENCH_LOOKUP_ROUNDS', 7));
  const warmups = 2;
  const sets = Object.keys(QUERY_SETS) as QuerySet[];
  const cases = ROUTE_COUNTS.flatMap((count) => sets.map((set) => buildCase(count, set)));
  for (let round = 0; round < warmups + rounds; round++) {
    for (const c of cases) {
      const ns = timeRound(c, iterations);
      if (round >= warmups) c.samples.push(ns);
    }
  }
  const measurements: LookupMeasurement[] = cases.map((c) => ({ routes: c.routes, set: c.set, nsPerLookup: c.samples, hitRate: c.hits / c.lookups }));
  for (const m of measurements) {
    // Half the queries are built to hit: anything else means the table no longer routes as assumed here.
    if (Math.abs(m.hitRate - 0.5) > 0.01) throw new Error(`route lookup: ${m.routes} routes (${m.set}) hit ${m.hitRate * 100}% of lookups, expected 50%`);
  }
  const of = (routes: number, set: QuerySet): LookupMeasurement => measurements.find((m) => m.routes === routes && m.set === set)!;
  const smallest = ROUTE_COUNTS[0]!;
  const largest = ROUTE_COUNTS[ROUTE_COUNTS.length - 1]!;
  const ratioOf = (routes: number, set: QuerySet): number => median(of(routes, set).nsPerLookup) / median(of(smallest, set).nsPerLookup);
  const rows = ROUTE_COUNTS.map((routes) => [
    formatNumber(routes),
    ...sets.flatMap((set) => {
      const m = of(routes, set);
      return [
        formatNumber(median(m.nsPerLookup), 1),
        `${formatNumber(Math.min(...m.nsPerLookup), 1)}–${formatNumber(Math.max(...m.nsPerLookup), 1)}`,
        `${formatNumber(ratioOf(routes, set), 2)}×`,
      ];
    }),
  ]);
  const header = ['routes', ...sets.flatMap((set) => [`${set} ns/lookup`, 'min–max', `vs ${formatNumber(smallest)}`])];
  const ratio = { hot: ratioOf(largest, 'hot'), spread: ratioOf(largest, 'spread') };
  const text = [
    `Route lookup: RouteTable.lookup, ns per lookup (median of ${rounds} rounds of ${formatNumber(iterations)} lookups, ` +
      `after ${warmups} warm-up rounds; ¼ exact hits, ¼ wildcard hits, ½ misses).`,
    `hot = the same ${QUERY_SETS.hot} hostnames at every size (the algorithm); ` +
      `spread = ${formatNumber(QUERY_SETS.spread)} hostnames scattered over the table (adds CPU cache misses).`,
    '',
    markdownTable(header, rows),
    '',
    `Ratio ${formatNumber(largest)} / ${formatNumber(smallest)} routes: hot ${formatNumber(ratio.hot, 2)}×, ` +
      `spread ${formatNumber(ratio.spread, 2)}× (≈1 = lookup cost does not grow with the number of routes; ` +
      `the spread figure grows with the table's memory footprint, not with probes: two hash probes at every size).`,
  ].join('\n');
  return { measurements, ratio, text };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(runRouteLookupBench().text);
}
