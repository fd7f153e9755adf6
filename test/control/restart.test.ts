import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { STORE_FILE, openStore } from '../../src/control/index.js';
import { makeCertificate } from '../helpers/certs.js';
import { eventually, startTestControlPlane } from '../helpers/control-client.js';
import type { RawControlClient, TestControlPlane } from '../helpers/control-client.js';

const publish = (domain: string, subdomain: string, containers: unknown[], ssl: string | null = null) => ({ domain, subdomain, rewrite: null, ssl, containers });

function tempStateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-restart-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A control plane on `stateDir` with one session that published `a.test` (cluster id `cluster`), then closed. */
async function publishedThenClosed(stateDir: string): Promise<{ first: TestControlPlane; client: RawControlClient; cluster: Buffer }> {
  const first = await startTestControlPlane({ stateDir });
  const client = await first.session();
  const cluster = Buffer.from('0123456789abcdef');
  expect((await client.request('publish_web', publish('test', 'a.', ['10.0.0.1:80']), cluster)).params).toEqual({});
  expect((await client.request('add_to_cluster', { cluster, container: '10.0.0.2:80' })).params).toEqual({});
  client.close();
  await first.control.close();
  return { first, client, cluster };
}

describe('restart keeps routes', () => {
  it('serves the clusters of the previous run before any client connects, and a client resuming with its rid keeps them', async () => {
    const stateDir = tempStateDir();
    const { client, cluster } = await publishedThenClosed(stateDir);

    const second = await startTestControlPlane({ stateDir, sessionGraceMs: 400 });
    // start() resolved: the state holding the restored cluster is already installed.
    expect(second.membersOf('a.test')).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(second.control.sessions()).toMatchObject([{ rid: client.rid.toString('hex'), connected: false, fqdns: ['a.test'] }]);
    expect(second.logs.some((line) => line.msg === 'session restored')).toBe(true);

    const again = second.client(client.keys);
    await again.handshake(client.rid, false);
    expect(again.rid.equals(client.rid)).toBe(true);
    // Its own cluster, by the id it published it with; and no resource_offer came.
    expect((await again.request('remove_from_cluster', { cluster, container: '10.0.0.1:80' })).params).toEqual({});
    expect(again.others).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(second.membersOf('a.test')).toEqual(['10.0.0.2:80']);
    expect(second.control.sessions()).toMatchObject([{ connected: true, fqdns: ['a.test'] }]);
  });

  it('unpublishes a restored session that does not come back within the grace window, and forgets it', async () => {
    const stateDir = tempStateDir();
    await publishedThenClosed(stateDir);
    const second = await startTestControlPlane({ stateDir, sessionGraceMs: 300 });
    const started = Date.now();
    expect(second.membersOf('a.test')).toBeDefined();
    await eventually(() => second.membersOf('a.test') === undefined, 3000, 'the restored cluster to go');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(second.control.sessions()).toEqual([]);
    await second.control.close();

    const third = await startTestControlPlane({ stateDir });
    expect(third.membersOf('a.test')).toBeUndefined();
    expect(third.control.sessions()).toEqual([]);
  });

  it('another key presenting the rid gets a new session and cannot touch the restored clusters', async () => {
    const stateDir = tempStateDir();
    const { client, cluster } = await publishedThenClosed(stateDir);
    const second = await startTestControlPlane({ stateDir });
    const intruder = second.client();
    await intruder.handshake(client.rid, true);
    expect(intruder.rid.equals(client.rid)).toBe(false);
    expect((await intruder.request('unpublish_web', { cluster })).params.exception).toMatch(/belongs to another session/);
    expect((await intruder.request('publish_web', publish('test', 'a.', ['10.6.6.6:80']))).params.exception).toMatch(/published by another session/);
    expect(second.membersOf('a.test')).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(second.control.sessions().find((s) => s.rid === client.rid.toString('hex'))).toMatchObject({ connected: false });
  });

  it('keeps a session certificate (its key in a 0600 store in a 0700 directory) and serves it again', async () => {
    const stateDir = tempStateDir();
    const first = await startTestControlPlane({ stateDir });
    const leaf = makeCertificate({ names: ['shop.test'] });
    const client = await first.session();
    expect((await client.request('publish_web', publish('test', 'shop.', ['10.0.0.1:80'], leaf.certPem + leaf.keyPem))).params).toEqual({});
    const served = first.routing.snapshot().certificates?.['session:shop.test'];
    expect(served).toBeDefined();
    await first.control.close();
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(stateDir, STORE_FILE)).mode & 0o777).toBe(0o600);

    const second = await startTestControlPlane({ stateDir });
    expect(second.membersOf('shop.test')).toEqual(['10.0.0.1:80']);
    expect(second.routing.snapshot().certificates?.['session:shop.test']).toMatchObject({ source: 'session', certPem: served!.certPem, keyPem: served!.keyPem });
  });

  it('drops at start, with a log line, a stored cluster whose domain the account may no longer publish under', async () => {
    const stateDir = tempStateDir();
    const first = await startTestControlPlane({ stateDir });
    const client = await first.session();
    first.claimDomain(client.keys, 'example.com');
    expect((await client.request('publish_web', publish('example.com', 'www.', ['10.0.0.1:80']))).params).toEqual({});
    expect((await client.request('publish_web', publish('test', 'kept.', ['10.0.0.2:80']))).params).toEqual({});
    await first.control.close();
    // Released while the gateway was down (e.g. by another gateway sharing the store).
    const store = openStore(stateDir);
    expect(store.releaseDomain(Buffer.from(client.keys.publicKey).toString('base64'), 'example.com')).toBe(true);
    store.close();

    const second = await startTestControlPlane({ stateDir });
    expect(second.membersOf('www.example.com')).toBeUndefined();
    expect(second.membersOf('kept.test')).toEqual(['10.0.0.2:80']);
    expect(second.logs.find((line) => line.msg === 'stored cluster dropped at start')).toMatchObject({ fqdn: 'www.example.com' });
    const check = openStore(stateDir);
    expect(check.listClusters().map((c) => c.fqdn)).toEqual(['kept.test']);
    check.close();
  });

  it('records each change before its reply, and removes what is unpublished', async () => {
    const stateDir = tempStateDir();
    const gw = await startTestControlPlane({ stateDir });
    const client = await gw.session();
    const store = openStore(stateDir);
    onTestFinished(() => store.close());
    const cluster = Buffer.from('cluster-one');
    await client.request('publish_web', publish('test', 'x.', ['10.0.0.1:80']), cluster);
    expect(store.listClusters()).toMatchObject([{ rid: client.rid.toString('hex'), id: cluster.toString('hex'), fqdn: 'x.test', members: ['10.0.0.1:80'], certificate: null }]);
    await client.request('add_to_cluster', { cluster, container: '10.0.0.2:80' });
    expect(store.listClusters()[0]?.members).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    // Republishing the fqdn under a new id replaces the old row.
    await client.request('publish_web', publish('test', 'x.', ['10.0.0.3:80']));
    expect(store.listClusters()).toMatchObject([{ fqdn: 'x.test', members: ['10.0.0.3:80'] }]);
    const id = Buffer.from(store.listClusters()[0]!.id, 'hex');
    await client.request('unpublish_web', { cluster: id });
    expect(store.listClusters()).toEqual([]);
  });
});

describe('max control sessions per account', () => {
  it('refuses a new session over the limit as an authentication failure, logs why, and lets a held session resume', async () => {
    const gw = await startTestControlPlane({ maxSessionsPerAccount: 2, sessionGraceMs: 60_000 });
    const keys = gw.addAccount('limited');
    const a = await gw.session(keys);
    const b = await gw.session(keys);
    // Sessions count once their client has sent a sealed frame (proof of the secret key).
    for (const session of [a, b]) await session.request('list_domains', {});
    const third = gw.client(keys);
    const answer = await third.auth();
    const { uncbor } = await import('../helpers/control-client.js');
    expect(uncbor(answer) as unknown[]).toHaveLength(5);
    expect(gw.logs.find((line) => line.msg === 'handshake refused')?.reason).toMatch(/holds 2 sessions.*--max-sessions-per-account 2/);
    // Another account is not affected.
    await gw.session();

    // a's connection goes; a held session (it published something) still counts, and resuming it does not count twice.
    expect((await a.request('publish_web', publish('test', 'held.', ['10.0.0.1:80']))).params).toEqual({});
    a.close();
    await eventually(() => gw.control.sessions().some((s) => s.rid === a.rid.toString('hex') && !s.connected), 3000, 'the drop to be noticed');
    expect(uncbor(await gw.client(keys).auth()) as unknown[]).toHaveLength(5);
    const resumed = gw.client(keys);
    await resumed.handshake(a.rid, false);
    expect(resumed.rid.equals(a.rid)).toBe(true);
    expect(gw.control.sessions().filter((s) => s.account === 'limited')).toHaveLength(2);
  });

  it('does not hold a session that published nothing: it ends at once and stops counting', async () => {
    const gw = await startTestControlPlane({ maxSessionsPerAccount: 1, sessionGraceMs: 60_000 });
    const keys = gw.addAccount('cli runs');
    for (let i = 0; i < 3; i++) {
      const run = await gw.session(keys);
      expect((await run.request('list_domains', {})).params).toEqual({ domains: ['test'] });
      run.close();
      await eventually(() => gw.control.sessions().length === 0, 3000, 'the session to end');
    }
    expect(gw.logs.filter((line) => line.msg === 'session ended' && line.why === 'disconnected with nothing published')).toHaveLength(3);
    expect(gw.logs.filter((line) => line.msg === 'handshake refused')).toEqual([]);
  });

  it('is a serve flag with a default', async () => {
    const { loadConfig } = await import('../../src/config.js');
    expect(loadConfig([]).limits.maxSessionsPerAccount).toBe(64);
    expect(loadConfig(['--max-sessions-per-account', '3']).limits.maxSessionsPerAccount).toBe(3);
    expect(() => loadConfig(['--max-sessions-per-account', '0'])).toThrow(/--max-sessions-per-account: must be at least 1/);
  });
});
