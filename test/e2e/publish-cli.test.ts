import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it, onTestFinished } from 'vitest';
import { CLI, startGatewayProcess } from '../helpers/gateway-process.js';
import { httpGet } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

/** Runs `tfgate ARGS` to completion. */
function tfgate(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 15_000 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Starts `tfgate publish ARGS` and resolves once it printed its "live" line. */
async function startPublish(args: string[]) {
  const child = spawn(process.execPath, [CLI, 'publish', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const lines = createInterface({ input: child.stdout! });
  const live = new Promise<string>((resolve, reject) => {
    lines.on('line', (line) => {
      stdout += `${line}\n`;
      if (line.startsWith('live: ')) resolve(line);
    });
    child.once('exit', (code) => reject(new Error(`tfgate publish exited with ${code}: ${stderr}`)));
  });
  live.catch(() => undefined); // awaited only where the publish is expected to go live
  const exited = once(child, 'exit') as Promise<[number | null]>;
  return { child, live, exited, output: () => ({ stdout, stderr }) };
}

describe('tfgate keys, keygen, accounts and publish against a running gateway', () => {
  it('publishes until Ctrl-C, then unpublishes and exits 0', async () => {
    const gateway = await startGatewayProcess(['--global-domain', 'test']);
    const keysDir = mkdtempSync(join(tmpdir(), 'tfgate-keys-'));
    onTestFinished(() => rmSync(keysDir, { recursive: true, force: true }));
    const member = await startUpstream();
    onTestFinished(() => member.close());

    // tfgate keys prints the running gateway's key.
    const keys = tfgate('keys', '--state-dir', gateway.stateDir);
    expect(keys.status).toBe(0);
    expect(keys.stdout.trim()).toBe(gateway.listening.publicKey);

    // keygen writes the 20ft layout and prints the public key.
    const keygen = tfgate('keygen', '--keys-dir', keysDir, '--location', '127.0.0.1', '--server-key', gateway.listening.publicKey);
    expect(keygen.status).toBe(0);
    const publicKey = keygen.stdout.trim();
    expect(Buffer.from(publicKey, 'base64')).toHaveLength(32);
    expect(statSync(join(keysDir, '127.0.0.1')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(keysDir, '127.0.0.1.pub'), 'utf8').trim()).toBe(publicKey);
    expect(readFileSync(join(keysDir, '127.0.0.1.spub'), 'utf8').trim()).toBe(gateway.listening.publicKey);
    expect(tfgate('keygen', '--keys-dir', keysDir, '--location', '127.0.0.1').status).toBe(1); // never overwrites

    const location = `127.0.0.1:${gateway.listening.control}`;
    const publishArgs = ['--location', location, '--keys-dir', keysDir, '--fqdn', 'app.test', '--upstream', member.address];

    // Not yet an account: refused plainly, exit 1.
    const refused = await startPublish(publishArgs);
    const [refusedCode] = await refused.exited;
    expect(refusedCode).toBe(1);
    expect(refused.output().stderr).toMatch(/tfgate publish: Authentication failed/);

    // Authorised while the gateway runs.
    const added = tfgate('accounts', 'add', publicKey, '--name', 'e2e@example.com', '--state-dir', gateway.stateDir);
    expect(added.status).toBe(0);
    const list = tfgate('accounts', 'list', '--state-dir', gateway.stateDir, '--json');
    expect(JSON.parse(list.stdout)).toMatchObject([{ publicKey, name: 'e2e@example.com' }]);

    const publish = await startPublish(publishArgs);
    expect(await publish.live).toMatch(/^live: http:\/\/app\.test\/ -> 127\.0\.0\.1:\d+/);
    expect((await httpGet(gateway.listening.http, 'app.test')).body).toBe(`hello from ${member.port}`);

    // A gateway error is printed plainly with exit 1 (the name is taken by the first session).
    const taken = await startPublish(publishArgs);
    const [takenCode] = await taken.exited;
    expect(takenCode).toBe(1);
    expect(taken.output().stderr).toContain('tfgate publish: app.test is published by another session');

    publish.child.kill('SIGINT');
    const [code] = await publish.exited;
    expect(code).toBe(0);
    expect(publish.output().stdout).toContain('unpublished app.test');
    expect((await httpGet(gateway.listening.http, 'app.test')).status).toBe(404);

    // SIGTERM works the same way.
    const again = await startPublish(publishArgs);
    await again.live;
    expect((await httpGet(gateway.listening.http, 'app.test')).status).toBe(200);
    again.child.kill('SIGTERM');
    expect((await again.exited)[0]).toBe(0);
    expect((await httpGet(gateway.listening.http, 'app.test')).status).toBe(404);

    expect(tfgate('accounts', 'remove', publicKey, '--state-dir', gateway.stateDir).status).toBe(0);
    expect(JSON.parse(tfgate('accounts', 'list', '--state-dir', gateway.stateDir, '--json').stdout)).toEqual([]);
    expect(await gateway.stop()).toBe(0);
  }, 60_000);
});
