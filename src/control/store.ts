import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir } from './keys.js';

/**
 * The persistent state of the control plane behind one narrow interface: accounts, domain claims
 * and the clusters sessions have published (so a restart keeps serving them). Everything outside this file
 * sees plain records, never SQL or file paths, so a networked engine (shared by several gateways)
 * can implement the same interface later. Several processes may use one store at once (the gateway
 * and `tfgate accounts`): writes are transactions, readers never block writers.
 */
export interface ControlStore {
  /** Adds an account, or renames it when the key is already authorised. */
  addAccount(publicKey: string, name: string): Account;
  /** Removes an account with its domain claims and tokens; false when the key was not authorised. */
  removeAccount(publicKey: string): boolean;
  /** The account holding this public key (base64), if authorised. */
  findAccount(publicKey: string): Account | undefined;
  /** Every account, oldest first. */
  listAccounts(): Account[];
  /**
   * Stores an ownership token, replacing the account's earlier one for the same domain, unless the
   * account already has `maxPending` unexpired tokens for other domains (checked atomically).
   */
  putDomainToken(token: DomainToken, maxPending: number): { ok: true } | { ok: false; pending: number; nextExpiresAt: number };
  /** The account's latest token for a domain, expired or not. */
  findDomainToken(owner: string, domain: string): DomainToken | undefined;
  /**
   * Records that `owner` holds `domain` and uses up its token, atomically: refused (nothing
   * changes) when another account holds the domain, a name under it or a parent of it.
   */
  claimDomain(owner: string, domain: string): { ok: true; claim: DomainClaim } | { ok: false; conflict: DomainClaim };
  /** Removes `owner`'s claim on `domain`; false when it held none. */
  releaseDomain(owner: string, domain: string): boolean;
  /** Makes `owner`'s claimed domain global (every account may publish under it) or private; false when it holds no such claim. */
  setDomainGlobal(owner: string, domain: string, global: boolean): boolean;
  /** Claims on `name` itself, on its parents, and on names under it (of every account). Reads every claim: for claiming, which is rare. */
  overlappingClaims(name: string): DomainClaim[];
  /**
   * Claims on `name` itself and on its parents (of every account), topmost first: those that decide
   * who may publish it. Looked up by domain, so its cost does not grow with the number of claims.
   */
  coveringClaims(name: string): DomainClaim[];
  /** Every claim of one account, or of all accounts when `owner` is omitted, by domain. */
  listDomainClaims(owner?: string): DomainClaim[];
  /** Writes published-cluster changes in one transaction, synchronously: a change is durable (against a crash of the process) once this returns. */
  saveClusters(changes: readonly ClusterChange[]): void;
  /** Every published cluster held in the store, grouped by session (rid) in publish order. */
  listClusters(): StoredCluster[];
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

/** A domain an account has proved it owns (through a DNS TXT token). */
export interface DomainClaim {
  readonly domain: string;
  /** The owning account's public key, base64. */
  readonly owner: string;
  /** True when its owner lets every account publish under it. */
  readonly global: boolean;
  readonly claimedAt: number;
}

/** A cluster a session published, as the store keeps it (its session certificate's key included). */
export interface StoredCluster {
  /** The session's rid, hex. */
  readonly rid: string;
  /** The account's public key, base64. */
  readonly owner: string;
  /** The cluster id (the publish message's uuid), hex. */
  readonly id: string;
  readonly fqdn: string;
  readonly members: readonly string[];
  readonly rewrite: string | null;
  /** The session's certificate chain and key (PEM), or null when it published none. */
  readonly certificate: { readonly certPem: string; readonly keyPem: string } | null;
}

/** One change to a session's published clusters: `cluster` null removes it. */
export interface ClusterChange {
  readonly rid: string;
  readonly id: string;
  readonly cluster: StoredCluster | null;
}

/** A prepared ownership token, waiting for its claim. */
export interface DomainToken {
  readonly domain: string;
  /** The account's public key, base64. */
  readonly owner: string;
  readonly token: string;
  /** Ms since the epoch; the token is refused from then on. */
  readonly expiresAt: number;
}

/** How long an expired token is kept (so its claim can say "expired" rather than "no token"). */
const EXPIRED_TOKEN_KEPT_MS = 24 * 3_600_000;

/** The store's file name in the state directory. */
export const STORE_FILE = 'tfgate.sqlite';

/** Schema steps, applied in order; `PRAGMA user_version` records how many have run. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE accounts (
     public_key TEXT PRIMARY KEY NOT NULL,
     name       TEXT NOT NULL DEFAULT '',
     added_at   INTEGER NOT NULL
   ) STRICT`,
  `CREATE TABLE domain_claims (
     domain     TEXT PRIMARY KEY NOT NULL,
     owner      TEXT NOT NULL,
     global     INTEGER NOT NULL DEFAULT 0,
     claimed_at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX domain_claims_owner ON domain_claims (owner);
   CREATE TABLE domain_tokens (
     owner      TEXT NOT NULL,
     domain     TEXT NOT NULL,
     token      TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     PRIMARY KEY (owner, domain)
   ) STRICT`,
  `CREATE TABLE published_clusters (
     rid          TEXT NOT NULL,
     cluster_id   TEXT NOT NULL,
     owner        TEXT NOT NULL,
     fqdn         TEXT NOT NULL,
     members      TEXT NOT NULL,
     rewrite      TEXT,
     cert_pem     TEXT,
     key_pem      TEXT,
     published_at INTEGER NOT NULL,
     PRIMARY KEY (rid, cluster_id)
   ) STRICT;
   CREATE INDEX published_clusters_owner ON published_clusters (owner)`,
];

/** Opens (creating when missing) the SQLite store in `stateDir`. */
export function openStore(stateDir: string, options: { now?: () => number } = {}): ControlStore {
  ensurePrivateDir(stateDir);
  // It holds session certificates' private keys: the directory 0700, the file (and its WAL) 0600.
  if ((statSync(stateDir).mode & 0o077) !== 0) chmodSync(stateDir, 0o700);
  const path = join(stateDir, STORE_FILE);
  closeSync(openSync(path, 'a', 0o600));
  for (const file of [path, `${path}-wal`, `${path}-shm`]) {
    if (existsSync(file) && (statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  }
  return new SqliteStore(path, options.now ?? Date.now);
}

interface ClusterRow {
  rid: string;
  cluster_id: string;
  owner: string;
  fqdn: string;
  members: string;
  rewrite: string | null;
  cert_pem: string | null;
  key_pem: string | null;
}

interface ClaimRow {
  domain: string;
  owner: string;
  global: number;
  claimed_at: number;
}

interface TokenRow {
  domain: string;
  owner: string;
  token: string;
  expires_at: number;
}

/** Claims on the name, its parents or names under it; `substr` rather than LIKE, whose `_` is a wildcard. */
const OVERLAPPING_SQL = `SELECT domain, owner, global, claimed_at FROM domain_claims
  WHERE domain = @name
     OR substr(domain, -length(@name) - 1) = '.' || @name
     OR substr(@name, -length(domain) - 1) = '.' || domain
  ORDER BY length(domain), domain`;

/** Most labels a normalised name has (253 characters hold at most 127): bounds the cached `coveringClaims` statements. */
const MAX_LABELS = 127;

/** `name` and each parent of it: `a.b.c` → `a.b.c`, `b.c`, `c`. */
function suffixes(name: string): string[] {
  const list = [name];
  for (let dot = name.indexOf('.'); dot !== -1; dot = name.indexOf('.', dot + 1)) list.push(name.slice(dot + 1));
  return list;
}

interface AccountRow {
  public_key: string;
  name: string;
  added_at: number;
}

/** Every statement the store runs, prepared once when it opens (after the migrations: they name the tables). */
function prepareStatements(db: SqliteDatabase) {
  const claimColumns = 'SELECT domain, owner, global, claimed_at FROM domain_claims';
  return {
    putAccount: db.prepare<[string, string, number]>(
      'INSERT INTO accounts (public_key, name, added_at) VALUES (?, ?, ?) ON CONFLICT (public_key) DO UPDATE SET name = excluded.name',
    ),
    deleteOwnerClaims: db.prepare<[string]>('DELETE FROM domain_claims WHERE owner = ?'),
    deleteOwnerTokens: db.prepare<[string]>('DELETE FROM domain_tokens WHERE owner = ?'),
    deleteOwnerClusters: db.prepare<[string]>('DELETE FROM published_clusters WHERE owner = ?'),
    deleteAccount: db.prepare<[string]>('DELETE FROM accounts WHERE public_key = ?'),
    findAccount: db.prepare<[string], AccountRow>('SELECT public_key, name, added_at FROM accounts WHERE public_key = ?'),
    listAccounts: db.prepare<[], AccountRow>('SELECT public_key, name, added_at FROM accounts ORDER BY added_at, public_key'),
    deleteOldTokens: db.prepare<[number]>('DELETE FROM domain_tokens WHERE expires_at < ?'),
    pendingTokens: db.prepare<[string, string, number], { pending: number; next_expires_at: number | null }>(
      'SELECT count(*) AS pending, min(expires_at) AS next_expires_at FROM domain_tokens WHERE owner = ? AND domain != ? AND expires_at > ?',
    ),
    putToken: db.prepare<[string, string, string, number]>(
      'INSERT INTO domain_tokens (owner, domain, token, expires_at) VALUES (?, ?, ?, ?) ON CONFLICT (owner, domain) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at',
    ),
    findToken: db.prepare<[string, string], TokenRow>('SELECT owner, domain, token, expires_at FROM domain_tokens WHERE owner = ? AND domain = ?'),
    insertClaim: db.prepare<[string, string, number]>(
      'INSERT INTO domain_claims (domain, owner, global, claimed_at) VALUES (?, ?, 0, ?) ON CONFLICT (domain) DO NOTHING',
    ),
    deleteToken: db.prepare<[string, string]>('DELETE FROM domain_tokens WHERE owner = ? AND domain = ?'),
    findClaim: db.prepare<[string], ClaimRow>(`${claimColumns} WHERE domain = ?`),
    releaseClaim: db.prepare<[string, string]>('DELETE FROM domain_claims WHERE owner = ? AND domain = ?'),
    setClaimGlobal: db.prepare<[number, string, string]>('UPDATE domain_claims SET global = ? WHERE owner = ? AND domain = ?'),
    overlappingClaims: db.prepare<[{ name: string }], ClaimRow>(OVERLAPPING_SQL),
    listClaims: db.prepare<[], ClaimRow>(`${claimColumns} ORDER BY domain`),
    listOwnerClaims: db.prepare<[string], ClaimRow>(`${claimColumns} WHERE owner = ? ORDER BY domain`),
    deleteCluster: db.prepare<[string, string]>('DELETE FROM published_clusters WHERE rid = ? AND cluster_id = ?'),
    putCluster: db.prepare<[ClusterParams]>(
      `INSERT INTO published_clusters (rid, cluster_id, owner, fqdn, members, rewrite, cert_pem, key_pem, published_at)
       VALUES (@rid, @id, @owner, @fqdn, @members, @rewrite, @certPem, @keyPem, @at)
       ON CONFLICT (rid, cluster_id) DO UPDATE SET owner = excluded.owner, fqdn = excluded.fqdn, members = excluded.members,
         rewrite = excluded.rewrite, cert_pem = excluded.cert_pem, key_pem = excluded.key_pem`,
    ),
    listClusters: db.prepare<[], ClusterRow>(
      'SELECT rid, cluster_id, owner, fqdn, members, rewrite, cert_pem, key_pem FROM published_clusters ORDER BY rid, published_at, rowid',
    ),
  };
}

/** The named parameters of {@link prepareStatements}' `putCluster`. */
interface ClusterParams {
  rid: string;
  id: string;
  owner: string;
  fqdn: string;
  members: string;
  rewrite: string | null;
  certPem: string | null;
  keyPem: string | null;
  at: number;
}

class SqliteStore implements ControlStore {
  readonly #db: SqliteDatabase;
  readonly #sql: ReturnType<typeof prepareStatements>;
  /** `coveringClaims` statements by their number of names (1 to {@link MAX_LABELS}), prepared at first use. */
  readonly #coveringSql = new Map<number, Statement<string[], ClaimRow>>();
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
      this.#sql = prepareStatements(this.#db);
    } catch (err) {
      this.#db.close();
      throw err;
    }
  }

  addAccount(publicKey: string, name: string): Account {
    const addedAt = this.#now();
    this.#sql.putAccount.run(publicKey, name, addedAt);
    return this.findAccount(publicKey)!;
  }

  removeAccount(publicKey: string): boolean {
    return this.#db.transaction(() => {
      this.#sql.deleteOwnerClaims.run(publicKey);
      this.#sql.deleteOwnerTokens.run(publicKey);
      this.#sql.deleteOwnerClusters.run(publicKey);
      return this.#sql.deleteAccount.run(publicKey).changes > 0;
    }).immediate();
  }

  findAccount(publicKey: string): Account | undefined {
    const row = this.#sql.findAccount.get(publicKey);
    return row ? toAccount(row) : undefined;
  }

  listAccounts(): Account[] {
    return this.#sql.listAccounts.all().map(toAccount);
  }

  putDomainToken(token: DomainToken, maxPending: number): { ok: true } | { ok: false; pending: number; nextExpiresAt: number } {
    // Immediate: the count and the insert hold the write lock together, so racing prepares cannot pass the limit.
    return this.#db.transaction((): { ok: true } | { ok: false; pending: number; nextExpiresAt: number } => {
      const now = this.#now();
      this.#sql.deleteOldTokens.run(now - EXPIRED_TOKEN_KEPT_MS);
      const { pending, next_expires_at: nextExpiresAt } = this.#sql.pendingTokens.get(token.owner, token.domain, now)!;
      if (pending >= maxPending) return { ok: false, pending, nextExpiresAt: nextExpiresAt ?? now };
      this.#sql.putToken.run(token.owner, token.domain, token.token, token.expiresAt);
      return { ok: true };
    }).immediate();
  }

  findDomainToken(owner: string, domain: string): DomainToken | undefined {
    const row = this.#sql.findToken.get(owner, domain);
    return row ? Object.freeze({ owner: row.owner, domain: row.domain, token: row.token, expiresAt: row.expires_at }) : undefined;
  }

  claimDomain(owner: string, domain: string): { ok: true; claim: DomainClaim } | { ok: false; conflict: DomainClaim } {
    // Immediate: the check and the insert hold the write lock together, so of two racing claims one wins.
    return this.#db.transaction((): { ok: true; claim: DomainClaim } | { ok: false; conflict: DomainClaim } => {
      const conflict = this.overlappingClaims(domain).find((claim) => claim.owner !== owner);
      if (conflict) return { ok: false, conflict };
      this.#sql.insertClaim.run(domain, owner, this.#now());
      this.#sql.deleteToken.run(owner, domain);
      const row = this.#sql.findClaim.get(domain)!;
      return { ok: true, claim: toClaim(row) };
    }).immediate();
  }

  releaseDomain(owner: string, domain: string): boolean {
    return this.#sql.releaseClaim.run(owner, domain).changes > 0;
  }

  setDomainGlobal(owner: string, domain: string, global: boolean): boolean {
    return this.#sql.setClaimGlobal.run(global ? 1 : 0, owner, domain).changes > 0;
  }

  overlappingClaims(name: string): DomainClaim[] {
    return this.#sql.overlappingClaims.all({ name }).map(toClaim);
  }

  coveringClaims(name: string): DomainClaim[] {
    const names = suffixes(name);
    let statement = this.#coveringSql.get(names.length);
    if (!statement) {
      // `domain IN (?, …)` is answered through the primary key's index, one search per name.
      const slots = names.map(() => '?').join(', ');
      statement = this.#db.prepare<string[], ClaimRow>(
        `SELECT domain, owner, global, claimed_at FROM domain_claims WHERE domain IN (${slots}) ORDER BY length(domain), domain`,
      );
      if (names.length <= MAX_LABELS) this.#coveringSql.set(names.length, statement);
    }
    return statement.all(...names).map(toClaim);
  }

  listDomainClaims(owner?: string): DomainClaim[] {
    const rows = owner === undefined ? this.#sql.listClaims.all() : this.#sql.listOwnerClaims.all(owner);
    return rows.map(toClaim);
  }

  saveClusters(changes: readonly ClusterChange[]): void {
    if (changes.length === 0) return;
    const { deleteCluster: remove, putCluster: put } = this.#sql;
    const at = this.#now();
    this.#db.transaction(() => {
      for (const { rid, id, cluster } of changes) {
        if (!cluster) {
          remove.run(rid, id);
          continue;
        }
        put.run({
          rid,
          id,
          owner: cluster.owner,
          fqdn: cluster.fqdn,
          members: JSON.stringify(cluster.members),
          rewrite: cluster.rewrite,
          certPem: cluster.certificate?.certPem ?? null,
          keyPem: cluster.certificate?.keyPem ?? null,
          at,
        });
      }
    }).immediate();
  }

  listClusters(): StoredCluster[] {
    return this.#sql.listClusters.all().map(toStoredCluster);
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

function toClaim(row: ClaimRow): DomainClaim {
  return Object.freeze({ domain: row.domain, owner: row.owner, global: row.global !== 0, claimedAt: row.claimed_at });
}

function toStoredCluster(row: ClusterRow): StoredCluster {
  const members = JSON.parse(row.members) as unknown;
  return Object.freeze({
    rid: row.rid,
    owner: row.owner,
    id: row.cluster_id,
    fqdn: row.fqdn,
    members: Object.freeze(Array.isArray(members) ? members.filter((m): m is string => typeof m === 'string') : []),
    rewrite: row.rewrite,
    certificate: row.cert_pem !== null && row.key_pem !== null ? Object.freeze({ certPem: row.cert_pem, keyPem: row.key_pem }) : null,
  });
}

function toAccount(row: AccountRow): Account {
  return Object.freeze({ publicKey: row.public_key, name: row.name, addedAt: row.added_at });
}
