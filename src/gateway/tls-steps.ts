import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseHostname } from '../hostname.js';
import { certificateCovers } from '../sni/index.js';
import type { SecureContext } from 'node:tls';
import type { CertStore, StoredCertificate } from '../sni/index.js';
import { HttpsRedirect, MisdirectedRequestError } from './errors.js';
import type { RequestTarget } from './steps.js';

/** Paths never redirected to HTTPS: ACME HTTP-01 challenges must be answered over plain HTTP. */
const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/**
 * Plain HTTP for a name with a certificate of its own → 308 to the same URL over HTTPS
 * (`httpsPort` 443 is left out of the URL). Undefined when the request stays on HTTP.
 */
export function httpsRedirect(store: CertStore | undefined, httpsPort: number | undefined, target: RequestTarget): HttpsRedirect | undefined {
  if (store === undefined || httpsPort === undefined) return undefined;
  if (target.path.startsWith(ACME_CHALLENGE_PREFIX) || !store.hasOwnCertificate(target.hostname)) return undefined;
  const port = httpsPort === 443 ? '' : `:${httpsPort}`;
  return new HttpsRedirect(`https://${target.hostname}${port}${target.path}`);
}

/** What a TLS connection was opened with: its SNI (normalised once, at the handshake) and the certificate presented. */
export interface Presented {
  /** The normalised SNI; undefined when the client sent none, null when what it sent is not a hostname. */
  readonly servername: string | null | undefined;
  readonly certificate: StoredCertificate;
}

/** The certificate for a raw SNI name and what requests on the connection are checked against. */
export function presentFor(store: CertStore, rawServername: string | undefined): { context: SecureContext; presented: Presented } {
  let servername: string | null | undefined;
  if (rawServername !== undefined) {
    const parsed = parseHostname(rawServername, { allowPort: false });
    servername = parsed.ok ? parsed.hostname : null;
  }
  const { certificate, context } = store.select(servername ?? undefined);
  return { context, presented: { servername, certificate } };
}

/**
 * Over HTTPS, when the client sent SNI and asks for another Host, that Host must be covered by the
 * certificate presented for the SNI, or connection reuse would let one site answer for another
 * (RFC 9110 §7.4, §15.5.20). Host equal to SNI is always fine, even on the default certificate.
 * Hot path: a string comparison, and the certificate's names only when they differ.
 */
export function checkServername(presented: Presented | undefined, hostname: string): MisdirectedRequestError | undefined {
  const servername = presented?.servername;
  if (servername === undefined || servername === hostname) return undefined;
  if (servername !== null && certificateCovers(presented!.certificate, hostname)) return undefined;
  return new MisdirectedRequestError(hostname, servername ?? 'an invalid server name');
}

/**
 * Plain HTTP only: answers `GET /.well-known/acme-challenge/<token>` with the key authorization
 * `lookup` holds for the token (RFC 8555 §8.3) and returns true; any other request, or a token no
 * order waits on (an upstream may answer its own), returns false untouched. Hot path: one prefix test.
 */
export function answerAcmeChallenge(req: IncomingMessage, res: ServerResponse, lookup: (token: string) => string | undefined): boolean {
  const url = req.url;
  if (url === undefined || !url.startsWith(ACME_CHALLENGE_PREFIX) || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  const end = url.search(/[?#]/);
  const token = url.slice(ACME_CHALLENGE_PREFIX.length, end === -1 ? undefined : end);
  const keyAuthorization = /^[A-Za-z0-9_-]+$/.test(token) ? lookup(token) : undefined;
  // A lookup into a plain object finds Object.prototype's names too (`constructor`): only a string is an answer.
  if (typeof keyAuthorization !== 'string') return false;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(keyAuthorization), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : keyAuthorization);
  return true;
}
