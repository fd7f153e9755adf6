import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadOperatorCertificates, parseCertificateBundle, splitPem } from '../../src/sni/index.js';
import { certificateFailure } from '../helpers/certs.js';
import { MAX_CHAIN_RSA_BITS, MAX_LEAF_RSA_BITS, MIN_RSA_BITS, keyRefusal } from '../../src/sni/certificate.js';

// Kept as files: making an RSA-4096 key takes about a second and an RSA-8192 one several.
const rsa4096 = createPrivateKey(readFileSync(new URL('fixtures/rsa-4096.key.pem', import.meta.url), 'utf8'));
const rsa8192 = createPrivateKey(readFileSync(new URL('fixtures/rsa-8192.key.pem', import.meta.url), 'utf8'));

const rsa = (modulusLength: number) => generateKeyPairSync('rsa', { modulusLength }).privateKey;
const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve }).privateKey;

/** A certificate for a key of any kind, with its key as PKCS#8 PEM. */
interface Issued {
  readonly certPem: string;
  readonly keyPem: string;
  readonly key: KeyObject;
  readonly subject: string;
}

/** How WebCrypto signs with `key` (node-forge signs with RSA only). */
function signing(key: KeyObject): { importAs: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm; sign: webcrypto.Algorithm } {
  if (key.asymmetricKeyType === 'rsa') return { importAs: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } };
  if (key.asymmetricKeyType === 'ed25519') return { importAs: { name: 'Ed25519' }, sign: { name: 'Ed25519' } };
  const namedCurve = key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256';
  return { importAs: { name: 'ECDSA', namedCurve }, sign: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.Algorithm };
}

/** Issues a certificate for `key`, signed by `issuer` (self-signed without one). */
async function issue(key: KeyObject, options: { names?: readonly string[]; commonName?: string; isCa?: boolean; issuer?: Issued }): Promise<Issued> {
  const signer = options.issuer?.key ?? key;
  const { importAs, sign } = signing(signer);
  const signingKey = await webcrypto.subtle.importKey('pkcs8', signer.export({ type: 'pkcs8', format: 'der' }), importAs, false, ['sign']);
  const subject = `CN=${options.commonName ?? options.names?.[0] ?? 'tfgate test CA'}`;
  const extensions: x509.Extension[] = [new x509.BasicConstraintsExtension(options.isCa ?? false, undefined, true)];
  if (options.names) extensions.push(new x509.SubjectAlternativeNameExtension(options.names.map((value) => ({ type: 'dns' as const, value }))));
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: `01${randomBytes(8).toString('hex')}`,
      subject,
      issuer: options.issuer?.subject ?? subject,
      notBefore: new Date(Date.now() - 3_600_000),
      notAfter: new Date(Date.now() + 30 * 86_400_000),
      publicKey: createPublicKey(key).export({ type: 'spki', format: 'der' }),
      signingKey,
      signingAlgorithm: sign,
      extensions,
    },
    webcrypto,
  );
  return { certPem: `${certificate.toString('pem')}\n`, keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(), key, subject };
}


/** The subjects of the certificates a bundle serves, in order. */
const served = (text: string) => splitPem(parseCertificateBundle(text).certPem).map((block) => new X509Certificate(block.pem).subject.replace(/^CN=/, ''));

describe('the keys a served certificate may have', () => {
  let ca: Issued;
  beforeAll(async () => {
    ca = await issue(ec('prime256v1'), { commonName: 'tfgate test CA', isCa: true });
  });
  const leafFor = (key: KeyObject) => issue(key, { names: ['shop.test'], issuer: ca });

  it('refuses a leaf with an RSA key over the limit, naming its size', async () => {
    const leaf = await leafFor(rsa8192);
    const err = certificateFailure(() => parseCertificateBundle(leaf.certPem + leaf.keyPem + ca.certPem));
    expect(err.check).toBe('unsupported key');
    expect(err.message).toBe(`unsupported key: certificate key RSA 8192 bits is over the ${MAX_LEAF_RSA_BITS}-bit limit`);
  });

  it('refuses a leaf with an RSA key under the minimum, which OpenSSL would not serve', async () => {
    const leaf = await leafFor(rsa(512));
    expect(certificateFailure(() => parseCertificateBundle(leaf.certPem + leaf.keyPem)).message).toBe('unsupported key: certificate key RSA 512 bits is under the 2048-bit minimum');
    const weak = await leafFor(rsa(1024));
    expect(certificateFailure(() => parseCertificateBundle(weak.certPem + weak.keyPem)).message).toBe(`unsupported key: certificate key RSA 1024 bits is under the ${MIN_RSA_BITS}-bit minimum`);
  });

  it('refuses a leaf on a curve TLS clients do not verify, and a key of another kind', async () => {
    for (const [curve, shown] of [
      ['secp256k1', 'secp256k1'],
      ['secp521r1', 'secp521r1'],
    ]) {
      const leaf = await leafFor(ec(curve!));
      expect(certificateFailure(() => parseCertificateBundle(leaf.certPem + leaf.keyPem)).message).toBe(`unsupported key: certificate key curve ${shown} is not supported (P-256, P-384)`);
    }
    const ed448 = await leafFor(generateKeyPairSync('ed448').privateKey);
    expect(certificateFailure(() => parseCertificateBundle(ed448.certPem + ed448.keyPem)).message).toBe('unsupported key: certificate key type ed448 is not supported (RSA, EC P-256 or P-384, Ed25519)');
  });

  it.each([
    ['RSA 2048', () => rsa(2048)],
    ['RSA 4096', () => rsa4096],
    ['EC P-256', () => ec('prime256v1')],
    ['EC P-384', () => ec('secp384r1')],
    ['Ed25519', () => generateKeyPairSync('ed25519').privateKey],
  ])('accepts a leaf with a %s key', async (_kind, key) => {
    const leaf = await leafFor(key());
    const bundle = parseCertificateBundle(leaf.keyPem + ca.certPem + leaf.certPem);
    expect(bundle.names).toEqual(['shop.test']);
    expect(splitPem(bundle.certPem)).toHaveLength(2);
  });

  it('lets a chain certificate have a bigger RSA key than a leaf, but not a weak key or an unsupported curve', async () => {
    const bigRoot = await issue(rsa8192, { commonName: 'private root', isCa: true });
    const leaf = await issue(ec('prime256v1'), { names: ['shop.test'], issuer: bigRoot });
    expect(served(leaf.certPem + leaf.keyPem + bigRoot.certPem)).toEqual(['shop.test', 'private root']);

    const weakRoot = await issue(rsa(1024), { commonName: 'weak root', isCa: true });
    const weakLeaf = await issue(ec('prime256v1'), { names: ['shop.test'], issuer: weakRoot });
    expect(certificateFailure(() => parseCertificateBundle(weakLeaf.certPem + weakLeaf.keyPem + weakRoot.certPem)).message).toBe(
      'unsupported key: chain certificate "CN=weak root" key RSA 1024 bits is under the 2048-bit minimum',
    );
    // Without it the leaf is served alone (the client then fails to build a chain; that is the tenant's to fix).
    expect(served(weakLeaf.certPem + weakLeaf.keyPem)).toEqual(['shop.test']);

    // Refused on its name alone, before any signature is verified with its key.
    const k1 = await issue(ec('secp256k1'), { commonName: 'tfgate test CA', isCa: true, issuer: ca });
    const ecLeaf = await leafFor(ec('prime256v1'));
    expect(certificateFailure(() => parseCertificateBundle(ecLeaf.certPem + ecLeaf.keyPem + k1.certPem + ca.certPem)).message).toBe(
      'unsupported key: chain certificate "CN=tfgate test CA" key curve secp256k1 is not supported (P-256, P-384)',
    );
  });

  it('applies to the operator\'s certificate files too: one with a refused key is skipped with the reason', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-certs-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const big = await issue(rsa8192, { names: ['big.test'], issuer: ca });
    const good = await issue(ec('secp384r1'), { names: ['good.test'], issuer: ca });
    writeFileSync(join(dir, 'big.pem'), big.certPem + big.keyPem);
    writeFileSync(join(dir, 'good.pem'), good.certPem + good.keyPem + ca.certPem);
    const { loaded, skipped } = await loadOperatorCertificates(dir, new Date());
    expect(loaded.map((certificate) => certificate.origin)).toEqual(['good.pem']);
    expect(skipped).toEqual([{ file: 'big.pem', reason: 'unsupported key: certificate key RSA 8192 bits is over the 4096-bit limit' }]);
  });

  it('names why a key is refused, with the chain allowed RSA up to its own limit', () => {
    const rsaOf = (bits: number, e = 'AQAB') => createPublicKey({ key: { kty: 'RSA', n: Buffer.concat([Buffer.from([0xc1]), randomBytes(bits / 8 - 1)]).toString('base64url'), e }, format: 'jwk' });
    expect(keyRefusal(rsaOf(4096), 'leaf')).toBeNull();
    expect(keyRefusal(rsaOf(4096 + 8), 'leaf')).toBe('RSA 4104 bits is over the 4096-bit limit');
    expect(keyRefusal(rsaOf(8192), 'chain')).toBeNull();
    expect(keyRefusal(rsaOf(16384), 'chain')).toBe(`RSA 16384 bits is over the ${MAX_CHAIN_RSA_BITS}-bit limit`);
    expect(keyRefusal(rsaOf(16384), 'leaf')).toBe('RSA 16384 bits is over the 4096-bit limit');
    expect(keyRefusal(rsaOf(2048, Buffer.alloc(32, 0xff).toString('base64url')), 'chain')).toBe('RSA public exponent of 256 bits is over the 32-bit limit');
  });
});

describe('the chain served after the leaf', () => {
  let root: Issued;
  let intermediate: Issued;
  let leaf: Issued;
  beforeAll(async () => {
    root = await issue(ec('prime256v1'), { commonName: 'test root', isCa: true });
    intermediate = await issue(ec('prime256v1'), { commonName: 'test intermediate', isCa: true, issuer: root });
    leaf = await issue(ec('prime256v1'), { names: ['shop.test'], issuer: intermediate });
  });

  it('is the leaf issuer chain in order, whatever the order given', () => {
    expect(served(root.certPem + leaf.keyPem + intermediate.certPem + leaf.certPem)).toEqual(['shop.test', 'test intermediate', 'test root']);
  });

  it('never holds a certificate that is not part of it', async () => {
    const unrelatedCa = await issue(ec('prime256v1'), { commonName: 'unrelated CA', isCa: true });
    const otherLeaf = await issue(ec('prime256v1'), { names: ['other.test'], issuer: unrelatedCa });
    // Same name as the real intermediate, another key: its name matches, its signature does not.
    const impostor = await issue(ec('prime256v1'), { commonName: 'test intermediate', isCa: true });
    const fillers = await Promise.all([1, 2, 3].map((n) => issue(ec('prime256v1'), { commonName: `filler ${n}`, isCa: true })));
    const text = leaf.certPem + leaf.keyPem + impostor.certPem + unrelatedCa.certPem + otherLeaf.certPem + fillers.map((f) => f.certPem).join('') + intermediate.certPem;
    expect(served(text)).toEqual(['shop.test', 'test intermediate']);
    // A self-signed leaf has no chain at all.
    const alone = await issue(ec('prime256v1'), { names: ['alone.test'] });
    expect(served(alone.certPem + alone.keyPem + unrelatedCa.certPem + root.certPem)).toEqual(['alone.test']);
  });
});
