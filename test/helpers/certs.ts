import { generateKeyPairSync, randomBytes } from 'node:crypto';
import forge from 'node-forge';
import { CertificateError } from '../../src/sni/index.js';

/** A test certificate with its key, PEM, and the forge objects to sign others with. */
export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
  readonly cert: forge.pki.Certificate;
  readonly key: forge.pki.rsa.PrivateKey;
}

/** Options for {@link makeCertificate}. */
export interface CertificateOptions {
  /** SAN DNS names; the first is also the CN unless `commonName` is given. */
  readonly names?: readonly string[];
  readonly commonName?: string;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** The CA that signs it; self-signed when absent. */
  readonly issuer?: TestCertificate;
  readonly isCa?: boolean;
  /** The signature's digest (sha256 unless given); sha1 and md5 make what OpenSSL refuses to serve. */
  readonly digest?: 'sha256' | 'sha1' | 'md5';
}

function rsaKey(): forge.pki.rsa.PrivateKey {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return forge.pki.privateKeyFromPem(privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()) as forge.pki.rsa.PrivateKey;
}

/** Makes an RSA certificate with node-forge (keys from node:crypto, which is much faster). */
export function makeCertificate(options: CertificateOptions = {}): TestCertificate {
  const key = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.setRsaPublicKey(key.n, key.e);
  cert.serialNumber = `01${randomBytes(8).toString('hex')}`;
  cert.validity.notBefore = options.notBefore ?? new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = options.notAfter ?? new Date(Date.now() + 30 * 86_400_000);
  const names = options.names ?? [];
  const cn = options.commonName ?? names[0] ?? 'Test CA';
  cert.setSubject([{ name: 'commonName', value: cn }]);
  cert.setIssuer(options.issuer ? options.issuer.cert.subject.attributes : [{ name: 'commonName', value: cn }]);
  const extensions: object[] = [{ name: 'basicConstraints', cA: options.isCa ?? false }];
  if (names.length > 0) extensions.push({ name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) });
  cert.setExtensions(extensions);
  cert.sign(options.issuer?.key ?? key, forge.md[options.digest ?? 'sha256'].create());
  return { cert, key, certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(key) };
}

/** A CA certificate to sign leaves with. */
export function makeCa(name = 'tfgate test CA'): TestCertificate {
  return makeCertificate({ commonName: name, isCa: true });
}

/** The CertificateError `fn` throws (any other error is rethrown; none is a failure of the test). */
export function certificateFailure(fn: () => unknown): CertificateError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CertificateError) return err;
    throw err;
  }
  throw new Error('expected a CertificateError');
}
