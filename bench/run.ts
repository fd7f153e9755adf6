/**
 * `npm run bench`: the route lookup benchmark, then proxy throughput (direct, tfgate, the naive baseline and
 * the peer proxies on PATH), printed as markdown and written to bench/results/latest.md. Knobs: the BENCH_*
 * variables documented in the README's benchmark section.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, release } from 'node:os';
import { firstLine } from './peers.js';
import { onPath } from './load-generator.js';
import { runProxyThroughputBench } from './proxy-throughput.js';
import { publishLatencyBench } from './publish-latency.js';
import { runRouteLookupBench } from './route-lookup.js';

/** Date, machine, Node, OpenSSL and wrk, so a table is never read without where it came from. */
function machineLine(): string {
  const cpu = cpus();
  const wrk = onPath('wrk');
  return [
    `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} CPUs, Linux ${release()};`,
    `Node ${process.version} (OpenSSL ${process.versions.openssl}); ${wrk ? firstLine(wrk, ['-v']).replace(/ Copyright.*$/, '') : 'wrk not on PATH'}.`,
    'Load generator, proxies and members share these CPUs: figures vary from run to run and machine to machine; compare ratios within one run.',
  ].join(' ');
}

async function main(): Promise<number> {
  const started = Date.now();
  const sections = [`# tfgate benchmark\n\n${machineLine()}`];
  console.log(`${sections[0]}\n`);
  const lookup = runRouteLookupBench().text;
  console.log(`${lookup}\n`);
  sections.push(`## Route lookup\n\n${lookup}`);
  let code = 0;
  try {
    const throughput = (await runProxyThroughputBench()).text;
    console.log(throughput);
    sections.push(`## Proxy throughput\n\n${throughput}`);
  } catch (err) {
    console.error(`proxy throughput benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  try {
    const publish = await publishLatencyBench();
    console.log(`\n${publish}`);
    sections.push(`## Publish → routable\n\n${publish}`);
  } catch (err) {
    console.error(`publish latency benchmark failed: ${err instanceof Error ? err.message : String(err)}`);
    code = 1;
  }
  const results = new URL('../../bench/results/', import.meta.url);
  await mkdir(results, { recursive: true });
  await writeFile(new URL('latest.md', results), `${sections.join('\n\n')}\n`);
  console.log(`\nbench finished in ${((Date.now() - started) / 1000).toFixed(0)} s; written to bench/results/latest.md`);
  return code;
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
