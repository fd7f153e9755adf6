import { mkdtempSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CertStore, SecureContextCache, ensureDefaultCertificate, loadOperatorCertificates, parseCertificateBundle } from '../../src/sni/index.js';
import type { CertificateSource, StoredCertificate } from '../../src/sni/index.js';
import { makeCertificate } from '../helpers/certs.js';

function stored(names: string[], source: CertificateSource, servedFor = names): StoredCertificate {
  const cert = makeCertificate({ names });
  return { bundle: parseCertificateBundle(cert.certPem + cert.keyPem), source, origin: names[0]!, servedFor };
}

describe('CertStore', () => {
  const fallback = stored(['localhost'], 'default', []);
  const exact = stored(['www.example.com'], 'operator');
  const wildcard = stored(['*.example.com'], 'operator');
  const session = stored(['*.example.com'], 'session', ['shop.example.com']);
  const store = new CertStore(fallback, [exact, wildcard, session], new SecureContextCache());

  it('selects exact, then one-label wildcard, then the default', () => {
    expect(store.lookup('www.example.com')).toBe(exact);
    expect(store.lookup('a.example.com')).toBe(wildcard);
    expect(store.lookup('a.b.example.com')).toBe(fallback);
    expect(store.lookup('example.com')).toBe(fallback);
    expect(store.lookup('unknown.test')).toBe(fallback);
    expect(store.lookup(undefined)).toBe(fallback);
  });

  it('serves a session certificate only for the fqdn it was published with, before operator ones', () => {
    expect(store.lookup('shop.example.com')).toBe(session);
    expect(store.hasOwnCertificate('shop.example.com')).toBe(true);
    expect(store.hasOwnCertificate('nothing.test')).toBe(false);
  });

  it('passes over a certificate that expired while loaded, to the next candidate for the name', () => {
    const soon = new Date(Date.now() + 60_000);
    const operatorCert = makeCertificate({ names: ['pay.example.com'], notAfter: soon });
    const operator: StoredCertificate = { bundle: parseCertificateBundle(operatorCert.certPem + operatorCert.keyPem), source: 'operator', origin: 'pay.pem', servedFor: ['pay.example.com'] };
    const acme = stored(['pay.example.com'], 'acme');
    let now = Date.now();
    const clocked = new CertStore(fallback, [acme, operator], new SecureContextCache(), () => now);
    expect(clocked.lookup('pay.example.com')).toBe(operator);
    now = soon.getTime() + 1_000;
    expect(clocked.lookup('pay.example.com')).toBe(acme);
    expect(new CertStore(fallback, [operator], new SecureContextCache(), () => now).lookup('pay.example.com')).toBe(fallback);
  });

  it('builds each TLS context once and reuses it', () => {
    const cache = new SecureContextCache();
    const first = new CertStore(fallback, [exact], cache);
    const second = new CertStore(fallback, [exact, wildcard], cache);
    expect(first.select('www.example.com').context).toBe(second.select('www.example.com').context);
    expect(cache.size).toBe(1);
  });
});

describe('certificate files', () => {
  it('loads NAME.pem and NAME.crt + NAME.key by the names they cover, and skips invalid ones with the reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-certs-'));
    const a = makeCertificate({ names: ['a.example.com', 'b.example.com'] });
    const w = makeCertificate({ names: ['*.apps.example.com'] });
    const expired = makeCertificate({ names: ['old.example.com'], notBefore: new Date(Date.now() - 9e9), notAfter: new Date(Date.now() - 1e9) });
    writeFileSync(join(dir, 'whatever-name.pem'), a.certPem + a.keyPem);
    writeFileSync(join(dir, 'wild.crt'), w.certPem);
    writeFileSync(join(dir, 'wild.key'), w.keyPem);
    writeFileSync(join(dir, 'old.pem'), expired.certPem + expired.keyPem);
    writeFileSync(join(dir, 'broken.pem'), 'not a certificate');
    writeFileSync(join(dir, 'lonely.crt'), a.certPem);
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    mkdirSync(join(dir, 'default'));
    writeFileSync(join(dir, 'default', 'ignored.pem'), 'the gateway’s own files are not operator certificates');

    const { loaded, skipped } = await loadOperatorCertificates(dir, new Date());
    expect(loaded.map((c) => [c.origin, c.servedFor])).toEqual([
      ['whatever-name.pem', ['a.example.com', 'b.example.com']],
      ['wild.crt', ['*.apps.example.com']],
    ]);
    expect(Object.fromEntries(skipped.map((s) => [s.file, s.reason]))).toEqual({
      'broken.pem': expect.stringContaining('unparsable PEM'),
      'lonely.crt': 'no lonely.key beside it',
      'old.pem': expect.stringContaining('expired'),
    });
  });

  it('creates the default certificate once (ECDSA P-256, key 0600) and reuses it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-certs-'));
    const first = await ensureDefaultCertificate(dir, 'gateway.test', new Date());
    expect(first.bundle.names).toEqual(['gateway.test']);
    expect(statSync(join(dir, 'default', 'key.pem')).mode & 0o777).toBe(0o600);
    expect(new X509Certificate(first.bundle.certPem).publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    const again = await ensureDefaultCertificate(dir, 'gateway.test', new Date());
    expect(again.bundle.id).toBe(first.bundle.id);
    const renamed = await ensureDefaultCertificate(dir, 'other.test', new Date());
    expect(renamed.bundle.names).toEqual(['other.test']);
  });
});
