import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { PayloadTooLargeError } from './errors.js';

/**
 * The body of a request whose length is not known in advance (chunked), cut with a
 * {@link PayloadTooLargeError} once more than `maxBytes` arrived: the member sees an aborted request,
 * the client a 413 (or a cut connection when the member already answered). Requests with a
 * Content-Length are refused before forwarding instead (Pipeline.route), so they never come here.
 */
export function limitBody(req: IncomingMessage, maxBytes: number): Readable {
  let seen = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > maxBytes) callback(new PayloadTooLargeError(`request body over the limit of ${maxBytes} bytes`));
      else callback(null, chunk);
    },
  });
  // The forwarder listens for errors on what it sends; a client reset is seen through the response's 'close'.
  req.on('error', (err) => counted.destroy(err));
  req.pipe(counted);
  return counted;
}
