import { randomBytes, webcrypto } from 'node:crypto';

/** A freshly made certificate and key, PEM. */
export interface GeneratedCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

const ECDSA_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

/**
 * A self-signed ECDSA P-256 certificate for `names` (the first is the CN), valid from an hour ago
 * for `validDays`. ECDSA because its handshakes cost far less than RSA's; node-forge cannot make
 * EC keys, so this uses @peculiar/x509 (already acme-client's) on node's WebCrypto.
 */
export async function createSelfSignedCertificate(names: readonly string[], validDays = 365, now = new Date()): Promise<GeneratedCertificate> {
  if (names.length === 0) throw new Error('a self-signed certificate needs at least one name');
  // Loaded on use: only the primary makes certificates, and only on first start.
  const x509 = await import('@peculiar/x509');
  const crypto = webcrypto;
  const keys = await crypto.subtle.generateKey(ECDSA_P256, true, ['sign', 'verify']);
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial.toString('hex'),
      name: `CN=${names[0]}`,
      notBefore: new Date(now.getTime() - 3_600_000),
      notAfter: new Date(now.getTime() + validDays * 86_400_000),
      signingAlgorithm: SIGNING,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([SERVER_AUTH]),
        new x509.SubjectAlternativeNameExtension(names.map((value) => ({ type: 'dns' as const, value }))),
      ],
    },
    crypto,
  );
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { certPem: `${certificate.toString('pem')}\n`, keyPem };
}
