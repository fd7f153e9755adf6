/**
 * `npm run bench`: the route lookup benchmark, then proxy throughput (direct to a member beside tfgate),
 * each printed as a markdown table. Durations: BENCH_DURATION_S, BENCH_ROUNDS (see proxy-throughput.ts).
 */
import { runProxyThroughputBench } from './proxy-throughput.js';
import { runRouteLookupBench } from './route-lookup.js';

async function main(): Promise<number> {
  const started = Date.now();
  console.log(`${runRouteLookupBench().text}\n`);
  try {
    console.log((await runProxyThroughputBench()).text);
  } catch (err) {
    console.error(`proxy throughput benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  console.log(`\nbench finished in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
