import {
  KEY_BYTES,
  NONCE_BYTES,
  box,
  boxOpen,
  encodeHandshakeRefusal,
  encodeHandshakeReply,
  randomBytes,
  readHandshakeReply,
} from './frames.js';
import type { KeyPair } from './frames.js';
import { encodeKey } from './keys.js';
import { Session } from './sessions.js';
import type { SessionTable } from './sessions.js';
import type { ControlStore } from './store.js';

/** Length of a session id: 16 random bytes (protocol.md, Handshake 6). */
export const RID_BYTES = 16;

/** What the server does with an `auth`. */
export type HandshakeOutcome =
  | {
      readonly ok: true;
      readonly session: Session;
      readonly resumed: boolean;
      /** The resumption waits for a sealed frame before it replaces the session's live connection. */
      readonly pending: boolean;
      /** An unproven session of the account that made room for this one: the caller ends it. */
      readonly displaced: Session | undefined;
      readonly reply: Buffer;
    }
  | { readonly ok: false; readonly reason: string; readonly reply: Buffer };

/** What the server-side handshake needs. */
export interface HandshakeContext {
  readonly gatewayKeys: KeyPair;
  readonly store: ControlStore;
  readonly sessions: SessionTable;
  readonly now: number;
  readonly messagesPerSecond: number;
  /** Sessions one account may hold at once; a new one past it is refused (resuming a held one is not new). */
  readonly maxSessionsPerAccount: number;
}

/**
 * Server side of protocol.md "Handshake": looks the key up among the accounts, then either resumes
 * the session named by `rid` (only when it belongs to the same key) or opens a new one, with a
 * fresh session key either way. Binds the connection to the session. A refusal gets the 5-element
 * answer a client reads as "Authentication failed", and so does a new session past the account's limit.
 */
export function acceptAuth(
  auth: { readonly user: Uint8Array; readonly rid: Uint8Array },
  peer: Buffer,
  context: HandshakeContext,
): HandshakeOutcome {
  const publicKey = encodeKey(auth.user);
  const account = context.store.findAccount(publicKey);
  if (!account) return { ok: false, reason: 'unknown public key', reply: encodeHandshakeRefusal() };

  // An `auth` proves nothing yet: the public key is no secret, and a rid shows in logs. Only a frame
  // sealed with the key this reply carries proves the client holds the account's secret key, so
  // until then a connection may neither displace a live one nor count against the account's limit.
  const sessionKey = randomBytes(KEY_BYTES);
  const held = context.sessions.byRid(auth.rid);
  let session: Session;
  let pending = false;
  let displaced: Session | undefined;
  if (held && !held.ended && held.publicKey === publicKey) {
    session = held;
    session.accountName = account.name;
    if (held.peer === null) {
      // Nothing live to protect: the reconnect takes the session over now, as a client expects.
      session.rekey(sessionKey);
      context.sessions.attach(session, peer, context.now);
    } else {
      context.sessions.attachPending(session, peer, sessionKey);
      pending = true;
    }
  } else {
    const unproven = context.sessions.unprovenOf(publicKey);
    const count = context.sessions.countOf(publicKey) - unproven.length;
    if (count >= context.maxSessionsPerAccount) {
      return { ok: false, reason: `the account holds ${count} sessions, the limit (--max-sessions-per-account ${context.maxSessionsPerAccount})`, reply: encodeHandshakeRefusal() };
    }
    // Unproven sessions hold nothing (publishing needs a sealed frame): past the limit, the oldest goes.
    if (count + unproven.length >= context.maxSessionsPerAccount) displaced = unproven[0];
    // A rid held by another key, or no longer held, never opens that session: a new one it is.
    session = new Session(randomBytes(RID_BYTES), {
      publicKey,
      accountName: account.name,
      sessionKey,
      now: context.now,
      messagesPerSecond: context.messagesPerSecond,
    });
    context.sessions.add(session);
    context.sessions.attach(session, peer, context.now);
  }
  const nonce = randomBytes(NONCE_BYTES);
  const boxed = box(sessionKey, nonce, auth.user, context.gatewayKeys.secretKey);
  return { ok: true, session, resumed: held === session, pending, displaced, reply: encodeHandshakeReply(nonce, boxed, session.rid) };
}

/**
 * Client side: reads the gateway's answer to `auth` and opens the session key with the gateway's
 * public key and the client's secret key. Throws a reason a person can act on.
 */
export function openHandshake(frame: Uint8Array, serverKey: Uint8Array, clientKeys: KeyPair): { sessionKey: Uint8Array; rid: Uint8Array } {
  const reply = readHandshakeReply(frame);
  if (!reply) throw new Error('Authentication failed: the gateway refused this key (unknown to it: authorise it with tfgate accounts add <public key>; or this account holds too many sessions)');
  const sessionKey = boxOpen(reply.boxed, reply.nonce, serverKey, clientKeys.secretKey);
  if (!sessionKey || sessionKey.length !== KEY_BYTES) {
    throw new Error("cannot open the gateway's handshake: the server key does not match this gateway (check --server-key or the .spub file)");
  }
  return { sessionKey, rid: reply.rid };
}
