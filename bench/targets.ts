import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_HOST } from './bench-certificate.js';
import type { BenchCertificate } from './bench-certificate.js';
import { findPeers } from './peers.js';
import type { FoundPeer } from './peers.js';
import { freePort, startGateway, startServer } from './processes.js';
import type { ChildSet, Upstream } from './processes.js';

/**
 * What a target is, for ratios: the ceiling, tfgate itself, the floor of tfgate's own forwarding stack
 * (reference), the naive baseline, or a peer proxy. Only peers count as peers.
 */
export type TargetKind = 'direct' | 'tfgate' | 'reference' | 'baseline' | 'peer';

/** One thing the load generators are pointed at: its HTTP and HTTPS ports and the process tree charged for its CPU. */
export interface Target {
  readonly name: string;
  readonly kind: TargetKind;
  readonly version: string;
  /** Worker processes/threads it runs with; absent for direct. */
  readonly workers?: number;
  readonly pid: number;
  readonly httpPort: number;
  readonly httpsPort: number;
}

/** A target that could not be started or checked, and why. */
export interface FailedTarget {
  readonly name: string;
  readonly reason: string;
}

/** Everything the targets share: the temp dir, the two members, the certificate and the worker count. */
export interface TargetSetup {
  readonly dir: string;
  readonly members: readonly [Upstream, Upstream];
  readonly certificate: BenchCertificate;
  readonly workers: number;
  readonly tfgateVersion: string;
}

async function tfgate(children: ChildSet, s: TargetSetup, workers: number): Promise<Target> {
  const dir = join(s.dir, `tfgate-${workers}`);
  const certsDir = join(dir, 'certs');
  await mkdir(certsDir, { recursive: true, mode: 0o700 });
  await copyFile(s.certificate.pemFile, join(certsDir, `${BENCH_HOST}.pem`));
  const routes = join(dir, 'routes.json');
  await writeFile(routes, JSON.stringify({ [BENCH_HOST]: { members: s.members.map((m) => `127.0.0.1:${m.port}`) } }));
  const cli = process.env['BENCH_TFGATE_CLI'] ?? fileURLToPath(new URL('../src/cli/tfgate.js', import.meta.url));
  const args = ['--http', '0', '--https', '0', '--admin', '127.0.0.1:0', '--control', '0', '--state-dir', join(dir, 'state'), '--certs-dir', certsDir];
  args.push('--routes', routes, '--access-log=false', '--redirect-http=false', '--workers', String(workers));
  const g = await startGateway(children, cli, args);
  return { name: `tfgate --workers ${workers}`, kind: 'tfgate', version: s.tfgateVersion, workers, pid: g.pid, httpPort: g.http, httpsPort: g.https };
}

/** Starts one of the bench's own Node forwarders (CLI: HTTP_PORT HTTPS_PORT PEM_FILE WORKERS MEMBER_PORT...) with N workers. */
async function benchScript(children: ChildSet, s: TargetSetup, file: string, name: string): Promise<{ pid: number; httpPort: number; httpsPort: number }> {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const script = fileURLToPath(new URL(file, import.meta.url));
  const args = [script, String(httpPort), String(httpsPort), s.certificate.pemFile, String(s.workers), ...s.members.map((m) => String(m.port))];
  const pid = await startServer(children, { name, command: process.execPath, args, ports: [httpPort, httpsPort] });
  return { pid, httpPort, httpsPort };
}

async function bareForwarder(children: ChildSet, s: TargetSetup): Promise<Target> {
  const started = await benchScript(children, s, './bare-forwarder.js', 'bare undici dispatch');
  return { name: `bare undici dispatch ×${s.workers}`, kind: 'reference', version: `node:http + undici Pool.dispatch(), Node ${process.version}`, workers: s.workers, ...started };
}

async function naive(children: ChildSet, s: TargetSetup): Promise<Target> {
  const started = await benchScript(children, s, './naive-proxy.js', 'naive http-proxy');
  return { name: `naive http-proxy ×${s.workers}`, kind: 'baseline', version: `http-proxy, Node ${process.version}`, workers: s.workers, ...started };
}

async function peer(children: ChildSet, s: TargetSetup, found: FoundPeer): Promise<Target> {
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const setup = { dir: s.dir, httpPort, httpsPort, members: s.members.map((m) => m.port), workers: s.workers, certificate: s.certificate };
  const { args, env } = await found.peer.configure(setup);
  const pid = await startServer(children, { name: found.peer.name, command: found.path, args, ports: [httpPort, httpsPort], ...(env ? { env } : {}) });
  return { name: found.peer.name, kind: 'peer', version: found.version, workers: s.workers, pid, httpPort, httpsPort };
}

/**
 * Starts every target in report order: direct to member 1 (already running), tfgate with 1 and N workers,
 * the bare undici forwarder (tfgate's floor), the naive baseline, then each peer on PATH. One that fails to
 * start is listed in `failed` with the reason and the others still run; peers not on PATH are listed in `missing`.
 */
export async function startTargets(children: ChildSet, s: TargetSetup): Promise<{ targets: Target[]; failed: FailedTarget[]; missing: string[] }> {
  const member = s.members[0];
  const targets: Target[] = [
    { name: 'direct to a member', kind: 'direct', version: `Node ${process.version} http/https`, pid: member.pid, httpPort: member.port, httpsPort: member.httpsPort ?? 0 },
  ];
  const failed: FailedTarget[] = [];
  const { found, missing } = findPeers();
  const starters: { name: string; start: () => Promise<Target> }[] = [
    { name: 'tfgate --workers 1', start: () => tfgate(children, s, 1) },
    ...(s.workers > 1 ? [{ name: `tfgate --workers ${s.workers}`, start: () => tfgate(children, s, s.workers) }] : []),
    { name: 'bare undici dispatch', start: () => bareForwarder(children, s) },
    { name: 'naive http-proxy', start: () => naive(children, s) },
    ...found.map((f) => ({ name: f.peer.name, start: () => peer(children, s, f) })),
  ];
  for (const starter of starters) {
    try {
      targets.push(await starter.start());
    } catch (err) {
      failed.push({ name: starter.name, reason: err instanceof Error ? err.message : String(err) });
    }
  }
  return { targets, failed, missing };
}
