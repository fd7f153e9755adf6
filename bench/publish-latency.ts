import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Cluster, Location, createClientKeys, openStore } from '../src/control/index.js';
import { envNumber } from './stats.js';

/**
 * Publish → routable latency: a control session publishes names one after another through a real
 * `tfgate serve --workers N` (its reply means "live in every worker"), and each name is requested at
 * once; with B background routes already in the table (static routes), so the cost of a change at
 * scale shows. Prints p50/p99 of the publish round trip and the gateway's memory; then the memory
 * with 10,000 and 100,000 routes published by control sessions (`BENCH_PUBLISHED`), what a location
 * really holds: sessions, their clusters and the store besides the routes.
 */

const CLI = join(fileURLToPath(new URL('.', import.meta.url)), '..', 'src', 'cli', 'tfgate.js');

interface Result {
  readonly workers: number;
  readonly background: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  /** Right after the last publish. */
  readonly busy: Memory;
  /** Once the processes gave back what the burst left behind (V8 shrinks an idle heap after a while). */
  readonly settled: Memory | undefined;
}

/** Memory of the gateway's processes: RSS counts pages they share (Node's code) in each; PSS once. */
interface Memory {
  readonly rssMb: number;
  readonly pssMb: number;
}

/** A `tfgate serve` child for one measurement, with an account whose client keys can publish under `test`. */
interface BenchGateway {
  readonly child: ChildProcess;
  readonly http: number;
  readonly memberAddress: string;
  connect(): Promise<Location>;
  close(): Promise<void>;
}

/** Starts a member and `tfgate serve --workers N` with `background` static routes to it. */
async function startBenchGateway(workers: number, background: number, extraArgs: readonly string[] = []): Promise<BenchGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-publish-bench-'));
  const member = createServer((_req, res) => res.end('ok'));
  member.listen(0, '127.0.0.1');
  await new Promise((resolve) => member.once('listening', resolve));
  const memberAddress = `127.0.0.1:${(member.address() as AddressInfo).port}`;
  const routes: Record<string, { members: string[] }> = {};
  for (let i = 0; i < background; i++) routes[`bg${i}.static.test`] = { members: [memberAddress] };
  writeFileSync(join(dir, 'routes.json'), JSON.stringify(routes));
  const child = spawn(process.execPath, [CLI, 'serve', '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0',
    '--state-dir', join(dir, 'state'), '--certs-dir', join(dir, 'certs'), '--routes', join(dir, 'routes.json'), '--global-domain', 'test', '--access-log=false', '--workers', String(workers),
    // Publishes back to back go past the default control rate limit (200 messages a second).
    '--control-rate', '100000', ...extraArgs], { stdio: ['ignore', 'pipe', 'inherit'] });
  const close = async (): Promise<void> => {
    member.close();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const listening = await new Promise<{ http: number; control: number; publicKey: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('tfgate did not listen within 60 s')), 60_000);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (!line.includes('"msg":"listening"')) return;
        clearTimeout(timer);
        resolve(JSON.parse(line) as { http: number; control: number; publicKey: string });
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`tfgate exited with ${code}`));
      });
    });
    const keys = createClientKeys(join(dir, 'keys'), 'bench');
    const store = openStore(join(dir, 'state'));
    store.addAccount(Buffer.from(keys.publicKey).toString('base64'), 'bench');
    store.close();
    const connect = (): Promise<Location> => Location.connect({ host: '127.0.0.1', port: listening.control, serverKey: listening.publicKey, keys });
    return { child, http: listening.http, memberAddress, connect, close };
  } catch (err) {
    await close();
    throw err;
  }
}

async function run(workers: number, background: number, publishes: number): Promise<Result> {
  const gateway = await startBenchGateway(workers, background);
  try {
    const location = await gateway.connect();
    const times: number[] = [];
    try {
      for (let i = 0; i < publishes; i++) {
        const fqdn = `p${i}.test`;
        const started = process.hrtime.bigint();
        await location.endpointFor(fqdn).publish(new Cluster([gateway.memberAddress]), fqdn);
        times.push(Number(process.hrtime.bigint() - started) / 1e6);
        const status = await get(gateway.http, fqdn);
        if (status !== 200) throw new Error(`${fqdn} answered ${status} right after its publish was acknowledged`);
      }
    } finally {
      await location.close();
    }
    const busy = treeMemory(gateway.child.pid!);
    // Settling takes most of a minute: measured where there is something to give back.
    const settled = background > 0 ? await settledMemory(gateway.child.pid!) : undefined;
    times.sort((a, b) => a - b);
    const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
    return { workers, background, p50: at(0.5), p99: at(0.99), max: times[times.length - 1]!, busy, settled };
  } finally {
    await gateway.close();
  }
}

/** Memory with `count` routes published by control sessions (what a location holds), not read from a file. */
interface PublishedResult {
  readonly workers: number;
  readonly count: number;
  readonly seconds: number;
  readonly busy: Memory;
  readonly settled: Memory;
}

const PUBLISHING_SESSIONS = 10;
const IN_FLIGHT_PER_SESSION = 32;

/**
 * Publishes `count` names from 10 sessions (32 publishes in flight each), all kept open, then reads
 * the memory of the gateway's processes, busy and settled. Sessions stay connected while it settles.
 */
async function runPublished(workers: number, count: number): Promise<PublishedResult> {
  const gateway = await startBenchGateway(workers, 0, ['--max-clusters-per-session', String(count)]);
  const locations: Location[] = [];
  try {
    for (let s = 0; s < PUBLISHING_SESSIONS; s++) locations.push(await gateway.connect());
    const started = Date.now();
    let next = 0;
    await Promise.all(
      locations.flatMap((location) =>
        Array.from({ length: IN_FLIGHT_PER_SESSION }, async () => {
          while (next < count) {
            const fqdn = `s${next++}.test`;
            await location.endpointFor(fqdn).publish(new Cluster([gateway.memberAddress]), fqdn);
          }
        }),
      ),
    );
    const seconds = (Date.now() - started) / 1000;
    const status = await get(gateway.http, `s${count - 1}.test`);
    if (status !== 200) throw new Error(`the last name published answered ${status}`);
    const busy = treeMemory(gateway.child.pid!);
    const settled = await settledMemory(gateway.child.pid!);
    return { workers, count, seconds, busy, settled };
  } finally {
    await Promise.allSettled(locations.map((location) => location.close()));
    await gateway.close();
  }
}

function get(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, headers: { host }, agent: false, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${host} within 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** RSS and PSS of a process and its children (the workers), from /proc. */
function treeMemory(pid: number): Memory {
  let children: number[] = [];
  try {
    children = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    // pgrep exits 1 when there are none (--workers 1)
  }
  let rssKb = 0;
  let pssKb = 0;
  for (const p of [pid, ...children]) {
    const rollup = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
    rssKb += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    pssKb += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
  }
  return { rssMb: rssKb / 1024, pssMb: pssKb / 1024 };
}

/** Memory once the idle gateway has shrunk its heaps: the lowest PSS sampled every 5 s over 90 s. */
async function settledMemory(pid: number): Promise<Memory> {
  let lowest = treeMemory(pid);
  for (let waited = 0; waited < SETTLE_MS; waited += 5_000) {
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const now = treeMemory(pid);
    if (now.pssMb < lowest.pssMb) lowest = now;
  }
  return lowest;
}

/** V8 gives back what a burst left behind on its own schedule: seen after 20–60 s here. */
const SETTLE_MS = 90_000;

/** Runs the publish-latency table. */
export async function publishLatencyBench(): Promise<string> {
  const publishes = Number(process.env.BENCH_PUBLISHES ?? 1000);
  const rows: Result[] = [];
  for (const [workers, background] of [[1, 0], [2, 0], [2, 10_000], [2, 100_000]] as const) rows.push(await run(workers, background, publishes));
  const lines = [
    `Publish → routable: ${publishes} publishes in a row by one SDK session; the reply means live in every worker, checked by a request`,
    'Memory of all processes (primary and workers): PSS counts the pages they share once, RSS in each; "busy" right after the last publish, "settled" the lowest within 90 s of idling (V8 shrinks idle heaps), measured with routes already there.',
    '',
    '| workers | routes already there | p50 ms | p99 ms | max ms | PSS busy | PSS settled | RSS settled |',
    '|--------:|---------------------:|-------:|-------:|-------:|---------:|------------:|------------:|',
    ...rows.map(
      (r) =>
        `| ${r.workers} | ${r.background.toLocaleString('en')} | ${r.p50.toFixed(1)} | ${r.p99.toFixed(1)} | ${r.max.toFixed(1)} | ${mb(r.busy.pssMb)} | ${mb(r.settled?.pssMb)} | ${mb(r.settled?.rssMb)} |`,
    ),
  ];
  const counts = (process.env.BENCH_PUBLISHED ?? '10000,100000').split(',').map(Number).filter((n) => n > 0);
  if (counts.length > 0) {
    const workers = envNumber('BENCH_WORKERS', cpus().length);
    const published: PublishedResult[] = [];
    for (const count of counts) published.push(await runPublished(workers, count));
    lines.push(
      '',
      `Routes published by control sessions (${PUBLISHING_SESSIONS} sessions, ${IN_FLIGHT_PER_SESSION} publishes in flight each, all kept open), then memory as above:`,
      '',
      '| workers | routes published | publishes/s | PSS busy | PSS settled | RSS settled |',
      '|--------:|-----------------:|------------:|---------:|------------:|------------:|',
      ...published.map(
        (r) => `| ${r.workers} | ${r.count.toLocaleString('en')} | ${Math.round(r.count / r.seconds).toLocaleString('en')} | ${mb(r.busy.pssMb)} | ${mb(r.settled.pssMb)} | ${mb(r.settled.rssMb)} |`,
      ),
    );
  }
  return lines.join('\n');
}

function mb(value: number | undefined): string {
  return value === undefined ? '–' : `${value.toFixed(0)} MB`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  publishLatencyBench().then(
    (table) => console.log(table),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
