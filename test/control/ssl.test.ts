import forge from 'node-forge';
import { describe, expect, it } from 'vitest';
import { createSelfSignedCertificate } from '../../src/sni/index.js';
import { makeCa, makeCertificate } from '../helpers/certs.js';
import { eventually, startTestControlPlane } from '../helpers/control-client.js';

const publish = (subdomain: string, ssl: string | null, members = ['10.0.0.1:80']) => ({ domain: 'test', subdomain, rewrite: null, ssl, containers: members });

/** A control plane whose data plane serves HTTPS (it holds a default certificate). */
async function startWithHttps() {
  const gw = await startTestControlPlane();
  const fallback = await createSelfSignedCertificate(['gateway.test']);
  gw.routing.setGatewayCertificates(new Map([['default', { source: 'default', origin: 'default', certPem: fallback.certPem, keyPem: fallback.keyPem, servedFor: [] }]]));
  const served = (fqdn: string) => gw.dataPlane.certificates?.lookup(fqdn);
  return { gw, served };
}

describe('publish_web with a session certificate', () => {
  const ca = makeCa();
  const leaf = makeCertificate({ names: ['shop.test'], issuer: ca });

  it('accepts certificate, key and chain in any order, serves it for the fqdn, and stops on unpublish', async () => {
    const { gw, served } = await startWithHttps();
    const client = await gw.session();
    // The 20ft SDK joins files with nothing in between.
    const sdkOrder = (leaf.certPem + leaf.keyPem + ca.certPem).replace(/\n-----END ([A-Z ]+)-----\n/g, '\n-----END $1-----');
    const uuid = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
    expect((await client.request('publish_web', publish('shop.', sdkOrder), uuid)).params).toEqual({});
    const certificate = served('shop.test');
    expect(certificate?.source).toBe('session');
    expect(certificate?.bundle.certPem.startsWith('-----BEGIN CERTIFICATE-----')).toBe(true);
    expect(certificate?.bundle.certPem.split('BEGIN CERTIFICATE')).toHaveLength(3);
    // Another name is not served with it, though the certificate is the session's.
    expect(served('other.test')?.source).toBe('default');

    // unpublish_web is sent without a uuid, as 20ft clients do: no reply to wait for.
    await client.tell('unpublish_web', { cluster: uuid });
    await eventually(() => gw.membersOf('shop.test') === undefined, 5_000, 'the unpublish');
    expect(served('shop.test')?.source).toBe('default');
  });

  it('accepts the CLI order (leaf, chain, key) and stops serving the certificate when republished without one', async () => {
    const { gw, served } = await startWithHttps();
    const client = await gw.session();
    expect((await client.request('publish_web', publish('shop.', leaf.certPem + ca.certPem + leaf.keyPem))).params).toEqual({});
    expect(served('shop.test')?.source).toBe('session');
    expect((await client.request('publish_web', publish('shop.', null))).params).toEqual({});
    expect(served('shop.test')?.source).toBe('default');
    expect(gw.membersOf('shop.test')).toEqual(['10.0.0.1:80']);
  });

  it('refuses a certificate that fails a check, names the check, and changes nothing', async () => {
    const { gw, served } = await startWithHttps();
    const client = await gw.session();
    expect((await client.request('publish_web', publish('shop.', leaf.certPem + leaf.keyPem))).params).toEqual({});
    const before = gw.routing.snapshot();
    const expired = makeCertificate({ names: ['shop.test'], notBefore: new Date(Date.now() - 9e9), notAfter: new Date(Date.now() - 1e9) });
    const future = makeCertificate({ names: ['shop.test'], notBefore: new Date(Date.now() + 1e9), notAfter: new Date(Date.now() + 9e9) });
    const other = makeCertificate({ names: ['other.test'] });
    const cases: [string, RegExp][] = [
      [expired.certPem + expired.keyPem, /certificate refused: expired: the certificate expired on/],
      [future.certPem + future.keyPem, /certificate refused: not yet valid/],
      [leaf.certPem + other.keyPem, /certificate refused: key does not match/],
      [other.certPem + other.keyPem, /certificate refused: name not covered: the certificate covers other\.test, not shop\.test/],
      ['garbage', /certificate refused: unparsable PEM/],
      [leaf.certPem, /certificate refused: no private key/],
      [leaf.certPem + leaf.keyPem + other.keyPem, /certificate refused: several keys/],
      [leaf.certPem + forge.pki.encryptRsaPrivateKey(leaf.key, 'secret'), /certificate refused: encrypted key/],
    ];
    for (const [ssl, reason] of cases) {
      const reply = await client.request('publish_web', { ...publish('shop.', ssl), containers: ['10.9.9.9:80'] });
      expect(reply.params.exception).toMatch(reason);
    }
    expect(gw.routing.snapshot()).toBe(before);
    expect(gw.membersOf('shop.test')).toEqual(['10.0.0.1:80']);
    expect(served('shop.test')?.bundle.names).toEqual(['shop.test']);
  });

  it('refuses an ssl text over 64 KiB before parsing it, saying what fits', async () => {
    const { gw, served } = await startWithHttps();
    const client = await gw.session();
    const padded = leaf.certPem + leaf.keyPem + ca.certPem + '\n'.repeat(64 * 1024);
    expect((await client.request('publish_web', publish('shop.', padded))).params.exception).toMatch(/^"ssl" is \d+ characters; a certificate chain and its key fit in 65536 \(64 KiB\)/);
    expect(gw.membersOf('shop.test')).toBeUndefined();
    expect((await client.request('publish_web', publish('shop.', padded.slice(0, 64 * 1024)))).params).toEqual({});
    expect(served('shop.test')?.source).toBe('session');
  });

  it('publishes a wildcard fqdn only with a certificate for exactly that wildcard', async () => {
    const { gw, served } = await startWithHttps();
    // Wildcards only under a claimed domain, never under a global one.
    const keys = gw.addAccount();
    gw.claimDomain(keys, 'example.com');
    const client = await gw.session(keys);
    const wildcard = (ssl: string) => ({ ...publish('*.apps.', ssl), domain: 'example.com' });
    const narrow = makeCertificate({ names: ['a.apps.example.com'] });
    expect((await client.request('publish_web', wildcard(narrow.certPem + narrow.keyPem))).params.exception).toMatch(/name not covered/);
    const wild = makeCertificate({ names: ['*.apps.example.com'] });
    expect((await client.request('publish_web', wildcard(wild.certPem + wild.keyPem))).params).toEqual({});
    expect(served('x.apps.example.com')?.source).toBe('session');
  });
});
