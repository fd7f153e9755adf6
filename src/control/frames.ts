import { Decoder, Encoder } from 'cbor-x';
import nacl from 'tweetnacl';

/**
 * The wire format of the control protocol (../shared/protocol.md): CBOR arrays whose fields are
 * byte strings (major type 2) or text strings (major type 3) exactly as the protocol says, and NaCl
 * `crypto_box` / `crypto_secretbox`. The only file that imports cbor-x or tweetnacl.
 *
 * Decoding is strict: CBOR maps come back as `Map` so key types can be checked (a byte-string key
 * is not a text key), and nothing here trusts the peer's lengths beyond what cbor-x bounds-checks.
 */

/** NaCl sizes the protocol fixes. */
export const NONCE_BYTES = 24;
export const KEY_BYTES = 32;

/** A Curve25519 key pair (`crypto_box`). */
export interface KeyPair {
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
}

const encoder = new Encoder({ useRecords: false, variableMapSize: true, tagUint8Array: false, pack: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false });

/** A CBOR value after strict decoding: maps are `Map`s, byte strings `Uint8Array`s. */
export type CborValue = unknown;

/** Encodes a value; `Uint8Array`s become byte strings, strings text strings, objects maps with text keys. */
export function encodeCbor(value: unknown): Buffer {
  return encoder.encode(value);
}

/** Decodes one CBOR item; throws on malformed or trailing data, and on any tag (see {@link assertUntagged}). */
export function decodeCbor(bytes: Uint8Array): CborValue {
  assertUntagged(bytes);
  return decoder.decode(bytes);
}

/**
 * Throws unless `bytes` holds no CBOR tag (major type 6). The protocol uses none, and cbor-x gives some
 * tags costly meanings: a tag-2 bignum of n bytes takes O(n²) to build, so one 200 kB frame from a peer
 * that never authenticated held the event loop for 15 s. A linear walk over the item headers, before
 * cbor-x sees the bytes; lengths are stepped over, never allocated. Truncation and other malformations
 * are left to the decoder.
 */
function assertUntagged(bytes: Uint8Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Items still to read in each open container, innermost last; -1 = indefinite (ends at a break).
  const open: number[] = [1];
  let at = 0;
  while (open.length > 0 && at < bytes.length) {
    const left = open[open.length - 1]!;
    if (left === 0) {
      open.pop();
      continue;
    }
    const initial = bytes[at++]!;
    if (initial === 0xff && left === -1) {
      open.pop();
      continue;
    }
    if (left > 0) open[open.length - 1] = left - 1;
    const major = initial >> 5;
    const info = initial & 0x1f;
    if (major === 6) throw new Error('CBOR tags are not part of the control protocol');
    let argument = info;
    if (info >= 24 && info <= 27) {
      const size = 1 << (info - 24);
      if (at + size > bytes.length) return; // truncated: the decoder says so
      argument = size === 1 ? view.getUint8(at) : size === 2 ? view.getUint16(at) : size === 4 ? view.getUint32(at) : Number(view.getBigUint64(at));
      at += size;
    } else if (info === 31 && major >= 2 && major <= 5) {
      open.push(-1);
      continue;
    } else if (info > 23) {
      return; // reserved additional information: malformed, the decoder says so
    }
    if (major === 2 || major === 3) at += argument;
    else if (major === 4) open.push(argument);
    else if (major === 5) open.push(argument * 2);
  }
}

/** `n` random bytes from NaCl's CSPRNG. */
export function randomBytes(n: number): Uint8Array {
  return nacl.randomBytes(n);
}

/** A fresh `crypto_box` key pair. */
export function generateKeyPair(): KeyPair {
  const pair = nacl.box.keyPair();
  return { publicKey: pair.publicKey, secretKey: pair.secretKey };
}

/** The key pair whose secret key is `secretKey` (32 bytes). */
export function keyPairFromSecretKey(secretKey: Uint8Array): KeyPair {
  const pair = nacl.box.keyPair.fromSecretKey(secretKey);
  return { publicKey: pair.publicKey, secretKey: pair.secretKey };
}

/** `crypto_box(message, nonce, theirPublicKey, mySecretKey)`. */
export function box(message: Uint8Array, nonce: Uint8Array, theirPublicKey: Uint8Array, mySecretKey: Uint8Array): Uint8Array {
  return nacl.box(message, nonce, theirPublicKey, mySecretKey);
}

/** Opens a `crypto_box`; null when it does not authenticate. */
export function boxOpen(boxed: Uint8Array, nonce: Uint8Array, theirPublicKey: Uint8Array, mySecretKey: Uint8Array): Uint8Array | null {
  if (nonce.length !== NONCE_BYTES || theirPublicKey.length !== KEY_BYTES || mySecretKey.length !== KEY_BYTES) return null;
  return nacl.box.open(boxed, nonce, theirPublicKey, mySecretKey);
}

/** `crypto_secretbox(message, nonce, key)`. */
export function secretbox(message: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array {
  return nacl.secretbox(message, nonce, key);
}

/** Opens a `crypto_secretbox`; null when it does not authenticate. */
export function secretboxOpen(boxed: Uint8Array, nonce: Uint8Array, key: Uint8Array): Uint8Array | null {
  if (nonce.length !== NONCE_BYTES || key.length !== KEY_BYTES) return null;
  return nacl.secretbox.open(boxed, nonce, key);
}

/** True for a decoded CBOR byte string. */
export function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

const EMPTY: Uint8Array = new Uint8Array(0);

/** A message after the handshake, as it travels: `[nonce, command, uuid, params_box, bulk_box]`, all byte strings. */
export interface SealedMessage {
  readonly nonce: Uint8Array;
  readonly command: Uint8Array;
  readonly uuid: Uint8Array;
  readonly paramsBox: Uint8Array;
  readonly bulkBox: Uint8Array;
}

/** A decoded message: command as text (it is ASCII on the wire), params a map with text keys. */
export interface OpenMessage {
  readonly command: string;
  readonly uuid: Uint8Array;
  readonly params: ReadonlyMap<string, unknown>;
  readonly bulk: Uint8Array;
}

/** Why a frame could not be read; `uuid` is set when the frame named one (so a reply is owed). */
export interface FrameProblem {
  readonly reason: string;
  readonly uuid?: Uint8Array;
}

/**
 * Reads the outer shape of a message frame without decrypting it. Returns the sealed message, or a
 * problem (with the uuid when one could be read, so the sender can be told).
 */
export function readSealed(frame: Uint8Array): { ok: true; message: SealedMessage } | { ok: false; problem: FrameProblem } {
  let value: unknown;
  try {
    value = decodeCbor(frame);
  } catch {
    return { ok: false, problem: { reason: 'malformed CBOR' } };
  }
  if (!Array.isArray(value)) return { ok: false, problem: { reason: 'a frame must be a CBOR array' } };
  // A uuid somewhat over the limit is still echoed in the exception, so the client's wait for its reply
  // ends; one over 1 KiB is not worth echoing (nor an oversized frame's megabyte).
  const uuid = value.length === 5 && isBytes(value[2]) && value[2].length <= 1024 ? value[2] : undefined;
  const fail = (reason: string): { ok: false; problem: FrameProblem } => ({
    ok: false,
    problem: uuid && uuid.length > 0 ? { reason, uuid } : { reason },
  });
  if (value.length !== 5) return fail(`a frame must be an array of 5 elements, not ${value.length}`);
  const [nonce, command, uuidField, paramsBox, bulkBox] = value as unknown[];
  if (!isBytes(uuidField)) return fail('uuid must be a byte string');
  if (uuidField.length > MAX_UUID_BYTES) return fail(`uuid longer than ${MAX_UUID_BYTES} bytes`);
  if (!isBytes(nonce) || nonce.length !== NONCE_BYTES) return fail(`nonce must be a byte string of ${NONCE_BYTES} bytes`);
  if (!isBytes(command)) return fail('command must be a byte string');
  if (command.length > MAX_COMMAND_BYTES) return fail('command too long');
  if (!isBytes(paramsBox)) return fail('params must be a byte string (a secretbox)');
  if (!isBytes(bulkBox)) return fail('bulk must be a byte string (a secretbox or empty)');
  return { ok: true, message: { nonce, command, uuid: uuidField, paramsBox, bulkBox } };
}

/** Longest uuid accepted (20ft sends 16 bytes; its text form is 36). */
export const MAX_UUID_BYTES = 64;
const MAX_COMMAND_BYTES = 64;

/** Decrypts and decodes a sealed message; a problem (with the uuid) when it does not open or is not a map. */
export function openSealed(message: SealedMessage, sessionKey: Uint8Array): { ok: true; message: OpenMessage } | { ok: false; problem: FrameProblem } {
  const withUuid = (reason: string): { ok: false; problem: FrameProblem } => ({
    ok: false,
    problem: message.uuid.length > 0 ? { reason, uuid: message.uuid } : { reason },
  });
  const plain = secretboxOpen(message.paramsBox, message.nonce, sessionKey);
  if (plain === null) return withUuid('params could not be decrypted');
  let bulk = EMPTY;
  if (message.bulkBox.length > 0) {
    const opened = secretboxOpen(message.bulkBox, message.nonce, sessionKey);
    if (opened === null) return withUuid('bulk could not be decrypted');
    bulk = opened;
  }
  let params: unknown;
  try {
    params = decodeCbor(plain);
  } catch (err) {
    return withUuid(`params are not valid CBOR (${(err instanceof Error ? err.message : String(err)).slice(0, 200)})`);
  }
  if (!(params instanceof Map)) return withUuid('params must be a CBOR map');
  for (const key of params.keys()) {
    if (typeof key !== 'string') return withUuid('params keys must be text strings');
  }
  const command = asciiCommand(message.command);
  if (command === undefined) return withUuid('command must be printable ASCII');
  return { ok: true, message: { command, uuid: message.uuid, params: params as Map<string, unknown>, bulk } };
}

function asciiCommand(bytes: Uint8Array): string | undefined {
  let text = '';
  for (const byte of bytes) {
    if (byte < 0x20 || byte > 0x7e) return undefined;
    text += String.fromCharCode(byte);
  }
  return text;
}

/**
 * Seals a message: `[nonce, command, uuid, secretbox(cbor(params)), secretbox(bulk) or b'']` with a
 * fresh random nonce. A reply has an empty command and the request's uuid.
 */
export function sealMessage(
  sessionKey: Uint8Array,
  command: string,
  uuid: Uint8Array,
  params: unknown,
  bulk?: Uint8Array,
): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  return sealMessageWithNonce(sessionKey, nonce, command, uuid, params, bulk);
}

/** {@link sealMessage} with a given nonce (tests replay frames with it). */
export function sealMessageWithNonce(
  sessionKey: Uint8Array,
  nonce: Uint8Array,
  command: string,
  uuid: Uint8Array,
  params: unknown,
  bulk?: Uint8Array,
): Buffer {
  const paramsBox = secretbox(encodeCbor(params), nonce, sessionKey);
  const bulkBox = bulk && bulk.length > 0 ? secretbox(bulk, nonce, sessionKey) : EMPTY;
  return encodeCbor([bytes(nonce), Buffer.from(command, 'latin1'), bytes(uuid), bytes(paramsBox), bytes(bulkBox)]);
}

/** The plaintext `auth` frame: `[b'', b'auth', b'', {"user": pub, "rid": rid}, b'']`. */
export function encodeAuth(publicKey: Uint8Array, rid: Uint8Array): Buffer {
  return encodeCbor([EMPTY, Buffer.from('auth'), EMPTY, { user: bytes(publicKey), rid: bytes(rid) }, EMPTY]);
}

/** An `auth` frame's contents, or undefined when the frame is not an `auth` command at all. */
export type AuthFrame = { ok: true; user: Uint8Array; rid: Uint8Array } | { ok: false; reason: string };

/**
 * Reads a frame from an unauthenticated connection: undefined when it is not an `auth` command
 * (it is then dropped silently), else the auth or why it is malformed.
 */
export function readAuth(frame: Uint8Array): AuthFrame | undefined {
  let value: unknown;
  try {
    value = decodeCbor(frame);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length < 2) return undefined;
  const command = value[1] as unknown;
  if (!isBytes(command) || Buffer.compare(Buffer.from(command), AUTH) !== 0) return undefined;
  if (value.length !== 5) return { ok: false, reason: 'auth must be an array of 5 elements' };
  const params = value[3] as unknown;
  if (!(params instanceof Map)) return { ok: false, reason: 'auth parameters must be a map' };
  const user = params.get('user') as unknown;
  const rid = params.get('rid') as unknown;
  if (!isBytes(user) || user.length !== KEY_BYTES) return { ok: false, reason: 'auth "user" must be a 32-byte public key' };
  if (rid !== undefined && rid !== null && !isBytes(rid)) return { ok: false, reason: 'auth "rid" must be a byte string' };
  return { ok: true, user, rid: isBytes(rid) ? rid : EMPTY };
}

const AUTH = Buffer.from('auth');

/** The handshake answer: `[nonce, box(session_key), rid]`. */
export function encodeHandshakeReply(nonce: Uint8Array, boxedSessionKey: Uint8Array, rid: Uint8Array): Buffer {
  return encodeCbor([bytes(nonce), bytes(boxedSessionKey), bytes(rid)]);
}

/** The handshake refusal: any 5-element reply; a client treats "not 3 elements" as failure. */
export function encodeHandshakeRefusal(): Buffer {
  return encodeCbor([EMPTY, EMPTY, EMPTY, {}, EMPTY]);
}

/** Reads a handshake answer (client side): the three byte strings, or undefined when it is a refusal. */
export function readHandshakeReply(frame: Uint8Array): { nonce: Uint8Array; boxed: Uint8Array; rid: Uint8Array } | undefined {
  let value: unknown;
  try {
    value = decodeCbor(frame);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 3) return undefined;
  const [nonce, boxed, rid] = value as unknown[];
  if (!isBytes(nonce) || nonce.length !== NONCE_BYTES || !isBytes(boxed) || !isBytes(rid)) return undefined;
  return { nonce, boxed, rid };
}

/** A `Buffer` view, so cbor-x writes a plain byte string whatever the input's class. */
function bytes(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
