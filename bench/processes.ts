import { fork, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';

/**
 * Every process the benchmark starts (and its temp directories), so that all of them are ended on every
 * way out: normal close, an error (`close()` in a finally), Ctrl-C/SIGTERM and process exit (`kill -9`
 * of each process group).
 */
export class ChildSet {
  readonly #children = new Set<ChildProcess>();
  readonly #dirs = new Set<string>();
  readonly #onExit = (): void => this.killNow();
  readonly #onSignal = (signal: NodeJS.Signals): void => {
    this.killNow();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };

  constructor() {
    process.on('exit', this.#onExit);
    process.once('SIGINT', this.#onSignal);
    process.once('SIGTERM', this.#onSignal);
  }

  /** Tracks a child started with `detached: true` (its own process group, so its workers end with it). */
  add(child: ChildProcess): ChildProcess {
    this.#children.add(child);
    child.once('exit', () => this.#children.delete(child));
    return child;
  }

  /** Removes `dir` (recursively) on close or exit. */
  removeOnClose(dir: string): void {
    this.#dirs.add(dir);
  }

  /** SIGKILLs every remaining child's process group at once and removes the directories; synchronous, for exit paths. */
  killNow(): void {
    for (const child of this.#children) signalGroup(child, 'SIGKILL');
    this.#removeDirs();
  }

  #removeDirs(): void {
    for (const dir of this.#dirs) rmSync(dir, { recursive: true, force: true });
    this.#dirs.clear();
  }

  /** SIGTERMs every child, waits up to `graceMs` for them to exit, SIGKILLs what is left; idempotent. */
  async close(graceMs = 3000): Promise<void> {
    const waiting = [...this.#children].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      signalGroup(child, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    });
    await Promise.all(waiting);
    this.#removeDirs();
    process.off('exit', this.#onExit);
    process.off('SIGINT', this.#onSignal);
    process.off('SIGTERM', this.#onSignal);
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal); // not a group leader after all
    } catch {
      // already gone
    }
  }
}

/** A running benchmark upstream member. */
export interface Upstream {
  readonly pid: number;
  readonly port: number;
  /** Its HTTPS port when started with a TLS PEM file. */
  readonly httpsPort: number | undefined;
  readonly body: string;
}

/** Forks `dist/bench/upstream-server.js` in its own process and resolves once it listens (HTTPS too with `tlsPem`). */
export async function startUpstream(children: ChildSet, timeoutMs = 10_000, tlsPem?: string): Promise<Upstream> {
  const script = new URL('./upstream-server.js', import.meta.url);
  const env = tlsPem === undefined ? process.env : { ...process.env, BENCH_UPSTREAM_TLS: tlsPem };
  const child = children.add(fork(script, [], { detached: true, env, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  type Ready = { port: number; httpsPort: number | undefined; body: string };
  const ready = await withTimeout(
    new Promise<Ready>((resolve, reject) => {
      child.once('message', (message) => resolve(message as Ready));
      child.once('error', reject);
      child.once('exit', (code, signal) => reject(new Error(`bench upstream exited early (${signal ?? `code ${code}`})`)));
    }),
    timeoutMs,
    'bench upstream did not start',
  );
  return { pid: child.pid!, port: ready.port, httpsPort: ready.httpsPort, body: ready.body };
}

/** The `"listening"` record of a started gateway (design.md's run-time contract). */
export interface GatewayListening {
  readonly pid: number;
  readonly http: number;
  readonly https: number;
  readonly admin: string;
  readonly record: Readonly<Record<string, unknown>>;
}

/**
 * Starts `node <cli> serve ...args` in its own process group and resolves with its `"listening"` record;
 * rejects with the tail of its output if it exits or stays silent for `timeoutMs`. Keeps reading its
 * stdout afterwards so a full pipe never blocks it.
 */
export async function startGateway(children: ChildSet, cli: string, args: readonly string[], timeoutMs = 20_000): Promise<GatewayListening> {
  const child = children.add(spawn(process.execPath, [cli, 'serve', ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  const tail: string[] = [];
  const remember = (line: string): void => {
    tail.push(line);
    if (tail.length > 40) tail.shift();
  };
  createInterface({ input: child.stderr! }).on('line', remember);
  const stdout = createInterface({ input: child.stdout! });
  const listening = new Promise<GatewayListening>((resolve, reject) => {
    stdout.on('line', (line) => {
      remember(line);
      if (!line.includes('"listening"')) return;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record['msg'] === 'listening' && typeof record['http'] === 'number') {
          resolve({ pid: child.pid!, http: record['http'], https: Number(record['https']), admin: String(record['admin']), record });
        }
      } catch {
        // not JSON: keep waiting
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`exited (${signal ?? `code ${code}`})`)));
  });
  try {
    return await withTimeout(listening, timeoutMs, `no "listening" record within ${timeoutMs} ms`);
  } catch (err) {
    throw new Error(`tfgate did not start: ${(err as Error).message}\n  command: node ${cli} serve ${args.join(' ')}\n  last output:\n    ${tail.join('\n    ')}`);
  }
}

/** A port that was free a moment ago on 127.0.0.1, for servers that cannot report the port they bound. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => resolve(true)).once('error', () => resolve(false));
    socket.once('close', () => socket.destroy());
    socket.setTimeout(500, () => socket.destroy());
    socket.once('connect', () => socket.end());
  });
}

/** What {@link startServer} runs: a command that binds `ports` on 127.0.0.1 and stays in the foreground. */
export interface ServerCommand {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly ports: readonly number[];
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/**
 * Spawns a foreground server in its own process group and resolves with its pid once every port accepts
 * connections; rejects with the tail of its output if it exits first or `timeoutMs` passes (the caller's
 * ChildSet still ends it).
 */
export async function startServer(children: ChildSet, s: ServerCommand, timeoutMs = 15_000): Promise<number> {
  const child = children.add(spawn(s.command, [...s.args], { detached: true, cwd: s.cwd, env: s.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] }));
  const tail: string[] = [];
  const remember = (line: string): void => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
  };
  createInterface({ input: child.stdout! }).on('line', remember);
  createInterface({ input: child.stderr! }).on('line', remember);
  let exited: string | undefined;
  child.once('error', (err) => (exited = err.message));
  child.once('exit', (code, signal) => (exited = `exited (${signal ?? `code ${code}`})`));
  const deadline = Date.now() + timeoutMs;
  const pending = new Set(s.ports);
  while (pending.size > 0) {
    if (exited === undefined) for (const port of [...pending]) if (await accepts(port)) pending.delete(port);
    if (pending.size === 0) break;
    if (exited !== undefined || Date.now() > deadline) {
      const why = exited ?? `ports ${[...pending].join(', ')} not open within ${timeoutMs} ms`;
      throw new Error(`${s.name} did not start: ${why}\n  command: ${s.command} ${s.args.join(' ')}\n  last output:\n    ${tail.join('\n    ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return child.pid!;
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Linux's USER_HZ, the unit of /proc/PID/stat CPU times: 100 on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;

/**
 * User+system CPU time in ms of a process and all its descendants, from /proc (10 ms resolution);
 * undefined where /proc is not available. Only processes alive now count, which is all of them
 * while a benchmark runs.
 */
export function processTreeCpuMs(rootPid: number): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const name of entries) {
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'latin1');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' '); // fields from 3 (state) on
      stats.set(Number(name), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // exited while we looked
    }
  }
  if (!stats.has(rootPid)) return undefined;
  let ticks = 0;
  const tree = new Set([rootPid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, stat] of stats) {
      if (!tree.has(pid) && tree.has(stat.ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  for (const pid of tree) ticks += stats.get(pid)!.ticks;
  return (ticks * 1000) / TICKS_PER_SECOND;
}
