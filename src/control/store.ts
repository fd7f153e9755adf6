import Database from 'better-sqlite3';
import type { Database as SqliteDatabase } from 'better-sqlite3';
import { join } from 'node:path';
import { ensurePrivateDir } from './keys.js';

/**
 * The persistent state of the control plane behind one narrow interface: accounts now; domain
 * claims, certificates and published clusters join it in later issues. Everything outside this file
 * sees plain records, never SQL or file paths, so a networked engine (shared by several gateways)
 * can implement the same interface later. Several processes may use one store at once (the gateway
 * and `tfgate accounts`): writes are transactions, readers never block writers.
 */
export interface ControlStore {
  /** Adds an account, or renames it when the key is already authorised. */
  addAccount(publicKey: string, name: string): Account;
  /** Removes an account; false when the key was not authorised. */
  removeAccount(publicKey: string): boolean;
  /** The account holding this public key (base64), if authorised. */
  findAccount(publicKey: string): Account | undefined;
  /** Every account, oldest first. */
  listAccounts(): Account[];
  /**
   * Calls `listener` (at most every `intervalMs`) after another process changed the store; the
   * listener re-reads what it cares about. Returns the function that stops watching.
   */
  watch(listener: () => void, intervalMs: number): () => void;
  /** Closes the store; idempotent. */
  close(): void;
}

/** An authorised client key. */
export interface Account {
  /** The client's `crypto_box` public key, base64. */
  readonly publicKey: string;
  /** Free text: a name or an email address. */
  readonly name: string;
  /** When it was added, ms since the epoch. */
  readonly addedAt: number;
}

/** The store's file name in the state directory. */
export const STORE_FILE = 'tfgate.sqlite';

/** Schema steps, applied in order; `PRAGMA user_version` records how many have run. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE accounts (
     public_key TEXT PRIMARY KEY NOT NULL,
     name       TEXT NOT NULL DEFAULT '',
     added_at   INTEGER NOT NULL
   ) STRICT`,
];

/** Opens (creating when missing) the SQLite store in `stateDir`. */
export function openStore(stateDir: string, options: { now?: () => number } = {}): ControlStore {
  ensurePrivateDir(stateDir);
  return new SqliteStore(join(stateDir, STORE_FILE), options.now ?? Date.now);
}

interface AccountRow {
  public_key: string;
  name: string;
  added_at: number;
}

class SqliteStore implements ControlStore {
  readonly #db: SqliteDatabase;
  readonly #now: () => number;
  readonly #watchers = new Set<ReturnType<typeof setInterval>>();
  #closed = false;

  constructor(path: string, now: () => number) {
    this.#now = now;
    this.#db = new Database(path);
    try {
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('busy_timeout = 5000');
      this.#db.pragma('synchronous = NORMAL');
      this.#migrate();
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  addAccount(publicKey: string, name: string): Account {
    const addedAt = this.#now();
    this.#db
      .prepare('INSERT INTO accounts (public_key, name, added_at) VALUES (?, ?, ?) ON CONFLICT (public_key) DO UPDATE SET name = excluded.name')
      .run(publicKey, name, addedAt);
    return this.findAccount(publicKey)!;
  }

  removeAccount(publicKey: string): boolean {
    return this.#db.prepare('DELETE FROM accounts WHERE public_key = ?').run(publicKey).changes > 0;
  }

  findAccount(publicKey: string): Account | undefined {
    const row = this.#db.prepare('SELECT public_key, name, added_at FROM accounts WHERE public_key = ?').get(publicKey) as AccountRow | undefined;
    return row ? toAccount(row) : undefined;
  }

  listAccounts(): Account[] {
    const rows = this.#db.prepare('SELECT public_key, name, added_at FROM accounts ORDER BY added_at, public_key').all() as AccountRow[];
    return rows.map(toAccount);
  }

  watch(listener: () => void, intervalMs: number): () => void {
    // data_version changes only when another connection commits: exactly "someone else changed it".
    let seen = this.#dataVersion();
    const timer = setInterval(() => {
      if (this.#closed) return;
      const now = this.#dataVersion();
      if (now !== seen) {
        seen = now;
        listener();
      }
    }, intervalMs);
    timer.unref();
    this.#watchers.add(timer);
    return () => {
      clearInterval(timer);
      this.#watchers.delete(timer);
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#watchers) clearInterval(timer);
    this.#watchers.clear();
    this.#db.close();
  }

  #dataVersion(): number {
    return this.#db.pragma('data_version', { simple: true }) as number;
  }

  #migrate(): void {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new Error(`the store was written by a newer tfgate (schema ${version}, this one knows ${MIGRATIONS.length})`);
    }
    if (version === MIGRATIONS.length) return;
    this.#db.transaction(() => {
      // Re-read inside the (immediate) transaction: another process may have migrated meanwhile.
      const current = this.#db.pragma('user_version', { simple: true }) as number;
      for (let i = current; i < MIGRATIONS.length; i++) this.#db.exec(MIGRATIONS[i]!);
      this.#db.pragma(`user_version = ${MIGRATIONS.length}`);
    }).immediate();
  }
}

function toAccount(row: AccountRow): Account {
  return Object.freeze({ publicKey: row.public_key, name: row.name, addedAt: row.added_at });
}
