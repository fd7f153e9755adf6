import { execFileSync, spawn } from 'node:child_process';
import { constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { CLI } from '../helpers/gateway-process.js';

/** Every listener on 127.0.0.1, any free port; later flags win. */
const FREE = ['--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0'];

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs `tfgate ARGS` to its end (killed after `timeoutMs`): exit code or signal, and its output. */
function tfgate(args: string[], timeoutMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** A port held busy on 127.0.0.1 for the rest of the test. */
async function busyPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  onTestFinished(() => void server.close());
  return (server.address() as AddressInfo).port;
}

describe('tfgate serve: a listener or directory it cannot use', () => {
  it.each([
    ['--http', 1],
    ['--http', 2],
    ['--https', 2],
    ['--control', 1],
    ['--admin', 1],
  ] as const)('names %s on a port in use (--workers %i), exits 1', async (flag, workers) => {
    const port = await busyPort();
    const state = tempDir('tfgate-state-');
    const result = await tfgate(['serve', ...FREE, flag, `127.0.0.1:${port}`, '--workers', String(workers), '--state-dir', state, '--certs-dir', join(state, 'certs')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tfgate serve: ${flag} 127.0.0.1:${port}: address already in use\n`);
  });

  it.each([1, 2])('names --http given as a bare port (every interface) in use (--workers %i)', async (workers) => {
    // Held on 127.0.0.1 only: binding every interface on that port fails as well (and binds nothing).
    const port = await busyPort();
    const state = tempDir('tfgate-state-');
    const result = await tfgate(['serve', ...FREE, '--http', String(port), '--workers', String(workers), '--state-dir', state, '--certs-dir', join(state, 'certs')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tfgate serve: --http ${port}: address already in use\n`);
  });

  it.each([1, 2])('names --http on a host that does not resolve (--workers %i)', async (workers) => {
    const state = tempDir('tfgate-state-');
    const result = await tfgate(['serve', ...FREE, '--http', '0.0.0.0.1:0', '--workers', String(workers), '--state-dir', state, '--certs-dir', join(state, 'certs')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^tfgate serve: --http 0\.0\.0\.0\.1:0: [^\n]+\n$/);
  });

  it('names --state-dir when it is a file', async () => {
    const dir = tempDir('tfgate-state-');
    const file = join(dir, 'state');
    writeFileSync(file, '');
    const result = await tfgate(['serve', ...FREE, '--workers', '1', '--state-dir', file, '--certs-dir', join(dir, 'certs')]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tfgate serve: --state-dir ${file}: exists and is not a directory\n`);
  });

  it('names --certs-dir when a parent of it is a file', async () => {
    const dir = tempDir('tfgate-state-');
    writeFileSync(join(dir, 'file'), '');
    const certs = join(dir, 'file', 'certs');
    const result = await tfgate(['serve', ...FREE, '--workers', '1', '--state-dir', join(dir, 'state'), '--certs-dir', certs]);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`tfgate serve: --certs-dir ${certs}: ${join(dir, 'file')}: exists and is not a directory\n`);
  });

  it('fails at once on a state dir under /proc, where a recursive mkdir would spin', async () => {
    const dir = tempDir('tfgate-state-');
    const result = await tfgate(['serve', ...FREE, '--workers', '1', '--state-dir', '/proc/1/tfgate-state', '--certs-dir', join(dir, 'certs')], 8_000);
    expect(result.signal).toBeNull();
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('tfgate serve: --state-dir /proc/1/tfgate-state: cannot be created: /proc/1 takes no new directories (a virtual file system such as /proc?)\n');
  });
});

describe('tfgate serve: stop signals during start-up', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('%s stops a start-up step that never ends, saying so', async (signal) => {
    // A FIFO as the routes file: reading it waits for a writer, in libuv's thread pool, for ever.
    const dir = tempDir('tfgate-state-');
    const fifo = join(dir, 'routes.json');
    execFileSync('mkfifo', [fifo]);
    const child = spawn(process.execPath, [CLI, 'serve', ...FREE, '--workers', '1', '--routes', fifo, '--state-dir', join(dir, 'state'), '--certs-dir', join(dir, 'certs')], { stdio: ['ignore', 'ignore', 'pipe'] });
    onTestFinished(() => void child.kill('SIGKILL'));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const closed = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (code, sig) => resolve([code, sig])));
    // Once the gateway has the FIFO open it is inside start-up (its signal handlers are installed): the
    // writer's open succeeds from then on. Held open, without a byte written, the read never ends.
    const writer = await openWhenRead(fifo, 8_000);
    onTestFinished(() => writer.close());
    child.kill(signal);
    const [code, got] = await closed;
    expect({ code, signal: got }).toEqual({ code: null, signal });
    expect(stderr).toBe(`tfgate serve: stopped by ${signal} during start-up\n`);
  });
});

describe('tfgate serve: flag hints', () => {
  it('says how to give a boolean its value when it came as a separate argument', async () => {
    const result = await tfgate(['serve', '--access-log', 'false']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Unexpected argument 'false'");
    expect(result.stderr).toContain('booleans take --access-log=false');
  });
});

/** Opens `fifo` for writing once a reader has it open (non-blocking opens fail with ENXIO until then). */
async function openWhenRead(fifo: string, timeoutMs: number): Promise<FileHandle> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await open(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO' || Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
