import type { IncomingMessage, ServerResponse } from 'node:http';
import { parseHostname } from '../hostname.js';
import { certificateCovers } from '../sni/index.js';
import type { CertStore } from '../sni/index.js';
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

/**
 * Over HTTPS, when the client sent SNI and asks for another Host, that Host must be covered by the
 * certificate chosen for the SNI, or connection reuse would let one site answer for another
 * (RFC 9110 §7.4, §15.5.20). Host equal to SNI is always fine, even on the default certificate.
 */
export function checkServername(store: CertStore | undefined, servername: string | undefined, hostname: string): MisdirectedRequestError | undefined {
  if (servername === undefined || servername === '' || store === undefined) return undefined;
  const parsed = parseHostname(servername, { allowPort: false });
  if (!parsed.ok) return new MisdirectedRequestError(hostname, servername);
  if (parsed.hostname === hostname) return undefined;
  return certificateCovers(store.lookup(parsed.hostname), hostname) ? undefined : new MisdirectedRequestError(hostname, parsed.hostname);
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
  if (keyAuthorization === undefined) return false;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(keyAuthorization), 'cache-control': 'no-store' });
  res.end(req.method === 'HEAD' ? undefined : keyAuthorization);
  return true;
}
