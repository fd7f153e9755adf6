export { parseCertificateBundle, checkCertificate, nameCovers, splitPem } from './certificate.js';
export type { CertificateBundle, PemBlock } from './certificate.js';
export { CertStore, SecureContextCache, certificateCovers } from './cert-store.js';
export type { CertificateSource, SelectedCertificate, StoredCertificate } from './cert-store.js';
export { CertificateError } from './errors.js';
export { createSelfSignedCertificate } from './self-signed.js';
export type { GeneratedCertificate } from './self-signed.js';
export { ensureDefaultCertificate, loadOperatorCertificates } from './storage.js';
export type { SkippedCertificateFile } from './storage.js';
