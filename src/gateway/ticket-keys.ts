import { randomBytes } from 'node:crypto';

/** How often TLS session ticket keys are replaced: a stolen key opens at most this much recorded traffic. */
export const TICKET_KEY_LIFETIME_MS = 6 * 3_600_000;

/**
 * The TLS session ticket keys of the whole gateway: made by the primary, given to every data plane
 * process (so a session resumes on whichever worker accepts it), replaced on a timer.
 */
export class TicketKeyRotation {
  #current = randomBytes(48);
  readonly #listeners = new Set<(keys: Buffer) => void>();
  readonly #timer: NodeJS.Timeout;

  constructor(lifetimeMs = TICKET_KEY_LIFETIME_MS) {
    this.#timer = setInterval(() => this.rotate(), lifetimeMs);
    this.#timer.unref();
  }

  /** The 48 bytes in force (name, HMAC and AES keys, as OpenSSL takes them). */
  get current(): Buffer {
    return this.#current;
  }

  /** Calls `listener` with each new set of keys. */
  onRotate(listener: (keys: Buffer) => void): void {
    this.#listeners.add(listener);
  }

  /** Replaces the keys now. */
  rotate(): void {
    this.#current = randomBytes(48);
    for (const listener of this.#listeners) listener(this.#current);
  }

  /** Stops rotating. Idempotent. */
  close(): void {
    clearInterval(this.#timer);
  }
}
