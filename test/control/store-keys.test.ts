import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import {
  createClientKeys,
  encodeKey,
  loadOrCreateGatewayKeys,
  openStore,
  readClientKeys,
  readServerKey,
} from '../../src/control/index.js';
import { NonceMemory } from '../../src/control/sessions.js';

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-store-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('control store', () => {
  it('adds, renames, lists and removes accounts, and persists them', () => {
    const dir = tempDir();
    let clock = 1000;
    const store = openStore(dir, { now: () => clock++ });
    expect(store.listAccounts()).toEqual([]);
    store.addAccount('a', 'alice');
    store.addAccount('b', 'bob');
    expect(store.addAccount('a', 'alice@example.com')).toEqual({ publicKey: 'a', name: 'alice@example.com', addedAt: 1000 });
    expect(store.listAccounts().map((a) => a.publicKey)).toEqual(['a', 'b']);
    expect(store.removeAccount('b')).toBe(true);
    expect(store.removeAccount('b')).toBe(false);
    store.close();
    store.close();
    const reopened = openStore(dir);
    onTestFinished(() => reopened.close());
    expect(reopened.listAccounts()).toEqual([{ publicKey: 'a', name: 'alice@example.com', addedAt: 1000 }]);
  });

  it("tells a watcher about another connection's changes, not about its own", async () => {
    const dir = tempDir();
    const gateway = openStore(dir);
    const cli = openStore(dir);
    onTestFinished(() => {
      gateway.close();
      cli.close();
    });
    let calls = 0;
    const stop = gateway.watch(() => calls++, 20);
    gateway.addAccount('own', '');
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(calls).toBe(0);
    cli.addAccount('other', '');
    const deadline = Date.now() + 2000;
    while (calls === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(calls).toBe(1);
    expect(gateway.findAccount('other')).toBeDefined();
    stop();
  });
});

describe('control keys', () => {
  it('creates the gateway pair once (secret 0600) and reuses it', () => {
    const dir = join(tempDir(), 'state');
    const first = loadOrCreateGatewayKeys(dir);
    const second = loadOrCreateGatewayKeys(dir);
    expect(encodeKey(second.publicKey)).toBe(encodeKey(first.publicKey));
    expect(statSync(join(dir, 'gateway.key')).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('writes and reads client keys in the 20ft layout', () => {
    const dir = join(tempDir(), '.20ft');
    const server = loadOrCreateGatewayKeys(join(dir, '..', 'state'));
    const pair = createClientKeys(dir, 'gw.example.com', server.publicKey);
    expect(readFileSync(join(dir, 'gw.example.com'), 'utf8').trim()).toBe(encodeKey(pair.secretKey));
    expect(readFileSync(join(dir, 'gw.example.com.pub'), 'utf8').trim()).toBe(encodeKey(pair.publicKey));
    expect(statSync(join(dir, 'gw.example.com')).mode & 0o777).toBe(0o600);
    expect(encodeKey(readClientKeys(dir, 'gw.example.com').publicKey)).toBe(encodeKey(pair.publicKey));
    expect(encodeKey(readServerKey(dir, 'gw.example.com')!)).toBe(encodeKey(server.publicKey));
    expect(() => createClientKeys(dir, 'gw.example.com')).toThrow(/already exists/);
    expect(() => readClientKeys(dir, 'other')).toThrow(/tfgate keygen/);
    expect(() => createClientKeys(dir, '../escape')).toThrow(/cannot name key files/);
  });
});

describe('nonce memory', () => {
  it('remembers at least the last `size` nonces, in bounded memory', () => {
    const memory = new NonceMemory(3);
    for (const n of ['a', 'b', 'c', 'd']) expect(memory.firstUse(n)).toBe(true);
    for (const n of ['b', 'c', 'd']) expect(memory.firstUse(n)).toBe(false);
    for (const n of ['e', 'f', 'g', 'h']) memory.firstUse(n);
    expect(memory.firstUse('a')).toBe(true);
  });
});
