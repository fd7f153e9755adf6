import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createClientKeys, openStore } from '../../src/control/index.js';
import { startGatewayProcess } from '../helpers/gateway-process.js';
import { httpGet } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

/** Debian's python3 with python3-zmq, python3-libnacl and python3-cbor (the libraries 20ft clients use); `.ci/run` installs them. */
const PYTHON = '/usr/bin/python3';
const CLIENT = join(import.meta.dirname, '..', 'interop', 'python_client.py');

describe('a Python client of the 20ft family', () => {
  it('authenticates, reads the offer, publishes, is refused, prepares a domain and unpublishes, with the CBOR types it expects', async () => {
    const member = await startUpstream((_req, res) => res.end('from python'));
    const gw = await startGatewayProcess(['--global-domain', 'test']);
    const keysDir = mkdtempSync(join(tmpdir(), 'tfgate-py-keys-'));
    const keys = createClientKeys(keysDir, '127.0.0.1', new Uint8Array(Buffer.from(gw.listening.publicKey, 'base64')));
    const store = openStore(gw.stateDir);
    store.addAccount(Buffer.from(keys.publicKey).toString('base64'), 'python');
    store.close();

    const child = spawn(PYTHON, [CLIENT, keysDir, '127.0.0.1', String(gw.listening.control), member.address], { stdio: ['pipe', 'pipe', 'pipe'] });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const steps = new Map<string, Record<string, unknown>>();
    const waiters = new Map<string, (step: Record<string, unknown>) => void>();
    createInterface({ input: child.stdout }).on('line', (line) => {
      const step = JSON.parse(line) as Record<string, unknown>;
      steps.set(step.step as string, step);
      waiters.get(step.step as string)?.(step);
    });
    const step = (name: string): Promise<Record<string, unknown>> =>
      steps.has(name)
        ? Promise.resolve(steps.get(name)!)
        : new Promise((resolve, reject) => {
            waiters.set(name, resolve);
            child.once('exit', (code) => reject(new Error(`the Python client exited (${code}) before "${name}": ${stderr.slice(-1500)}`)));
            setTimeout(() => reject(new Error(`no "${name}" step within 15 s: ${stderr.slice(-1500)}`)), 15_000).unref();
          });

    expect(await step('handshake')).toMatchObject({ parts: 3, types: ['bytes', 'bytes', 'bytes'] });
    expect(await step('offer')).toMatchObject({
      command: 'resource_offer',
      command_type: 'bytes',
      keys: ['domains', 'externals', 'nodes', 'volumes'],
      domains: ['test'],
      domain_types: ['str'],
    });
    expect(await step('publish')).toMatchObject({ command: '', uuid: 'uuid-publish-1', results: {} });
    expect((await httpGet(gw.listening.http, 'py.test')).body).toBe('from python');
    const refused = await step('refused');
    expect(refused).toMatchObject({ uuid: 'uuid-refused-1', exception_type: 'str' });
    expect(refused.exception).toContain('claim example.com');
    expect(await step('prepare')).toMatchObject({ token_type: 'bytes', token_length: 32 });

    child.stdin.write('\n');
    // A failed command sent without a uuid is told with a log message, never an exception reply.
    expect(await step('log')).toMatchObject({ command: 'log', uuid: '', error: true });
    for (let i = 0; i < 100 && (await httpGet(gw.listening.http, 'py.test')).status !== 404; i++) await new Promise((r) => setTimeout(r, 20));
    expect((await httpGet(gw.listening.http, 'py.test')).status).toBe(404);
  });
});
