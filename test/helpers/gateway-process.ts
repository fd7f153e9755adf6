import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { onTestFinished } from 'vitest';

/** The compiled CLI, as `package.json` `bin.tfgate` names it (built by `npm test` before vitest runs). */
export const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli', 'tfgate.js');

/** The fields of the one `"msg":"listening"` line. */
export interface Listening {
  http: number;
  https: number;
  control: number;
  admin: string;
  publicKey: string;
  [field: string]: unknown;
}

/** A `tfgate serve` child process with its parsed JSON log lines. */
export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly listening: Listening;
  readonly stateDir: string;
  /** Every JSON line printed so far, parsed. */
  readonly lines: Record<string, unknown>[];
  /** Resolves with the first line (seen or still to come) that satisfies `match`, within `timeoutMs`. */
  waitForLine(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Everything printed on stderr so far. */
  stderr(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

/**
 * Starts `tfgate serve` on free ports (`--http 0 --control 0 --admin 127.0.0.1:0`, a temp state
 * dir unless `stateDir` is given) plus `args` (later flags win, so `args` may name fixed ports),
 * waits for its listening line, and kills it when the test ends (then removes the temp state dir).
 */
export async function startGatewayProcess(args: string[] = [], options: { timeoutMs?: number; stateDir?: string } = {}): Promise<GatewayProcess> {
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'tfgate-state-'));
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--state-dir', stateDir, '--certs-dir', join(stateDir, 'certs'), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // Never rejects: a child that failed to spawn has exited too.
  const exited = once(child, 'exit').catch(() => [null]) as Promise<[number | null]>;
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    // A state dir made here is this test's alone; one passed in belongs to the caller.
    if (options.stateDir === undefined) rmSync(stateDir, { recursive: true, force: true, maxRetries: 3 });
  });
  const lines: Record<string, unknown>[] = [];
  const waiters = new Set<{ match: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }>();
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    lines.push(line);
    for (const waiter of waiters) {
      if (waiter.match(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });

  const waitForLine = (match: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000): Promise<Record<string, unknown>> => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve: (line: Record<string, unknown>) => (clearTimeout(timer), resolve(line)) };
      const timer = setTimeout(() => {
        waiters.delete(waiter);
        reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`));
      }, timeoutMs);
      waiters.add(waiter);
      child.once('exit', (code) => {
        if (!waiters.has(waiter)) return;
        waiters.delete(waiter);
        clearTimeout(timer);
        reject(new Error(`tfgate exited with ${code} before the expected line; stderr: ${stderr.slice(-2000)}`));
      });
    });
  };

  const listening = (await waitForLine((line) => line.msg === 'listening', options.timeoutMs ?? 15_000)) as Listening;
  return {
    child,
    listening,
    stateDir,
    lines,
    waitForLine,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const [code] = await exited;
      return code;
    },
  };
}
