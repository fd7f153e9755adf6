import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { parseHostname } from '../hostname.js';
import { CertificateError } from './errors.js';

/** A parsed, internally consistent certificate bundle: leaf, its key, and the chain served after it. */
export interface CertificateBundle {
  /** sha256 of the leaf (hex): the bundle's identity in the store and in routing state. */
  readonly id: string;
  /** Leaf first, then its issuer chain (each certificate issued by the next), as PEM; what the TLS context serves. */
  readonly certPem: string;
  /** The private key as PEM (PKCS#8). */
  readonly keyPem: string;
  /** DNS names the leaf covers (SANs, or the CN when it has no SAN DNS names), normalised. */
  readonly names: readonly string[];
  /** True when `names` came from the CN because the leaf has no SAN DNS names. */
  readonly namesFromCommonName: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subject: string;
  readonly issuer: string;
}

const BEGIN_ARMOUR = '-----BEGIN ';
const END_ARMOUR = '-----END ';
const ARMOUR_TAIL = '-----';

/** One PEM block found in a text: its label and its base64 body re-wrapped in canonical armour. */
export interface PemBlock {
  readonly label: string;
  readonly pem: string;
  readonly headers: boolean;
}

/**
 * Splits a text into PEM blocks by their armour lines, whatever is (or is not) between them: the
 * 20ft SDK joins files with nothing in between (`-----END CERTIFICATE----------BEGIN PRIVATE KEY-----`).
 * A block runs from `-----BEGIN L-----` to the first `-----END L-----` after it; a BEGIN without its
 * END is skipped. Linear in the text: the armour lines are found with indexOf, never by a
 * backtracking regex, because the text comes from a control message (a publish's `ssl`).
 */
export function splitPem(text: string): PemBlock[] {
  const ends = byLabel(armourLines(text, END_ARMOUR));
  const consumed = new Map<string, number>(); // per label: how many of its END lines lie behind the cursor
  const blocks: PemBlock[] = [];
  let cursor = 0;
  for (const begin of armourLines(text, BEGIN_ARMOUR)) {
    if (begin.start < cursor) continue; // inside the previous block
    const candidates = ends.get(begin.label);
    if (!candidates) continue;
    let next = consumed.get(begin.label) ?? 0;
    while (next < candidates.length && candidates[next]!.start < begin.end) next += 1;
    consumed.set(begin.label, next);
    const end = candidates[next];
    if (!end) continue;
    blocks.push(pemBlock(begin.label, text.slice(begin.end, end.start)));
    cursor = end.end;
  }
  return blocks;
}

interface ArmourLine {
  readonly label: string;
  /** Index of the armour's first dash. */
  readonly start: number;
  /** Index just after the armour's closing dashes. */
  readonly end: number;
}

/** Every `<prefix>LABEL-----` in the text, in order, with a label of `[A-Z0-9 ]+`. */
function armourLines(text: string, prefix: string): ArmourLine[] {
  const found: ArmourLine[] = [];
  for (let start = text.indexOf(prefix); start !== -1; start = text.indexOf(prefix, start + 1)) {
    const labelStart = start + prefix.length;
    let labelEnd = labelStart;
    while (labelEnd < text.length && isLabelChar(text.charCodeAt(labelEnd))) labelEnd += 1;
    if (labelEnd === labelStart || !text.startsWith(ARMOUR_TAIL, labelEnd)) continue;
    found.push({ label: text.slice(labelStart, labelEnd), start, end: labelEnd + ARMOUR_TAIL.length });
  }
  return found;
}

function byLabel(lines: readonly ArmourLine[]): Map<string, ArmourLine[]> {
  const grouped = new Map<string, ArmourLine[]>();
  for (const line of lines) {
    const group = grouped.get(line.label);
    if (group) group.push(line);
    else grouped.set(line.label, [line]);
  }
  return grouped;
}

function isLabelChar(code: number): boolean {
  return (code >= 0x41 && code <= 0x5a) || (code >= 0x30 && code <= 0x39) || code === 0x20; // A-Z, 0-9, space
}

/** Re-wraps a block's base64 body in canonical armour, dropping RFC 1421 headers (`Proc-Type: ...`). */
function pemBlock(label: string, body: string): PemBlock {
  const headers = /^[ \t]*[A-Za-z-]+:/m.test(body);
  const base64 = body.replace(/^[ \t]*[A-Za-z-]+:.*$/gm, '').replace(/\s+/g, '');
  const lines = base64.match(/.{1,64}/g) ?? [];
  return { label, headers, pem: `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n` };
}

/**
 * Parses certificates and exactly one unencrypted private key given in any order; the leaf is the
 * certificate whose public key matches the key, and the chain is the leaf's issuer chain, leaf
 * first; certificates that are not part of it are not served. Every served certificate's key must
 * pass {@link keyRefusal}. Throws {@link CertificateError} naming the failed check. Validity dates
 * and names are checked by {@link checkCertificate}.
 */
export function parseCertificateBundle(text: string): CertificateBundle {
  if (typeof text !== 'string' || text.trim() === '') throw new CertificateError('no certificate', 'no certificate: the text holds no PEM blocks');
  const blocks = splitPem(text);
  if (blocks.length === 0) throw new CertificateError('unparsable PEM', 'unparsable PEM: no "-----BEGIN ...-----" block found');
  const certificates: X509Certificate[] = [];
  const keys: PemBlock[] = [];
  for (const block of blocks) {
    if (block.label === 'CERTIFICATE') {
      try {
        certificates.push(new X509Certificate(block.pem));
      } catch (err) {
        throw new CertificateError('unparsable PEM', `unparsable PEM: a CERTIFICATE block could not be read (${(err as Error).message})`, { cause: err });
      }
    } else if (block.label === 'ENCRYPTED PRIVATE KEY' || (block.label.endsWith('PRIVATE KEY') && block.headers)) {
      throw new CertificateError('encrypted key', 'encrypted key: the private key is protected by a passphrase; send it unencrypted');
    } else if (block.label.endsWith('PRIVATE KEY')) {
      keys.push(block);
    }
  }
  if (certificates.length === 0) throw new CertificateError('no certificate', 'no certificate: the text holds no CERTIFICATE block');
  if (keys.length === 0) throw new CertificateError('no private key', 'no private key: the text holds no PRIVATE KEY block');
  if (keys.length > 1) throw new CertificateError('several keys', `several keys: the text holds ${keys.length} private keys; send exactly one`);

  let key: KeyObject;
  try {
    key = createPrivateKey(keys[0]!.pem);
  } catch (err) {
    throw new CertificateError('unparsable PEM', `unparsable PEM: the private key could not be read (${(err as Error).message})`, { cause: err });
  }
  const leaf = certificates.find((certificate) => certificate.checkPrivateKey(key));
  if (!leaf) throw new CertificateError('key does not match', 'key does not match: no certificate in the text belongs to the private key');
  const refusal = keyRefusal(leaf.publicKey, 'leaf');
  if (refusal !== null) throw new CertificateError('unsupported key', `unsupported key: certificate key ${refusal}`);

  const chain = issuerChain(leaf, certificates.filter((certificate) => certificate !== leaf));
  const { names, fromCommonName } = coveredNames(leaf);
  return Object.freeze({
    id: createHash('sha256').update(leaf.raw).digest('hex'),
    certPem: [leaf, ...chain].map((certificate) => certificate.toString()).join(''),
    keyPem: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    names: Object.freeze(names),
    namesFromCommonName: fromCommonName,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    subject: leaf.subject,
    issuer: leaf.issuer,
  });
}

/**
 * Checks that a bundle can be served for `fqdn` at time `now`: valid now, and covering the fqdn
 * (exact SAN, or a one-label wildcard SAN; a wildcard fqdn needs exactly that wildcard).
 */
export function checkCertificate(bundle: CertificateBundle, fqdn: string, now: Date): void {
  if (now < bundle.notBefore) throw new CertificateError('not yet valid', `not yet valid: the certificate is valid from ${bundle.notBefore.toISOString()}`);
  if (now > bundle.notAfter) throw new CertificateError('expired', `expired: the certificate expired on ${bundle.notAfter.toISOString()}`);
  if (!bundle.names.some((name) => nameCovers(name, fqdn))) {
    const listed = bundle.names.length > 0 ? bundle.names.join(', ') : 'no DNS names';
    throw new CertificateError('name not covered', `name not covered: the certificate covers ${listed}, not ${fqdn}`);
  }
}

/**
 * Checks that OpenSSL will serve the bundle on tfgate's listener, which it refuses to do with what its
 * security level forbids (a chain signed with MD5 or SHA-1: "ca md too weak"): refused when it enters,
 * rather than every handshake for the name failing later. Costs one TLS context (about a millisecond).
 */
export function checkServable(bundle: CertificateBundle): void {
  try {
    createSecureContext({ cert: bundle.certPem, key: bundle.keyPem, minVersion: 'TLSv1.2' });
  } catch (err) {
    throw new CertificateError('not servable', `not servable: OpenSSL will not use it (${(err as Error).message})`, { cause: err });
  }
}

/** True when a certificate name (`a.example.com` or `*.example.com`) covers `hostname` as TLS does. */
export function nameCovers(certName: string, hostname: string): boolean {
  if (certName === hostname) return true;
  if (!certName.startsWith('*.') || hostname.startsWith('*.')) return false;
  const dot = hostname.indexOf('.');
  return dot > 0 && hostname.slice(dot + 1) === certName.slice(2);
}

function coveredNames(leaf: X509Certificate): { names: string[]; fromCommonName: boolean } {
  const sanNames = (leaf.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4));
  const fromCommonName = sanNames.length === 0;
  const raw = fromCommonName ? leaf.subject.split('\n').filter((line) => line.startsWith('CN=')).map((line) => line.slice(3)) : sanNames;
  const names: string[] = [];
  for (const name of raw) {
    const parsed = parseHostname(name, { allowPort: false, allowWildcard: true });
    if (parsed.ok && !names.includes(parsed.hostname)) names.push(parsed.hostname);
  }
  return { names, fromCommonName };
}

/**
 * The leaf's issuer chain: each certificate issued by the next (name match and a signature that
 * verifies), ending at a self-signed one or where no issuer was given. The others are dropped: they
 * would only add bytes to every handshake. A certificate named as an issuer must have a key
 * {@link keyRefusal} accepts for the chain; it is checked before its signature is verified, so no
 * signature is ever verified with a key that is not.
 */
function issuerChain(leaf: X509Certificate, rest: readonly X509Certificate[]): X509Certificate[] {
  const chain: X509Certificate[] = [];
  const remaining = [...rest];
  let current = leaf;
  while (!(current.checkIssued(current) && signedBy(current, current))) {
    const subject = current;
    const index = remaining.findIndex((candidate) => subject.checkIssued(candidate) && signedBy(subject, checkedChainCertificate(candidate)));
    if (index === -1) break;
    current = remaining.splice(index, 1)[0]!;
    chain.push(current);
  }
  return chain;
}

/** True when `issuer`'s key verifies `certificate`'s signature. */
function signedBy(certificate: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return certificate.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/** `certificate`, when its key may be served in a chain; else throws naming it. */
function checkedChainCertificate(certificate: X509Certificate): X509Certificate {
  const subject = certificate.subject.replace(/\n/g, ', ');
  let key: KeyObject;
  try {
    key = certificate.publicKey;
  } catch (err) {
    throw new CertificateError('unsupported key', `unsupported key: chain certificate "${subject}" has a key that cannot be read`, { cause: err });
  }
  const refusal = keyRefusal(key, 'chain');
  if (refusal !== null) throw new CertificateError('unsupported key', `unsupported key: chain certificate "${subject}" key ${refusal}`);
  return certificate;
}

/**
 * Smallest RSA key served: OpenSSL refuses to serve a smaller leaf at its default security level
 * ("ee key too small"), so every handshake for the name would fail.
 */
export const MIN_RSA_BITS = 2048;
/**
 * Largest RSA key of a leaf: the leaf's key signs every full handshake on the worker's main thread,
 * and the cost grows with the cube of the size (RSA-4096 ~5 ms, RSA-8192 ~40 ms, RSA-16384 ~240 ms),
 * so one name with a bigger key lets anyone stall every tenant by handshaking for it.
 */
export const MAX_LEAF_RSA_BITS = 4096;
/**
 * Largest RSA key of a chain certificate: its key signs nothing during a handshake (the gateway never
 * uses it; clients verify with the public exponent, which is cheap), so roots and intermediates of
 * private CAs may be bigger than a leaf, but not absurd.
 */
export const MAX_CHAIN_RSA_BITS = 8192;
/**
 * Largest RSA public exponent, in bits: 65537 is what everyone uses; a huge exponent would make each
 * verification of the key's signatures (ours at publish, clients' at every handshake) cost like a
 * private-key operation.
 */
export const MAX_RSA_PUBLIC_EXPONENT_BITS = 32;
/** EC curves served, OpenSSL's name → the name people know: the ones TLS clients verify everywhere. */
export const SUPPORTED_CURVES: ReadonlyMap<string, string> = new Map([
  ['prime256v1', 'P-256'],
  ['secp384r1', 'P-384'],
]);

/** What a served certificate is: the leaf (its key signs each handshake) or a certificate of its chain. */
export type CertificateRole = 'leaf' | 'chain';

/**
 * The rule for the keys tfgate serves: RSA of {@link MIN_RSA_BITS} bits up to
 * {@link MAX_LEAF_RSA_BITS} for a leaf ({@link MAX_CHAIN_RSA_BITS} in its chain), EC on a
 * {@link SUPPORTED_CURVES} curve, or Ed25519. Returns why `key` is refused
 * (`RSA 16384 bits is over the 4096-bit limit`), or null when it is served.
 */
export function keyRefusal(key: KeyObject, role: CertificateRole): string | null {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  switch (type) {
    case 'rsa': {
      const bits = details.modulusLength ?? 0;
      const maxBits = role === 'leaf' ? MAX_LEAF_RSA_BITS : MAX_CHAIN_RSA_BITS;
      if (bits < MIN_RSA_BITS) return `RSA ${bits} bits is under the ${MIN_RSA_BITS}-bit minimum`;
      if (bits > maxBits) return `RSA ${bits} bits is over the ${maxBits}-bit limit`;
      const exponent = details.publicExponent ?? 0n;
      if (exponent.toString(2).length > MAX_RSA_PUBLIC_EXPONENT_BITS) return `RSA public exponent of ${exponent.toString(2).length} bits is over the ${MAX_RSA_PUBLIC_EXPONENT_BITS}-bit limit`;
      return null;
    }
    case 'ec': {
      const curve = details.namedCurve;
      if (curve !== undefined && SUPPORTED_CURVES.has(curve)) return null;
      return `curve ${curve ?? 'with explicit parameters'} is not supported (${[...SUPPORTED_CURVES.values()].join(', ')})`;
    }
    case 'ed25519':
      return null;
    default:
      return `type ${type ?? 'unknown'} is not supported (RSA, EC ${[...SUPPORTED_CURVES.values()].join(' or ')}, Ed25519)`;
  }
}
