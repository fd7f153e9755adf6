import { chmodSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type { Database as SqliteDatabase } from 'better-sqlite3';
import { checkCertificate, checkServable, parseCertificateBundle } from './certificate.js';
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
 * the names the certificate covers, whatever the file is called. Subfolders are the gateway's own;
 * links to files are followed. Invalid, expired or not-yet-valid files are skipped with the reason.
 */
export async function loadOperatorCertificates(certsDir: string, now: Date): Promise<{ loaded: StoredCertificate[]; skipped: SkippedCertificateFile[] }> {
  const entries = await readdir(certsDir, { withFileTypes: true });
  const loaded: StoredCertificate[] = [];
  const skipped: SkippedCertificateFile[] = [];
  const files = new Set<string>();
  for (const entry of entries) {
    if (entry.isFile()) files.add(entry.name);
    else if (entry.isSymbolicLink()) {
      // A link is how certbot's live/ directory (and most deploy tools) name the current files.
      const target = await stat(join(certsDir, entry.name)).catch((err: NodeJS.ErrnoException) => err);
      if (target instanceof Error) skipped.push({ file: entry.name, reason: `a link that cannot be followed (${target.code ?? target.message})` });
      else if (target.isFile()) files.add(entry.name);
    }
  }
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
      checkServable(bundle);
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
  // writeFile's mode applies only to a file it creates: one made anew over an older file keeps that file's mode.
  await chmod(keyFile, 0o600);
  await chmod(dir, 0o700);
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

/** One ACME certificate as the index knows it. */
export interface AcmeRecord {
  readonly fqdn: string;
  /** The directory URL it was ordered from. */
  readonly directory: string;
  /** When this process (or an earlier one) stored it, ms since the epoch. */
  readonly issuedAt: number;
}

/** An ACME certificate loaded back from disk, with its index entry. */
export interface LoadedAcmeCertificate {
  readonly certificate: StoredCertificate;
  readonly record: AcmeRecord;
}

/** An fqdn as a directory name: normalised names are already safe, this refuses anything else. */
const SAFE_FQDN = /^[a-z0-9-]+(\.[a-z0-9-]+)+$/;

/**
 * ACME persistence (the only place that knows its layout and SQL): the account key and each
 * certificate with its key under `<certsDir>/acme/` (files 0600), and an index of them in
 * `<stateDir>/acme.sqlite`. A separate file from the control plane's store, so either can move on its own.
 */
export class AcmeStorage {
  readonly #dir: string;
  readonly #db: SqliteDatabase;

  private constructor(dir: string, db: SqliteDatabase) {
    this.#dir = dir;
    this.#db = db;
  }

  /** Opens (creating) the ACME folder and index. */
  static async open(certsDir: string, stateDir: string): Promise<AcmeStorage> {
    const dir = join(certsDir, 'acme');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const path = join(stateDir, 'acme.sqlite');
    // Required on use: worker processes load this module but never open the ACME index.
    const Database = createRequire(import.meta.url)('better-sqlite3') as typeof import('better-sqlite3');
    const db = new Database(path);
    try {
      chmodSync(path, 0o600);
      db.pragma('busy_timeout = 5000');
      db.exec(
        'CREATE TABLE IF NOT EXISTS acme_certificates (fqdn TEXT PRIMARY KEY, directory TEXT NOT NULL, fingerprint TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, issued_at INTEGER NOT NULL)',
      );
    } catch (err) {
      db.close();
      throw err;
    }
    return new AcmeStorage(dir, db);
  }

  /** The ACME account key, made by `create` and stored (0600) the first time. */
  async accountKey(create: () => Promise<string>): Promise<string> {
    const file = join(this.#dir, 'account.key');
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const key = await create();
    await writeSecret(file, key);
    return key;
  }

  /** Every indexed certificate whose files still parse and match; the others are dropped from the index, with the reason. */
  async load(): Promise<{ loaded: LoadedAcmeCertificate[]; dropped: { fqdn: string; reason: string }[] }> {
    const rows = this.#db.prepare('SELECT fqdn, directory, issued_at AS issuedAt FROM acme_certificates ORDER BY fqdn').all() as AcmeRecord[];
    const loaded: LoadedAcmeCertificate[] = [];
    const dropped: { fqdn: string; reason: string }[] = [];
    for (const record of rows) {
      try {
        if (!SAFE_FQDN.test(record.fqdn)) throw new Error('not a plain fqdn');
        const [cert, key] = await Promise.all([readFile(join(this.#dir, record.fqdn, 'cert.pem'), 'utf8'), readFile(join(this.#dir, record.fqdn, 'key.pem'), 'utf8')]);
        const bundle = parseCertificateBundle(cert + key);
        if (!bundle.names.includes(record.fqdn)) throw new Error(`the certificate does not cover ${record.fqdn}`);
        loaded.push({ certificate: acmeCertificate(bundle, record.fqdn), record: Object.freeze({ ...record }) });
      } catch (err) {
        dropped.push({ fqdn: record.fqdn, reason: (err as Error).message });
        this.#db.prepare('DELETE FROM acme_certificates WHERE fqdn = ?').run(record.fqdn);
      }
    }
    return { loaded, dropped };
  }

  /** Stores a newly issued certificate (files first, then the index) and returns it ready to serve; throws when it does not parse or cover `fqdn`. */
  async save(fqdn: string, certPem: string, keyPem: string, directory: string, now: number): Promise<LoadedAcmeCertificate> {
    if (!SAFE_FQDN.test(fqdn)) throw new Error(`not a plain fqdn: ${fqdn}`);
    const bundle = parseCertificateBundle(certPem + keyPem);
    checkCertificate(bundle, fqdn, new Date(now));
    const dir = join(this.#dir, fqdn);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeSecret(join(dir, 'key.pem'), bundle.keyPem);
    await writeSecret(join(dir, 'cert.pem'), bundle.certPem);
    this.#db
      .prepare(
        'INSERT INTO acme_certificates (fqdn, directory, fingerprint, not_before, not_after, issued_at) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT (fqdn) DO UPDATE SET directory = excluded.directory, fingerprint = excluded.fingerprint, not_before = excluded.not_before, not_after = excluded.not_after, issued_at = excluded.issued_at',
      )
      .run(fqdn, directory, bundle.id, bundle.notBefore.getTime(), bundle.notAfter.getTime(), now);
    return { certificate: acmeCertificate(bundle, fqdn), record: Object.freeze({ fqdn, directory, issuedAt: now }) };
  }

  /** Forgets a certificate: its index entry, then its files. */
  async remove(fqdn: string): Promise<void> {
    this.#db.prepare('DELETE FROM acme_certificates WHERE fqdn = ?').run(fqdn);
    if (SAFE_FQDN.test(fqdn)) await rm(join(this.#dir, fqdn), { recursive: true, force: true });
  }

  /** Closes the index. Idempotent. */
  close(): void {
    if (this.#db.open) this.#db.close();
  }
}

function acmeCertificate(bundle: CertificateBundle, fqdn: string): StoredCertificate {
  return Object.freeze({ bundle, source: 'acme' as const, origin: fqdn, servedFor: Object.freeze([fqdn]) });
}

/** Writes a file 0600 through a temporary name, so a crash never leaves half a key in place. */
async function writeSecret(file: string, text: string): Promise<void> {
  const temporary = `${file}.tmp`;
  await rm(temporary, { force: true });
  await writeFile(temporary, text, { mode: 0o600 });
  await rename(temporary, file);
}
