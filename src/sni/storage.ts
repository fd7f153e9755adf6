import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkCertificate, parseCertificateBundle } from './certificate.js';
import type { CertificateBundle } from './certificate.js';
import { CertificateError } from './errors.js';
import { createSelfSignedCertificate } from './self-signed.js';
import type { StoredCertificate } from './cert-store.js';

/** An operator file that could not be used, and why. */
export interface SkippedCertificateFile {
  readonly file: string;
  readonly reason: string;
}

/**
 * Loads the operator's certificates from the top level of the certs directory: every `NAME.pem`
 * (certificate, key and optional chain in one file) and every `NAME.crt` + `NAME.key` pair, indexed by
 * the names the certificate covers, whatever the file is called. Subfolders are the gateway's own.
 * Invalid, expired or not-yet-valid files are skipped with the reason.
 */
export async function loadOperatorCertificates(certsDir: string, now: Date): Promise<{ loaded: StoredCertificate[]; skipped: SkippedCertificateFile[] }> {
  const entries = await readdir(certsDir, { withFileTypes: true });
  const files = new Set(entries.filter((entry) => entry.isFile()).map((entry) => entry.name));
  const loaded: StoredCertificate[] = [];
  const skipped: SkippedCertificateFile[] = [];
  for (const name of [...files].sort()) {
    let sources: string[];
    if (name.endsWith('.pem')) sources = [name];
    else if (name.endsWith('.crt')) {
      const keyFile = `${name.slice(0, -4)}.key`;
      if (!files.has(keyFile)) {
        skipped.push({ file: name, reason: `no ${keyFile} beside it` });
        continue;
      }
      sources = [name, keyFile];
    } else if (name.endsWith('.key')) {
      if (!files.has(`${name.slice(0, -4)}.crt`)) skipped.push({ file: name, reason: `no ${name.slice(0, -4)}.crt beside it` });
      continue;
    } else continue;
    try {
      const text = (await Promise.all(sources.map((file) => readFile(join(certsDir, file), 'utf8')))).join('\n');
      const bundle = parseCertificateBundle(text);
      checkValidity(bundle, now);
      if (bundle.names.length === 0) throw new CertificateError('name not covered', 'the certificate names no DNS name');
      loaded.push(Object.freeze({ bundle, source: 'operator' as const, origin: name, servedFor: bundle.names }));
    } catch (err) {
      skipped.push({ file: name, reason: (err as Error).message });
    }
  }
  return { loaded, skipped };
}

/**
 * The default certificate, served for unknown or missing SNI: self-signed for `name`, created on
 * first start in `<certsDir>/default/` (key 0600) and reused; made anew when the name changed or it
 * expires within a day.
 */
export async function ensureDefaultCertificate(certsDir: string, name: string, now: Date): Promise<StoredCertificate> {
  const dir = join(certsDir, 'default');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const existing = await readBundle(certFile, keyFile);
  if (existing && existing.names.includes(name) && existing.notAfter.getTime() - now.getTime() > 86_400_000 && existing.notBefore <= now) {
    return Object.freeze({ bundle: existing, source: 'default' as const, origin: 'default/cert.pem', servedFor: [] });
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const generated = await createSelfSignedCertificate([name], 365, now);
  await writeFile(keyFile, generated.keyPem, { mode: 0o600 });
  await writeFile(certFile, generated.certPem, { mode: 0o644 });
  const bundle = parseCertificateBundle(generated.certPem + generated.keyPem);
  return Object.freeze({ bundle, source: 'default' as const, origin: 'default/cert.pem', servedFor: [] });
}

async function readBundle(certFile: string, keyFile: string): Promise<CertificateBundle | undefined> {
  try {
    const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return parseCertificateBundle(cert + key);
  } catch {
    return undefined;
  }
}

function checkValidity(bundle: CertificateBundle, now: Date): void {
  // Names are not checked here: an operator certificate is served for whatever it covers.
  const name = bundle.names[0];
  if (name !== undefined) checkCertificate(bundle, name, now);
  else if (now > bundle.notAfter) throw new CertificateError('expired', `expired: the certificate expired on ${bundle.notAfter.toISOString()}`);
}
