/**
 * Reads the server name (SNI, RFC 6066 §3) from the first bytes of a TLS connection, before any TLS
 * library sees them, so the listener can pick the certificate itself. Pure and bounded: the caller
 * feeds what has arrived so far and gets a verdict.
 */

/** What the bytes so far say. */
export type ClientHelloResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** `servername` is the raw name the client sent, or undefined when it sent none. */
  | { readonly kind: 'hello'; readonly servername: string | undefined };

/** A ClientHello larger than this is refused (real ones are well under 2 KiB; post-quantum ones about 2). */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const RECORD_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;

/** Parses the ClientHello at the start of `data` (one or several TLS records). */
export function parseClientHello(data: Buffer): ClientHelloResult {
  if (data.length === 0) return INCOMPLETE;
  if (data[0] !== RECORD_HANDSHAKE) return invalid('not a TLS handshake record');
  // Reassemble the handshake message from as many records as it spans.
  const fragments: Buffer[] = [];
  let fragmentBytes = 0;
  let offset = 0;
  let needed = -1;
  while (needed === -1 || fragmentBytes < needed) {
    if (data.length < offset + 5) return INCOMPLETE;
    if (data[offset] !== RECORD_HANDSHAKE) return invalid('ClientHello interrupted by another record type');
    if (data[offset + 1] !== 3) return invalid('unknown TLS record version');
    const length = data.readUInt16BE(offset + 3);
    if (length === 0) return invalid('empty TLS record');
    if (data.length < offset + 5 + length) return INCOMPLETE;
    fragments.push(data.subarray(offset + 5, offset + 5 + length));
    fragmentBytes += length;
    offset += 5 + length;
    if (needed === -1 && fragmentBytes >= 4) {
      const head = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('first handshake message is not a ClientHello');
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > MAX_CLIENT_HELLO_BYTES) return invalid(`ClientHello of ${needed} bytes is over the limit`);
    }
    if (offset > MAX_CLIENT_HELLO_BYTES + 5 * 16) return invalid('ClientHello spread over too many records');
  }
  const hello = fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments);
  return readServername(hello.subarray(4, needed));
}

function readServername(body: Buffer): ClientHelloResult {
  const reader = new Reader(body);
  reader.skip(2 + 32); // client_version, random
  reader.skip(reader.u8()); // session_id
  reader.skip(reader.u16()); // cipher_suites
  reader.skip(reader.u8()); // compression_methods
  if (reader.failed) return invalid('truncated ClientHello');
  if (reader.remaining === 0) return { kind: 'hello', servername: undefined }; // no extensions at all
  const extensionsLength = reader.u16();
  const extensionsEnd = reader.offset + extensionsLength;
  if (reader.failed || extensionsEnd > body.length) return invalid('truncated ClientHello extensions');
  while (reader.offset < extensionsEnd) {
    const type = reader.u16();
    const length = reader.u16();
    if (reader.failed || reader.offset + length > extensionsEnd) return invalid('truncated ClientHello extension');
    if (type !== EXTENSION_SERVER_NAME) {
      reader.skip(length);
      continue;
    }
    const list = new Reader(body.subarray(reader.offset, reader.offset + length));
    const listLength = list.u16();
    const listEnd = 2 + listLength;
    while (!list.failed && list.offset < listEnd) {
      const nameType = list.u8();
      const name = list.bytes(list.u16());
      if (list.failed) break;
      if (nameType === NAME_TYPE_HOST_NAME) {
        // RFC 6066: a host name is ASCII; anything else is not a name we could hold a certificate for.
        for (const byte of name) if (byte < 0x21 || byte > 0x7e) return invalid('server name is not printable ASCII');
        return { kind: 'hello', servername: name.toString('latin1') };
      }
    }
    return invalid('malformed server_name extension');
  }
  return { kind: 'hello', servername: undefined };
}

const INCOMPLETE: ClientHelloResult = Object.freeze({ kind: 'incomplete' });

function invalid(reason: string): ClientHelloResult {
  return { kind: 'invalid', reason };
}

/** A bounds-checked cursor: reading past the end sets `failed` instead of throwing. */
class Reader {
  offset = 0;
  failed = false;

  constructor(readonly buffer: Buffer) {}

  get remaining(): number {
    return this.buffer.length - this.offset;
  }

  u8(): number {
    if (this.remaining < 1) return this.#fail();
    return this.buffer[this.offset++]!;
  }

  u16(): number {
    if (this.remaining < 2) return this.#fail();
    const value = this.buffer.readUInt16BE(this.offset);
    this.offset += 2;
    return value;
  }

  skip(count: number): void {
    if (this.remaining < count) this.#fail();
    else this.offset += count;
  }

  bytes(count: number): Buffer {
    if (this.remaining < count) {
      this.#fail();
      return Buffer.alloc(0);
    }
    const slice = this.buffer.subarray(this.offset, this.offset + count);
    this.offset += count;
    return slice;
  }

  #fail(): number {
    this.failed = true;
    this.offset = this.buffer.length;
    return 0;
  }
}
