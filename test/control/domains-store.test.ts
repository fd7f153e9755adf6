import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { STORE_FILE, openStore } from '../../src/control/index.js';
import { b64, eventually, startTestControlPlane } from '../helpers/control-client.js';

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-store-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('domain claims in the store', () => {
  it('migrates a store written before claims existed (user_version 1), keeping its accounts', () => {
    const dir = tempDir();
    const old = new Database(join(dir, STORE_FILE));
    old.exec(`CREATE TABLE accounts (public_key TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL DEFAULT '', added_at INTEGER NOT NULL) STRICT`);
    old.prepare('INSERT INTO accounts VALUES (?, ?, ?)').run('a-key', 'a', 1);
    old.pragma('user_version = 1');
    old.close();

    const store = openStore(dir);
    onTestFinished(() => store.close());
    expect(store.findAccount('a-key')).toMatchObject({ name: 'a' });
    expect(store.claimDomain('a-key', 'example.com')).toMatchObject({ ok: true, claim: { domain: 'example.com', owner: 'a-key', global: false } });
    const check = new Database(join(dir, STORE_FILE), { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(3); // 2: claims, 3: published clusters
    expect(store.listClusters()).toEqual([]);
    check.close();
  });

  it('two connections (two gateway processes) claiming overlapping names: the first wins, the second sees the conflict', () => {
    const dir = tempDir();
    const one = openStore(dir);
    const two = openStore(dir);
    onTestFinished(() => {
      one.close();
      two.close();
    });
    expect(one.claimDomain('a', 'example.com').ok).toBe(true);
    expect(two.claimDomain('b', 'www.example.com')).toMatchObject({ ok: false, conflict: { domain: 'example.com', owner: 'a' } });
    expect(two.claimDomain('b', 'com')).toMatchObject({ ok: false, conflict: { domain: 'example.com' } });
    // Names that only look alike are not under it ('_' is not a pattern here).
    expect(two.claimDomain('b', 'myexample.com').ok).toBe(true);
    expect(two.claimDomain('b', 'ex_mple.com').ok).toBe(true);
    expect(one.claimDomain('a', 'examplexcom').ok).toBe(true);
    // The same account may claim inside its own domain; a repeated claim keeps the global flag.
    expect(one.claimDomain('a', 'eu.example.com').ok).toBe(true);
    expect(one.setDomainGlobal('a', 'example.com', true)).toBe(true);
    expect(one.claimDomain('a', 'example.com')).toMatchObject({ ok: true, claim: { global: true } });
    expect(two.listDomainClaims('a').map((c) => c.domain)).toEqual(['eu.example.com', 'example.com', 'examplexcom']);
    expect(two.setDomainGlobal('b', 'example.com', false)).toBe(false);
    expect(two.releaseDomain('b', 'example.com')).toBe(false);
    // Removing an account drops its claims and tokens.
    expect(one.putDomainToken({ owner: 'a', domain: 'example.org', token: 't', expiresAt: Date.now() + 1000 }, 100)).toEqual({ ok: true });
    one.removeAccount('a');
    expect(two.listDomainClaims('a')).toEqual([]);
    expect(two.findDomainToken('a', 'example.org')).toBeUndefined();
  });

  it('covering claims are the claims on a name and its parents, topmost first; never names under it or look-alikes', () => {
    const store = openStore(tempDir());
    onTestFinished(() => store.close());
    for (const [owner, domain] of [
      ['a', 'example.com'],
      ['a', 'b.example.com'],
      ['a', 'deep.a.b.example.com'],
      ['b', 'myexample.com'],
      ['b', 'ex_mple.com'],
      ['b', 'example.org'],
    ] as const) {
      expect(store.claimDomain(owner, domain).ok).toBe(true);
    }
    const covering = (name: string) => store.coveringClaims(name).map((claim) => claim.domain);
    expect(covering('a.b.example.com')).toEqual(['example.com', 'b.example.com']);
    expect(covering('b.example.com')).toEqual(['example.com', 'b.example.com']);
    expect(covering('example.com')).toEqual(['example.com']);
    expect(covering('com')).toEqual([]);
    expect(covering('exa.mple.com')).toEqual([]);
    expect(covering('x.example.org')).toEqual(['example.org']);
    expect(store.coveringClaims('www.example.org')).toMatchObject([{ domain: 'example.org', owner: 'b', global: false }]);
    // The same as the full overlap query keeps for the name and its parents, whatever the number of labels.
    for (const name of ['a.b.example.com', 'x.y.z.deep.a.b.example.com', 'www.myexample.com', 'q.ex_mple.com', 'exa_ple.com']) {
      const atOrAbove = store.overlappingClaims(name).filter((claim) => name === claim.domain || name.endsWith(`.${claim.domain}`));
      expect(store.coveringClaims(name)).toEqual(atOrAbove);
    }
  });

  it('a claim released by another process: the running gateway unpublishes the names no longer permitted', async () => {
    const gw = await startTestControlPlane();
    const keys = gw.addAccount();
    gw.claimDomain(keys, 'example.com');
    const client = await gw.session(keys);
    const reply = await client.request('publish_web', { domain: 'example.com', subdomain: 'www.', rewrite: null, ssl: null, containers: ['10.0.0.1:80'] });
    expect(reply.params).toEqual({});
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.1:80']);

    const other = openStore(gw.stateDir);
    onTestFinished(() => other.close());
    expect(other.releaseDomain(b64(keys.publicKey), 'example.com')).toBe(true);
    await eventually(() => gw.membersOf('www.example.com') === undefined, 5000, 'the released name to be unpublished');
    expect((await client.receive()).params).toMatchObject({ error: true, log: 'www.example.com was unpublished: its domain claim changed' });
  });
});
