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
