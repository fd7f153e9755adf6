/**
 * Reads the server name (SNI, RFC 6066 §3) from the first bytes of a TLS connection, before any TLS
 * library sees them, so the listener can pick the certificate itself. Pure and bounded: the caller
 * feeds what has arrived so far, with the progress the last call returned, and gets a verdict.
 */

/** What the bytes so far say. */
export type ClientHelloResult =
  /** Pass `progress` back, with the longer buffer, once it holds `progress.waitFor` bytes. */
  | { readonly kind: 'incomplete'; readonly progress: ClientHelloProgress }
  | { readonly kind: 'invalid'; readonly reason: string }
  /** `servername` is the raw name the client sent, or undefined when it sent none. */
  | { readonly kind: 'hello'; readonly servername: string | undefined };

/**
 * Where the parse of an incomplete ClientHello stopped. Given back, it lets the next parse go on from
 * the first record not yet complete without reading the ones before it, so a ClientHello that arrives
 * a byte at a time in 1-byte records costs work linear in its size, not quadratic.
 */
export interface ClientHelloProgress {
  /** Nothing can change before the data holds this many bytes; never more than the records' bound. */
  readonly waitFor: number;
  /** Where the first record not yet complete starts. */
  readonly offset: number;
  /** Handshake bytes in the complete records before `offset`. */
  readonly fragmentBytes: number;
  /** The first handshake bytes, up to the 4 of the message's type and length. */
  readonly header: readonly number[];
  /** The handshake message's length with its header, or -1 until the header is complete. */
  readonly needed: number;
}

/**
 * A ClientHello larger than this is refused (real ones are well under 2 KiB; post-quantum ones about 2).
 * The records carrying it may add 5 bytes of header for each of 16 records: the parse never waits for
 * more than 16,464 bytes, which (plus the last chunk read) bounds what a listener buffers before SNI.
 */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const RECORD_HANDSHAKE = 22;
const RECORD_HEADER_BYTES = 5;
const MAX_RECORDS_BYTES = MAX_CLIENT_HELLO_BYTES + 16 * RECORD_HEADER_BYTES;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;

const START: ClientHelloProgress = Object.freeze({ waitFor: 1, offset: 0, fragmentBytes: 0, header: Object.freeze([]), needed: -1 });

/**
 * Parses the ClientHello at the start of `data` (one or several TLS records, RFC 8446 §5.1). `from` is
 * the progress an earlier call on a prefix of `data` returned: this call then reads only the bytes
 * from `from.offset` on until the message is complete, and the message's records once more at the end.
 */
export function parseClientHello(data: Buffer, from: ClientHelloProgress = START): ClientHelloResult {
  if (data.length < from.waitFor) return { kind: 'incomplete', progress: from };
  let { offset, fragmentBytes, needed } = from;
  const header = [...from.header];
  // Reassemble the handshake message's header from as many records as it spans; count the rest.
  while (needed === -1 || fragmentBytes < needed) {
    if (data.length > offset && data[offset] !== RECORD_HANDSHAKE) {
      return invalid(offset === 0 ? 'not a TLS handshake record' : 'ClientHello interrupted by another record type');
    }
    // A further record needs its header and at least one byte.
    if (offset + RECORD_HEADER_BYTES + 1 > MAX_RECORDS_BYTES) return invalid('ClientHello records over the size limit');
    if (data.length < offset + RECORD_HEADER_BYTES) return incomplete(offset + RECORD_HEADER_BYTES, offset, fragmentBytes, header, needed);
    if (data[offset + 1] !== 3) return invalid('unknown TLS record version');
    const length = data.readUInt16BE(offset + 3);
    if (length === 0) return invalid('empty TLS record');
    const end = offset + RECORD_HEADER_BYTES + length;
    if (end > MAX_RECORDS_BYTES) return invalid('ClientHello records over the size limit');
    if (data.length < end) return incomplete(end, offset, fragmentBytes, header, needed);
    for (let i = offset + RECORD_HEADER_BYTES; header.length < 4 && i < end; i++) header.push(data[i]!);
    fragmentBytes += length;
    offset = end;
    if (needed === -1 && header.length === 4) {
      if (header[0] !== HANDSHAKE_CLIENT_HELLO) return invalid('first handshake message is not a ClientHello');
      needed = 4 + ((header[1]! << 16) | (header[2]! << 8) | header[3]!);
      if (needed > MAX_CLIENT_HELLO_BYTES) return invalid(`ClientHello of ${needed} bytes is over the limit`);
    }
  }
  return readServername(handshakeMessage(data, needed).subarray(4));
}

function incomplete(waitFor: number, offset: number, fragmentBytes: number, header: readonly number[], needed: number): ClientHelloResult {
  return { kind: 'incomplete', progress: { waitFor, offset, fragmentBytes, header, needed } };
}

/** The first `needed` handshake bytes of the records at the start of `data`, which hold at least that many. */
function handshakeMessage(data: Buffer, needed: number): Buffer {
  if (data.readUInt16BE(3) >= needed) return data.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + needed); // one record: no copy
  const message = Buffer.alloc(needed);
  let written = 0;
  for (let offset = 0; written < needed; ) {
    const length = data.readUInt16BE(offset + 3);
    const start = offset + RECORD_HEADER_BYTES;
    written += data.copy(message, written, start, start + Math.min(length, needed - written));
    offset = start + length;
  }
  return message;
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
