import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';

/** The compiled soak script (built by `npm test` before vitest runs), as `npm run soak` runs it. */
const SOAK = join(import.meta.dirname, '..', '..', 'dist', 'bench', 'soak.js');

describe('soak (short)', () => {
  it('10 s of mixed traffic, churn and a killed member: zero unexpected errors, bounded memory, clean exit', async () => {
    const child = spawn(process.execPath, [SOAK, '--duration', '10'], { stdio: ['ignore', 'pipe', 'pipe'] });
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    const line = out.split('\n').find((l) => l.startsWith('{"msg":"soak"'));
    expect(line, out).toBeDefined();
    const report = JSON.parse(line!) as { unexpected: Record<string, number>; requests: Record<string, number>; memoryOk: boolean; exitCode: number };
    expect(report.unexpected, out).toEqual({});
    expect(report.requests.http).toBeGreaterThan(100);
    expect(report.requests.https).toBeGreaterThan(50);
    expect(report.requests.websocketMessages).toBeGreaterThan(20);
    expect(report.requests.churnCycles).toBeGreaterThan(20);
    expect(report.memoryOk).toBe(true);
    expect(report.exitCode).toBe(0);
    expect(code, out).toBe(0);
  }, 60_000);
});
