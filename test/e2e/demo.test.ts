import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it, onTestFinished } from 'vitest';
import { CLI } from '../helpers/gateway-process.js';
import { httpGet, httpRequest } from '../helpers/http.js';

describe('tfgate demo', () => {
  it('runs a gateway, two members and a publishing session, prints how to try it, and stops on Ctrl-C', async () => {
    const child = spawn(process.execPath, [CLI, 'demo'], { stdio: ['ignore', 'pipe', 'pipe'] });
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const ready = new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
        if (stdout.includes('Ctrl-C stops')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`tfgate demo exited with ${code}: ${stderr}`)));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    onTestFinished(() => clearTimeout(timer));
    await ready;

    const curl = /curl -H 'Host: demo\.localhost' http:\/\/127\.0\.0\.1:(\d+)\//.exec(stdout);
    const dashboard = /Dashboard: +http:\/\/127\.0\.0\.1:(\d+)\//.exec(stdout);
    expect(curl, stdout).not.toBeNull();
    expect(dashboard, stdout).not.toBeNull();
    const httpPort = Number(curl![1]);
    const adminPort = Number(dashboard![1]);

    const bodies = [];
    for (let i = 0; i < 4; i++) {
      const res = await httpGet(httpPort, 'demo.localhost');
      expect(res.status).toBe(200);
      bodies.push(res.body);
    }
    expect(bodies.some((body) => body.startsWith('Hello from demo member A'))).toBe(true);
    expect(bodies.some((body) => body.startsWith('Hello from demo member B'))).toBe(true);

    const page = await httpRequest(adminPort, { host: 'localhost', path: '/' });
    expect(page.body).toContain('<title>tfgate</title>');
    const status = JSON.parse((await httpRequest(adminPort, { host: 'localhost', path: '/status' })).body);
    expect(status.sessions).toMatchObject([{ account: 'demo', fqdns: ['demo.localhost'] }]);
    expect(status.routes[0].members).toHaveLength(2);

    const exited = once(child, 'exit') as Promise<[number | null]>;
    child.kill('SIGINT');
    const [code] = await exited;
    expect(code).toBe(0);
    expect(stdout).toContain('stopped');
    // Everything is gone: the gateway's port no longer answers.
    await expect(httpGet(httpPort, 'demo.localhost')).rejects.toThrow(/ECONNREFUSED/);
  });
});
