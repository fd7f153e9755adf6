import { describe, expect, it } from 'vitest';
import forge from 'node-forge';
import { checkCertificate, nameCovers, parseCertificateBundle, splitPem } from '../../src/sni/index.js';
import { certificateFailure, makeCa, makeCertificate } from '../helpers/certs.js';


describe('parseCertificateBundle', () => {
  const ca = makeCa();
  const leaf = makeCertificate({ names: ['www.example.com', 'example.com'], issuer: ca });

  it.each([
    ['leaf, key, intermediate (SDK order)', () => leaf.certPem + leaf.keyPem + ca.certPem],
    ['leaf, intermediate, key (CLI order)', () => leaf.certPem + ca.certPem + leaf.keyPem],
    ['key first, intermediate before leaf', () => leaf.keyPem + ca.certPem + leaf.certPem],
    ['blocks joined with nothing in between', () => (leaf.certPem + leaf.keyPem + ca.certPem).replace(/\n-----END ([A-Z ]+)-----\n/g, '\n-----END $1-----')],
    ['CRLF line ends', () => (leaf.certPem + leaf.keyPem + ca.certPem).replace(/\n/g, '\r\n')],
  ])('finds the leaf and serves the chain leaf first: %s', (_name, text) => {
    const bundle = parseCertificateBundle(text());
    const served = splitPem(bundle.certPem).map((block) => forge.pki.certificateFromPem(block.pem).subject.getField('CN').value);
    expect(served).toEqual(['www.example.com', 'tfgate test CA']);
    expect(bundle.names).toEqual(['www.example.com', 'example.com']);
    expect(bundle.namesFromCommonName).toBe(false);
  });

  it('gives the same id to the same leaf whatever the order', () => {
    expect(parseCertificateBundle(leaf.certPem + leaf.keyPem).id).toBe(parseCertificateBundle(leaf.keyPem + ca.certPem + leaf.certPem).id);
  });

  it('falls back to the CN when the certificate has no SAN DNS names', () => {
    const old = makeCertificate({ commonName: 'Legacy.Example.com' });
    const bundle = parseCertificateBundle(old.certPem + old.keyPem);
    expect(bundle.names).toEqual(['legacy.example.com']);
    expect(bundle.namesFromCommonName).toBe(true);
  });

  it.each([
    ['', 'no certificate'],
    ['garbage', 'unparsable PEM'],
    ['-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n', 'unparsable PEM'],
  ])('refuses %j: %s', (text, check) => {
    expect(certificateFailure(() => parseCertificateBundle(text)).check).toBe(check);
  });

  it('refuses a bundle without a key, with two keys, with an encrypted key, or a foreign key', () => {
    const other = makeCertificate({ names: ['other.example.com'] });
    expect(certificateFailure(() => parseCertificateBundle(leaf.certPem)).check).toBe('no private key');
    expect(certificateFailure(() => parseCertificateBundle(leaf.keyPem)).check).toBe('no certificate');
    expect(certificateFailure(() => parseCertificateBundle(leaf.certPem + leaf.keyPem + other.keyPem)).check).toBe('several keys');
    expect(certificateFailure(() => parseCertificateBundle(leaf.certPem + other.keyPem)).message).toMatch(/^key does not match/);
    const encrypted = forge.pki.encryptRsaPrivateKey(leaf.key, 'secret');
    expect(certificateFailure(() => parseCertificateBundle(leaf.certPem + encrypted)).check).toBe('encrypted key');
    const legacyEncrypted = forge.pki.encryptRsaPrivateKey(leaf.key, 'secret', { legacy: true, algorithm: 'aes128' });
    expect(certificateFailure(() => parseCertificateBundle(leaf.certPem + legacyEncrypted)).check).toBe('encrypted key');
  });
});

describe('checkCertificate', () => {
  const now = new Date();

  it('accepts a covered name within the validity period', () => {
    const cert = makeCertificate({ names: ['a.example.com', '*.apps.example.com'] });
    const bundle = parseCertificateBundle(cert.certPem + cert.keyPem);
    expect(() => checkCertificate(bundle, 'a.example.com', now)).not.toThrow();
    expect(() => checkCertificate(bundle, 'x.apps.example.com', now)).not.toThrow();
    expect(() => checkCertificate(bundle, '*.apps.example.com', now)).not.toThrow();
  });

  it('refuses an expired, a not yet valid, and a certificate for another name, saying which', () => {
    const expired = makeCertificate({ names: ['a.example.com'], notBefore: new Date(Date.now() - 10 * 86_400_000), notAfter: new Date(Date.now() - 86_400_000) });
    const future = makeCertificate({ names: ['a.example.com'], notBefore: new Date(Date.now() + 86_400_000), notAfter: new Date(Date.now() + 10 * 86_400_000) });
    const wild = makeCertificate({ names: ['*.example.com'] });
    const check = (cert: typeof wild, fqdn: string) => certificateFailure(() => checkCertificate(parseCertificateBundle(cert.certPem + cert.keyPem), fqdn, now));
    expect(check(expired, 'a.example.com').message).toMatch(/^expired: the certificate expired on /);
    expect(check(future, 'a.example.com').message).toMatch(/^not yet valid/);
    expect(check(expired, 'b.example.com').check).toBe('expired');
    expect(check(wild, 'a.b.example.com').message).toBe('name not covered: the certificate covers *.example.com, not a.b.example.com');
    expect(check(wild, 'example.com').check).toBe('name not covered');
    expect(check(wild, '*.x.example.com').check).toBe('name not covered');
  });
});

describe('nameCovers', () => {
  it.each([
    ['a.example.com', 'a.example.com', true],
    ['*.example.com', 'a.example.com', true],
    ['*.example.com', 'a.b.example.com', false],
    ['*.example.com', 'example.com', false],
    ['*.example.com', '*.example.com', true],
    ['*.example.com', '*.a.example.com', false],
    ['a.example.com', 'b.example.com', false],
  ])('%s covers %s: %s', (certName, hostname, covers) => {
    expect(nameCovers(certName, hostname)).toBe(covers);
  });
});

describe('splitPem', () => {
  const ca = makeCa();
  const leaf = makeCertificate({ names: ['www.example.com'], issuer: ca });

  /** The splitting the first version did with one backtracking regex, kept as the oracle for small texts. */
  function splitPemByRegex(text: string): { label: string; pem: string; headers: boolean }[] {
    return [...text.matchAll(/-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g)].map((match) => {
      const body = match[2]!;
      const base64 = body.replace(/^[ \t]*[A-Za-z-]+:.*$/gm, '').replace(/\s+/g, '');
      const lines = base64.match(/.{1,64}/g) ?? [];
      return { label: match[1]!, headers: /^[ \t]*[A-Za-z-]+:/m.test(body), pem: `-----BEGIN ${match[1]}-----\n${lines.join('\n')}\n-----END ${match[1]}-----\n` };
    });
  }

  it.each([
    ['leaf, key, intermediate', () => leaf.certPem + leaf.keyPem + ca.certPem],
    ['joined by the 20ft SDK', () => (leaf.certPem + leaf.keyPem + ca.certPem).replace(/\n-----END ([A-Z ]+)-----\n/g, '\n-----END $1-----')],
    ['CRLF line ends', () => (leaf.certPem + ca.certPem).replace(/\n/g, '\r\n')],
    ['text around and between blocks', () => `subject=www\n${leaf.certPem}issuer=ca\n${ca.certPem}trailer`],
    ['a legacy encrypted key with headers', () => forge.pki.encryptRsaPrivateKey(leaf.key, 'secret', { legacy: true, algorithm: 'aes128' })],
    ['an END for another label inside a block', () => '-----BEGIN A-----\nQUJD\n-----END B-----\nREVG\n-----END A-----\n'],
    ['a BEGIN without END before a whole block', () => '-----BEGIN A-----\nQUJD\n-----BEGIN B-----\nREVG\n-----END B-----\n'],
    ['a BEGIN inside a block of the same label', () => '-----BEGIN A-----\nQUJD\n-----BEGIN A-----\nREVG\n-----END A-----\n-----END A-----\n'],
    ['armour glued to the previous armour', () => '-----BEGIN A-----END A----------BEGIN A----------END A-----'],
    ['an empty block and a label with spaces', () => '-----BEGIN A-----\n-----END A-----\n-----BEGIN X509 CRL-----\nQUJD\n-----END X509 CRL-----'],
    ['no block at all', () => 'garbage -----BEGIN -----END -----'],
  ])('splits as before: %s', (_name, text) => {
    const pem = text();
    expect(splitPem(pem)).toEqual(splitPemByRegex(pem));
  });

  it('splits a valid bundle into canonical blocks, leaf first', () => {
    const blocks = splitPem((leaf.certPem + leaf.keyPem + ca.certPem).replace(/\n-----END ([A-Z ]+)-----\n/g, '\n-----END $1-----'));
    expect(blocks.map((block) => block.label)).toEqual(['CERTIFICATE', leaf.keyPem.match(/BEGIN ([A-Z ]+)-----/)![1], 'CERTIFICATE']);
    expect(blocks.every((block) => block.pem.split('\n').every((line) => line.length <= 64) && !block.headers)).toBe(true);
    expect([blocks[0]!, blocks[2]!].map((block) => forge.pki.certificateFromPem(block.pem).subject.getField('CN').value)).toEqual(['www.example.com', 'tfgate test CA']);
  });

  it.each([
    ['BEGIN lines without END', () => '-----BEGIN A-----'.repeat(40_000)],
    ['BEGIN lines of distinct labels without END', () => Array.from({ length: 40_000 }, (_, i) => `-----BEGIN A${i}-----`).join('')],
    ['BEGIN lines between END lines of other labels', () => Array.from({ length: 20_000 }, (_, i) => `-----BEGIN A${i}----------END B${i}-----`).join('')],
    ['one block with a long body of header-like lines', () => `-----BEGIN A-----\n${'a'.repeat(300_000)}\n${' \tProc-Type\n'.repeat(30_000)}-----END A-----`],
  ])('splits a hostile text in linear time: %s', (_name, text) => {
    const hostile = text();
    expect(hostile.length).toBeGreaterThan(600_000);
    const started = performance.now();
    splitPem(hostile);
    expect(performance.now() - started).toBeLessThan(500); // a behaviour guard, not a benchmark: the regex took seconds
  });
});
