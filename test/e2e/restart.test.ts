import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Cluster, Location, createClientKeys, openStore } from '../../src/control/index.js';
import type { KeyPair } from '../../src/control/index.js';
import { startGatewayProcess } from '../helpers/gateway-process.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { httpRequest } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';

/** The child processes of `pid` (the workers of a primary). */
function childPids(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A crash: SIGKILL to the primary and its workers at once; resolves when all of them are gone. */
async function crash(gw: GatewayProcess): Promise<void> {
  const pids = [gw.child.pid!, ...childPids(gw.child.pid!)];
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (pids.some(alive)) {
    if (Date.now() > deadline) throw new Error('the killed gateway processes did not go away');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function authorise(stateDir: string, name: string): KeyPair {
  const keys = createClientKeys(mkdtempSync(join(tmpdir(), 'tfgate-keys-')), 'local');
  const store = openStore(stateDir);
  store.addAccount(Buffer.from(keys.publicKey).toString('base64'), name);
  store.close();
  return keys;
}

/** Requests `host` in a loop until stopped, recording each status (or the connection error, before the listeners bind). */
function pollFrom(port: number, host: string): { stop(): Promise<{ at: number; status: number | string }[]> } {
  const seen: { at: number; status: number | string }[] = [];
  let running = true;
  const loop = (async () => {
    while (running && seen.length < 20_000) {
      const at = Date.now();
      try {
        seen.push({ at, status: (await httpRequest(port, { host, timeoutMs: 2000 })).status });
      } catch (err) {
        seen.push({ at, status: (err as NodeJS.ErrnoException).code ?? 'error' });
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return seen;
    },
  };
}

describe.each([1, 2])('tfgate serve --workers %i, killed and started again on the same state dir and ports', (workers) => {
  it('serves the published names from its first listening moment, keeps the session that resumes, and unpublishes the one that does not', async () => {
    const member = await startUpstream((_req, res) => res.end('still here'));
    const args = ['--workers', String(workers), '--global-domain', 'test', '--session-grace', '2s', '--access-log=false'];
    const first = await startGatewayProcess(args);
    const stateDir = first.stateDir;
    const { http, https, control, admin } = first.listening;

    const events: string[] = [];
    const keeper = await Location.connect({
      host: '127.0.0.1',
      port: control,
      serverKey: first.listening.publicKey,
      keys: authorise(stateDir, 'keeper'),
      onConnection: (event) => events.push(event),
    });
    onTestFinished(() => keeper.close());
    const kept = new Cluster([member.address]);
    await keeper.endpointFor('kept.test').publish(kept, 'kept.test');
    const rid = keeper.rid;
    const leaver = await Location.connect({ host: '127.0.0.1', port: control, serverKey: first.listening.publicKey, keys: authorise(stateDir, 'leaver') });
    await leaver.endpointFor('gone.test').publish(new Cluster([member.address]), 'gone.test');
    await leaver.close();
    expect((await httpRequest(http, { host: 'kept.test' })).status).toBe(200);

    await crash(first);
    const polling = pollFrom(http, 'kept.test');
    const second = await startGatewayProcess(
      [...args, '--http', `127.0.0.1:${http}`, '--https', `127.0.0.1:${https as number}`, '--control', `127.0.0.1:${control}`, '--admin', admin],
      { stateDir },
    );
    const listeningAt = Date.now();
    expect(second.listening).toMatchObject({ http, https, control, publicKey: first.listening.publicKey });
    expect((await httpRequest(http, { host: 'gone.test' })).status).toBe(200);
    expect(second.lines.filter((line) => line.msg === 'session restored')).toHaveLength(2);

    // The SDK session comes back with its rid and keeps its cluster: no republish.
    const deadline = Date.now() + 10_000;
    while (!events.includes('resumed') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(events).toEqual(['lost', 'resumed']);
    expect(keeper.rid).toBe(rid);
    const another = await startUpstream((_req, res) => res.end('still here'));
    await kept.add(another.address); // its own cluster, by its old id

    // The other session did not come back: its name goes when the grace window (from start-up) ends.
    const gone = await second.waitForLine((line) => line.msg === 'session ended' && line.why === 'grace window over', 10_000);
    expect(gone).toMatchObject({ account: 'leaver' });
    expect((await httpRequest(http, { host: 'gone.test' })).status).toBe(404);

    const seen = await polling.stop();
    const answered = seen.filter((s) => typeof s.status === 'number');
    expect(answered.filter((s) => s.status !== 200)).toEqual([]);
    expect(seen.filter((s) => s.at >= listeningAt).every((s) => s.status === 200)).toBe(true);
    expect(answered.length).toBeGreaterThan(10);
    expect(events).toEqual(['lost', 'resumed']);
    expect(await second.stop()).toBe(0);
  });
});
