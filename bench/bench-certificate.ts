import { X509Certificate } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createSelfSignedCertificate } from '../src/sni/index.js';

/** The virtual host every target routes to both members. */
export const BENCH_HOST = 'bench.test';

/**
 * The bench certificate also covers `localhost`: wrk sends the URL's host as SNI, and `localhost` is the one
 * name besides an IP address that resolves to 127.0.0.1 without touching /etc/hosts.
 */
export const WRK_TLS_HOST = 'localhost';

/** The one certificate every target serves, in the file layouts the targets read. */
export interface BenchCertificate {
  /** Certificate then key in one file, named `bench.test.pem` (tfgate's certs dir, HAProxy's `crt`, the members, the naive proxy). */
  readonly pemFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly certPem: string;
  /** SHA-256 fingerprint, to check that a target really serves this certificate. */
  readonly fingerprint256: string;
}

/** Makes a fresh ECDSA P-256 certificate for bench.test and localhost under `dir` (files 0600). */
export async function createBenchCertificate(dir: string): Promise<BenchCertificate> {
  const { certPem, keyPem } = await createSelfSignedCertificate([BENCH_HOST, WRK_TLS_HOST], 2);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const pemFile = join(dir, `${BENCH_HOST}.pem`);
  const certFile = join(dir, 'bench-cert.pem');
  const keyFile = join(dir, 'bench-key.pem');
  await writeFile(pemFile, certPem + keyPem, { mode: 0o600 });
  await writeFile(certFile, certPem, { mode: 0o600 });
  await writeFile(keyFile, keyPem, { mode: 0o600 });
  return { pemFile, certFile, keyFile, certPem, fingerprint256: new X509Certificate(certPem).fingerprint256 };
}
