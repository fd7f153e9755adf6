import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/log.js';
import { AcmeStorage, CertManager, createSelfSignedCertificate } from '../../src/sni/index.js';
import type { CertificateIssuer, IssuedCertificate, StoredCertificate } from '../../src/sni/index.js';

type LogLine = Record<string, unknown>;

/** An issuer whose orders the test settles by hand. */
class HandIssuer implements CertificateIssuer {
  readonly pending: { fqdn: string; resolve: (issued: IssuedCertificate) => void; reject: (err: Error) => void }[] = [];
  readonly ordered: string[] = [];
  inFlight = 0;
  maxInFlight = 0;

  issue(fqdn: string): Promise<IssuedCertificate> {
    this.ordered.push(fqdn);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) => {
      const done = <T>(settle: (value: T) => void) => (value: T) => {
        this.inFlight--;
        settle(value);
      };
      this.pending.push({ fqdn, resolve: done(resolve), reject: done(reject) });
    });
  }

  async grant(fqdn: string, now = new Date()): Promise<void> {
    const index = this.pending.findIndex((p) => p.fqdn === fqdn);
    if (index === -1) throw new Error(`no pending order for ${fqdn}`);
    const [order] = this.pending.splice(index, 1);
    order!.resolve(await createSelfSignedCertificate([fqdn], 2, now));
  }

  close(): void {}
}

async function setup(options: { now?: () => number; retryMinMs?: number; retryMaxMs?: number; concurrency?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-certmanager-'));
  const storage = await AcmeStorage.open(join(dir, 'certs'), join(dir, 'state'));
  const issuer = new HandIssuer();
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  const changes: (readonly StoredCertificate[])[] = [];
  const manager = new CertManager({ issuer, storage, directory: 'https://ca.test/dir', log: createLogger('info', sink), onChange: (c) => changes.push(c), ...options });
  onTestFinished(() => {
    manager.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await manager.start();
  return { dir, issuer, manager, logs, changes };
}

const names = (...fqdns: string[]) => fqdns.map((fqdn) => ({ fqdn, hasSessionCertificate: false }));

async function until(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('CertManager', () => {
  it('orders each published name once, at most `concurrency` at a time', async () => {
    const { issuer, manager, changes } = await setup({ concurrency: 2 });
    const all = names('a.example.com', 'b.example.com', 'c.example.com', 'd.example.com');
    manager.setPublished(all);
    await until('two orders', () => issuer.ordered.length === 2);
    manager.setPublished(all); // republishing while orders run starts no second order
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(issuer.ordered).toHaveLength(2);
    while (issuer.ordered.length < 4 || issuer.pending.length > 0) {
      await until('an order to grant', () => issuer.pending.length > 0);
      await issuer.grant(issuer.pending[0]!.fqdn);
    }
    await until('four certificates', () => manager.certificates().length === 4);
    expect(issuer.maxInFlight).toBe(2);
    expect([...issuer.ordered].sort()).toEqual(all.map((n) => n.fqdn));
    expect(changes.at(-1)?.map((c) => c.origin).sort()).toEqual(all.map((n) => n.fqdn));
  });

  it('skips wildcards (logged once), names with a session certificate and names no CA issues for', async () => {
    const { issuer, manager, logs } = await setup();
    const published = [...names('*.apps.example.com', 'localhost', '127.0.0.1'), { fqdn: 'own.example.com', hasSessionCertificate: true }];
    manager.setPublished(published);
    manager.setPublished(published);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(issuer.ordered).toEqual([]);
    expect(logs.filter((l) => l.msg === 'no ACME certificate for this name').map((l) => l.fqdn)).toEqual(['*.apps.example.com', 'localhost', '127.0.0.1']);
  });

  it('remembers the names it logged only while they stay published (churned names do not pile up)', async () => {
    const { manager, logs } = await setup();
    const skippedLines = () => logs.filter((l) => l.msg === 'no ACME certificate for this name').map((l) => l.fqdn);
    manager.setPublished(names('*.a.example.com'));
    manager.setPublished(names('*.b.example.com'));
    manager.setPublished(names('*.a.example.com', '*.b.example.com'));
    expect(skippedLines()).toEqual(['*.a.example.com', '*.b.example.com', '*.a.example.com']);
  });

  it('backs off exponentially up to the cap after failures, then succeeds', async () => {
    const { issuer, manager, logs } = await setup({ retryMinMs: 10, retryMaxMs: 40 });
    manager.setPublished(names('app.example.com'));
    for (let attempt = 1; attempt <= 4; attempt++) {
      await until(`order ${attempt}`, () => issuer.pending.length === 1);
      issuer.pending.shift()!.reject(new Error('urn:ietf:params:acme:error:serverInternal'));
    }
    await until('order 5', () => issuer.pending.length === 1);
    await issuer.grant('app.example.com');
    await until('a certificate', () => manager.certificates().length === 1);
    expect(logs.filter((l) => l.msg === 'ACME order failed').map((l) => l.retryInMs)).toEqual([10, 20, 40, 40]);
    expect(manager.failures()).toBe(4);
  });

  it('keeps an unpublished name’s certificate until it expires (a republish reuses it), then deletes it', async () => {
    let now = Date.now();
    const { dir, issuer, manager, changes } = await setup({ now: () => now });
    manager.setPublished(names('app.example.com'));
    await until('an order', () => issuer.pending.length === 1);
    await issuer.grant('app.example.com', new Date(now));
    await until('a certificate', () => manager.certificates().length === 1);
    const file = join(dir, 'certs', 'acme', 'app.example.com', 'cert.pem');
    expect(existsSync(file)).toBe(true);

    manager.setPublished([]);
    manager.setPublished(names('app.example.com'));
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(issuer.ordered).toHaveLength(1);
    expect(manager.certificates()).toHaveLength(1);

    manager.setPublished([]);
    now += 3 * 86_400_000; // past notAfter (two days)
    manager.setPublished([]);
    await until('deletion', () => !existsSync(file));
    expect(manager.certificates()).toEqual([]);
    expect(changes.at(-1)).toEqual([]);
    expect(issuer.ordered).toHaveLength(1);
  });
});
