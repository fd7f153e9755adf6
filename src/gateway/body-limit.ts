import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import type { Readable } from 'node:stream';
import { PayloadTooLargeError, RequestTimeoutError, UpstreamTimeoutError } from './errors.js';

/** Bounds on a request body as it streams upstream. */
export interface BodyBounds {
  /** Cut with a {@link PayloadTooLargeError} past this many bytes; 0 = no limit (a known length is checked before forwarding). */
  readonly maxBytes: number;
  /** Cut with a {@link RequestTimeoutError} when no body byte moves for this long (the `--idle-timeout`). */
  readonly idleTimeoutMs: number;
}

/**
 * The request body as sent upstream, watched: a body that moves no byte for `idleTimeoutMs` is cut, so
 * it cannot hold a member connection forever: with a {@link RequestTimeoutError} (408) when the client
 * went quiet mid-upload, with an {@link UpstreamTimeoutError} (504) when the member stopped reading it.
 * A body over `maxBytes` is cut with a {@link PayloadTooLargeError}. The member sees an aborted
 * request, the client a 408, 504 or 413 (or a cut connection when the member already answered).
 * Requests with a Content-Length over the limit are refused before forwarding instead (Pipeline.route).
 */
export function watchBody(req: IncomingMessage, bounds: BodyBounds): Readable {
  let seen = 0;
  const { maxBytes, idleTimeoutMs } = bounds;
  const watched = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      idle.refresh();
      seen += chunk.length;
      if (maxBytes > 0 && seen > maxBytes) callback(new PayloadTooLargeError(`request body over the limit of ${maxBytes} bytes`));
      else callback(null, chunk);
    },
  });
  const idle = setTimeout(() => {
    // Bytes still waiting here mean the member stopped taking them (backpressure), not the client.
    const memberStalled = watched.readableLength > 0 || watched.writableLength > 0;
    watched.destroy(
      memberStalled
        ? new UpstreamTimeoutError(`the member read none of the request body for ${idleTimeoutMs} ms`)
        : new RequestTimeoutError(`request body sent nothing for ${idleTimeoutMs} ms`),
    );
  }, idleTimeoutMs).unref();
  const stop = (): void => clearTimeout(idle);
  watched.once('finish', stop); // every body byte arrived
  watched.once('close', stop);
  // undici hears the error while it sends the body, and stops listening once the attempt ends; a
  // timeout or a client reset after that has nobody else to hear it.
  watched.on('error', ignore);
  req.on('error', (err) => watched.destroy(err));
  req.pipe(watched);
  return watched;
}

function ignore(): void {}
