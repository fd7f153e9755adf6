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
 *
 * The chunks that arrive together go upstream as one write: Node's parser hands over a chunked body
 * chunk by chunk (many for one socket read), and undici writes each chunk it is given with its own
 * syscall, so a body of 1-byte chunks would otherwise cost one upstream write per byte.
 */
export function watchBody(req: IncomingMessage, bounds: BodyBounds): Readable {
  let seen = 0;
  let corked = false;
  const { maxBytes, idleTimeoutMs } = bounds;
  const watched = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      idle.refresh();
      seen += chunk.length;
      if (maxBytes > 0 && seen > maxBytes) callback(new PayloadTooLargeError(`request body over the limit of ${maxBytes} bytes`));
      else callback(null, chunk);
    },
    // The chunks the cork below held, as one write: Transform's own _write checks them and keeps its
    // backpressure (it holds the callback while the member side is full).
    writev(chunks, callback) {
      this._write(Buffer.concat(chunks.map((c) => c.chunk as Buffer)), chunks[0]!.encoding, callback);
    },
  });
  const uncork = (): void => {
    corked = false;
    watched.uncork();
  };
  // Runs before pipe's own 'data' listener: the first chunk corks, and the rest of what this turn of
  // the event loop reads joins it. Not process.nextTick: the parser calls in from C++ once per chunk,
  // and Node runs the tick queue after each call. While corked, writes are buffered and counted, so
  // write() still says "full" past the high-water mark and pipe pauses the request as before.
  const cork = (): void => {
    if (corked) return;
    corked = true;
    watched.cork();
    setImmediate(uncork);
  };
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
  req.prependListener('data', cork);
  watched.once('close', () => req.off('data', cork));
  return watched;
}

function ignore(): void {}
