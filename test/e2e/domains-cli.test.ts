import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startDnsServer } from '../helpers/dns-server.js';
import { CLI, startGatewayProcess } from '../helpers/gateway-process.js';

interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `tfgate ARGS` to completion (asynchronously, so the test's own servers keep running). */
async function tfgate(...args: string[]): Promise<Outcome> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const [status] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  return { status, stdout, stderr };
}

describe('tfgate domains against a running gateway', () => {
  it('prepare prints the TXT record, claim proves it through the configured DNS server, then list, global, private and release; refusals exit 1 with the reason', async () => {
    const dns = await startDnsServer();
    const gateway = await startGatewayProcess(['--global-domain', 'test', '--dns-server', dns.address]);
    const location = `127.0.0.1:${gateway.listening.control}`;
    const account = async (name: string) => {
      const keysDir = mkdtempSync(join(tmpdir(), 'tfgate-keys-'));
      onTestFinished(() => rmSync(keysDir, { recursive: true, force: true }));
      const keygen = await tfgate('keygen', '--keys-dir', keysDir, '--location', '127.0.0.1', '--server-key', gateway.listening.publicKey);
      expect(keygen.status).toBe(0);
      expect((await tfgate('accounts', 'add', keygen.stdout.trim(), '--name', name, '--state-dir', gateway.stateDir)).status).toBe(0);
      return (...args: string[]) => tfgate('domains', ...args, '--location', location, '--keys-dir', keysDir);
    };
    const a = await account('a@example.com');
    const b = await account('b@example.com');

    const prepared = await a('prepare', 'Example.COM');
    expect(prepared.status).toBe(0);
    const match = /^tf-token\.example\.com TXT=([A-Za-z0-9]{32})\n$/.exec(prepared.stdout);
    expect(match, prepared.stdout + prepared.stderr).not.toBeNull();
    expect(prepared.stderr).toMatch(/then run: tfgate domains claim example\.com/);

    const early = await a('claim', 'example.com');
    expect(early.status).toBe(1);
    expect(early.stderr).toBe('tfgate domains claim: no TXT record tf-token.example.com found: add it with the token from prepare, then claim again\n');

    await dns.setTxt('tf-token.example.com', match![1]!);
    const claimed = await a('claim', 'example.com');
    expect(claimed).toMatchObject({ status: 0, stdout: 'claimed example.com: this account may publish under it\n' });
    expect((await a('list')).stdout).toBe('test\nexample.com\n');

    const taken = await b('prepare', 'www.example.com');
    expect(taken.status).toBe(1);
    expect(taken.stderr).toBe('tfgate domains prepare: www.example.com is under example.com, claimed by another account\n');
    expect((await b('list')).stdout).toBe('test\n');

    expect(await a('global', 'example.com')).toMatchObject({ status: 0, stdout: 'example.com is global: every account may publish under it\n' });
    expect((await b('list')).stdout).toBe('test\nexample.com\n');
    expect((await b('private', 'example.com')).stderr).toMatch(/example\.com is claimed by another account: only its owner can have it made private/);
    expect(await a('private', 'example.com')).toMatchObject({ status: 0, stdout: 'example.com is private: only this account may publish under it\n' });
    expect((await b('list')).stdout).toBe('test\n');

    expect(await a('release', 'example.com')).toMatchObject({ status: 0, stdout: 'released example.com\n' });
    const again = await a('release', 'example.com');
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/^tfgate domains release: example\.com is not claimed by this account/);
    const suffix = await a('prepare', 'co.uk');
    expect(suffix.status).toBe(1);
    expect(suffix.stderr).toMatch(/co\.uk is a public suffix/);
    expect((await a('list')).stdout).toBe('test\n');

    // Usage errors exit 2 and name the subcommands.
    const usage = await tfgate('domains', 'frobnicate', 'example.com', '--location', location);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/expected one of prepare, claim, release, global, private, list/);
    expect((await tfgate('domains', 'claim', '--location', location)).status).toBe(2);
    expect(gateway.lines.some((line) => line.msg === 'domain claimed' && line.domain === 'example.com')).toBe(true);
  });
});
