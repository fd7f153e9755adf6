import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import forge from 'node-forge';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openStore } from '../../src/control/index.js';
import { makeCa, makeCertificate } from '../helpers/certs.js';
import type { TestCertificate } from '../helpers/certs.js';
import { startTestControlPlane } from '../helpers/control-client.js';

const publish = (subdomain: string, ssl: string | null) => ({ domain: 'test', subdomain, rewrite: null, ssl, containers: ['10.0.0.1:80'] });

/** A leaf for `name` with the RSA key `pem`, signed by `issuer` (test/helpers/certs.ts makes 2048-bit keys only). */
function leafWithKey(name: string, pem: string, issuer: TestCertificate): { certPem: string; keyPem: string } {
  const key = forge.pki.privateKeyFromPem(createPrivateKey(pem).export({ type: 'pkcs1', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 30 * 86_400_000);
  cert.setSubject([{ name: 'commonName', value: name }]);
  cert.setIssuer(issuer.cert.subject.attributes);
  cert.setExtensions([{ name: 'subjectAltName', altNames: [{ type: 2, value: name }] }]);
  cert.sign(issuer.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(key) };
}

const rsa8192Pem = readFileSync(new URL('../sni/fixtures/rsa-8192.key.pem', import.meta.url), 'utf8');
const rsaPem = (modulusLength: number) => generateKeyPairSync('rsa', { modulusLength }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

describe('session certificate keys', () => {
  const ca = makeCa();

  it('refuses at publish a leaf key tfgate does not serve, naming the problem, and changes nothing', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    const big = leafWithKey('big.test', rsa8192Pem, ca);
    const small = leafWithKey('small.test', rsaPem(512), ca);
    expect((await client.request('publish_web', publish('big.', big.certPem + big.keyPem + ca.certPem))).params.exception).toBe(
      'big.test: certificate refused: unsupported key: certificate key RSA 8192 bits is over the 4096-bit limit',
    );
    expect((await client.request('publish_web', publish('small.', small.certPem + small.keyPem))).params.exception).toBe(
      'small.test: certificate refused: unsupported key: certificate key RSA 512 bits is under the 2048-bit minimum',
    );
    expect(gw.membersOf('big.test')).toBeUndefined();
    expect(gw.membersOf('small.test')).toBeUndefined();
  });

  it('refuses at publish a certificate OpenSSL will not serve (signed with SHA-1 or MD5), with its reason', async () => {
    const gw = await startTestControlPlane();
    const client = await gw.session();
    for (const digest of ['sha1', 'md5'] as const) {
      const weak = makeCertificate({ names: [`${digest}.test`], issuer: ca, digest });
      const reply = await client.request('publish_web', publish(`${digest}.`, weak.certPem + weak.keyPem + ca.certPem));
      expect(reply.params.exception).toMatch(new RegExp(`^${digest}\\.test: certificate refused: not servable: OpenSSL will not use it \\(.*md too weak`));
      expect(gw.membersOf(`${digest}.test`)).toBeUndefined();
    }
  });

  it('drops at start, with a log line, a stored cluster whose certificate an earlier version accepted but this one does not serve', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-ssl-keys-'));
    onTestFinished(() => rmSync(stateDir, { recursive: true, force: true }));
    const first = await startTestControlPlane({ stateDir });
    const client = await first.session();
    const good = leafWithKey('shop.test', rsaPem(2048), ca);
    expect((await client.request('publish_web', publish('shop.', good.certPem + good.keyPem))).params).toEqual({});
    expect((await client.request('publish_web', publish('kept.', null))).params).toEqual({});
    await first.control.close();
    // What an earlier version stored: an RSA-512 leaf (every handshake for the name then failed).
    const small = leafWithKey('shop.test', rsaPem(512), ca);
    const store = openStore(stateDir);
    const stored = store.listClusters().find((cluster) => cluster.fqdn === 'shop.test')!;
    store.saveClusters([{ rid: stored.rid, id: stored.id, cluster: { ...stored, certificate: { certPem: small.certPem, keyPem: small.keyPem } } }]);
    store.close();

    const second = await startTestControlPlane({ stateDir });
    expect(second.membersOf('shop.test')).toBeUndefined();
    expect(second.membersOf('kept.test')).toEqual(['10.0.0.1:80']);
    expect(second.logs.find((line) => line.msg === 'stored cluster dropped at start')).toMatchObject({
      fqdn: 'shop.test',
      reason: 'certificate refused: unsupported key: certificate key RSA 512 bits is under the 2048-bit minimum',
    });
    const check = openStore(stateDir);
    expect(check.listClusters().map((cluster) => cluster.fqdn)).toEqual(['kept.test']);
    check.close();
  });
});
