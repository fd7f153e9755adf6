import { parseAuthority, parseHostname } from '../hostname.js';
import type { Logger } from '../log.js';
import { parseMemberAddress } from '../upstreams/index.js';
import { CertificateError, checkCertificate, checkServable, parseCertificateBundle } from '../sni/index.js';
import type { CertificateBundle } from '../sni/index.js';
import type { CertificateSpec, RoutingState } from '../vhost/index.js';
import type { Domains } from './domains.js';
import { BadParamsError, ControlError, ForbiddenError } from './errors.js';
import { isBytes } from './frames.js';
import type { OpenMessage } from './frames.js';
import type { RoutingStateBuilder } from './routing-state.js';
import type { PublishedCluster, Session } from './sessions.js';
import type { ClusterChange, ControlStore, StoredCluster } from './store.js';

/** Results of a command, sent back as the reply's params when a reply was asked for. */
export type Results = Record<string, unknown>;

/** What the command handlers need. */
export interface CommandsOptions {
  readonly routing: RoutingStateBuilder;
  readonly applyRouting: (state: RoutingState) => Promise<void>;
  /** Domain claims and who may publish what. */
  readonly domains: Domains;
  /** Where published clusters are persisted, as they change. */
  readonly store: Pick<ControlStore, 'saveClusters'>;
  readonly log: Logger;
  /** Tells a session something it did not ask about (a `log` message), e.g. that its cluster was unpublished. */
  readonly notify?: (session: Session, text: string) => void;
  /** The clock certificates are checked against. */
  readonly now?: () => number;
  /** Clusters one session may publish (a bound on what one client can make the gateway hold). */
  readonly maxClustersPerSession?: number;
}

/** Most members one cluster may have. */
const MAX_MEMBERS = 1000;
/** Longest `ssl` text accepted: a chain and its key take a few KB; the bound keeps parsing cheap. */
const MAX_SSL_CHARS = 64 * 1024;

interface Change {
  readonly id: string;
  readonly before: PublishedCluster | undefined;
  readonly after: PublishedCluster | undefined;
}

/** One cluster of one session set (`next`) or removed (undefined). */
interface Install {
  readonly session: Session;
  readonly id: string;
  readonly next: PublishedCluster | undefined;
}

/** What to do when the store cannot record a change: refuse the change, or log and apply it in memory anyway. */
type OnStoreError = 'refuse' | 'log';

/**
 * The command handlers of protocol.md and the ownership rules: each validates its params, changes
 * the routing state (the one writer), waits until the data plane runs the new state, then returns
 * its results. A refusal throws a {@link ControlError} and changes nothing.
 */
export class Commands {
  readonly #routing: RoutingStateBuilder;
  readonly #applyRouting: (state: RoutingState) => Promise<void>;
  readonly #domains: Domains;
  readonly #store: Pick<ControlStore, 'saveClusters'>;
  readonly #log: Logger;
  readonly #notify: (session: Session, text: string) => void;
  readonly #now: () => number;
  readonly #maxClusters: number;
  /** Which session holds each session-published fqdn. */
  /** Which sessions hold each cluster id (ids are the clients' uuids, so two sessions may use one). */
  /** How many sessions hold each cluster id (a count, not a set: at 100k clusters the sets cost ~15 MB). */
  readonly #clusterHolders = new Map<string, number>();
  /** Which session publishes each fqdn, and under which cluster id. */
  readonly #owners = new Map<string, { readonly session: Session; readonly id: string }>();

  constructor(options: CommandsOptions) {
    this.#routing = options.routing;
    this.#applyRouting = options.applyRouting;
    this.#domains = options.domains;
    this.#store = options.store;
    this.#log = options.log;
    this.#notify = options.notify ?? (() => undefined);
    this.#now = options.now ?? Date.now;
    this.#maxClusters = options.maxClustersPerSession ?? 1_000;
  }

  /** The `resource_offer` params for a new session of this account. */
  offer(session: Session): Results {
    return {
      domains: this.#domains.list(session.publicKey).map((domain) => ({ domain })),
      nodes: [],
      volumes: [],
      externals: [],
    };
  }

  /** Runs one command for `session`; resolves with its results, or throws a {@link ControlError}. */
  async run(session: Session, message: OpenMessage): Promise<Results> {
    const params = message.params;
    switch (message.command) {
      case 'heartbeat':
        return {};
      case 'list_domains':
        return { domains: this.#domains.list(session.publicKey) };
      case 'prepare_domain': {
        const { domain, token } = this.#domains.prepare(session.publicKey, text(params, 'domain'));
        this.#log.info({ rid: session.ridHex, domain }, 'domain token prepared');
        // A byte string: a text token crashes the 20ft CLI (protocol.md).
        return { token: Buffer.from(token, 'ascii') };
      }
      case 'claim_domain': {
        const domain = await this.#domains.claim(session.publicKey, text(params, 'domain'));
        this.#log.info({ rid: session.ridHex, account: session.accountName, domain }, 'domain claimed');
        return {};
      }
      case 'release_domain': {
        const domain = this.#domains.release(session.publicKey, text(params, 'domain'));
        this.#log.info({ rid: session.ridHex, account: session.accountName, domain }, 'domain released');
        await this.revalidate(`${domain} was released`);
        return {};
      }
      case 'make_domain_global':
      case 'make_domain_private': {
        const global = message.command === 'make_domain_global';
        const domain = this.#domains.setGlobal(session.publicKey, text(params, 'domain'), global);
        this.#log.info({ rid: session.ridHex, account: session.accountName, domain, global }, global ? 'domain made global' : 'domain made private');
        // Private: other accounts' names under it go. Global: its owner's wildcards there go, since they
        // would capture the names every account may now publish under it.
        await this.revalidate(`${domain} was made ${global ? 'global' : 'private'} by its owner`);
        return {};
      }
      case 'publish_web':
        return this.#publish(session, message.uuid, params);
      case 'unpublish_web':
        return this.#unpublish(session, params);
      case 'add_to_cluster':
        return this.#addMember(session, params);
      case 'remove_from_cluster':
        return this.#removeMember(session, params);
      default:
        throw new ControlError(`unknown command ${JSON.stringify(message.command)}`);
    }
  }

  /**
   * Unpublishes everything `session` published (its end); resolves once the data plane runs it.
   * With `keepStored` (the gateway shutting down) the store keeps the clusters for the next start.
   */
  async endSession(session: Session, keepStored = false): Promise<void> {
    const changes = [...session.clusters.values()].map((cluster) => ({ id: cluster.id, before: cluster, after: undefined }));
    if (changes.length === 0) return;
    this.#install(changes.map((change) => ({ session, id: change.id, next: undefined })), keepStored ? 'memory' : 'log');
    this.#log.info({ rid: session.ridHex, fqdns: changes.map((c) => c.before.fqdn) }, 'session clusters unpublished');
    await this.#applyRouting(this.#routing.snapshot());
  }

  /**
   * Unpublishes every session cluster whose account may no longer publish its fqdn (a domain was
   * released or made private, here or by another process sharing the store), telling its session why.
   */
  async revalidate(why: string): Promise<void> {
    const dropped: { session: Session; cluster: PublishedCluster }[] = [];
    for (const session of new Set([...this.#owners.values()].map((owner) => owner.session))) {
      for (const cluster of session.clusters.values()) {
        try {
          this.#domains.checkPublish(session.publicKey, cluster.fqdn, cluster.fqdn);
        } catch (err) {
          if (!(err instanceof ForbiddenError)) throw err;
          dropped.push({ session, cluster });
        }
      }
    }
    if (dropped.length === 0) return;
    this.#install(dropped.map(({ session, cluster }) => ({ session, id: cluster.id, next: undefined })), 'log');
    for (const { session, cluster } of dropped) this.#notify(session, `${cluster.fqdn} was unpublished: ${why}`);
    this.#log.info({ fqdns: dropped.map((d) => d.cluster.fqdn), why }, 'clusters unpublished: no longer permitted');
    await this.#applyRouting(this.#routing.snapshot());
  }

  /**
   * Takes back a held session's clusters from the store at start-up (into the session, the owners
   * map and the routing state, without writing them again). A cluster the account may no longer
   * publish, an operator's static name, an fqdn another restored session holds, or a certificate
   * that no longer parses is dropped from the store with a log line. The caller installs the routing state.
   */
  restore(session: Session, clusters: readonly PublishedCluster[]): void {
    for (const cluster of clusters) {
      let reason: string | undefined;
      try {
        this.#checkPermitted(session, cluster.fqdn, cluster.fqdn);
        // Only a damaged store holds one fqdn twice for a session: keep the first.
        if (this.#owners.has(cluster.fqdn)) reason = `${cluster.fqdn} is stored twice for this session`;
        // An earlier version may have accepted it (e.g. a key now refused); the data planes parse it
        // the same way, and one that throws there would stop the start.
        else if (cluster.certificate) parseCertificateBundle(cluster.certificate.certPem + cluster.certificate.keyPem);
      } catch (err) {
        if (err instanceof CertificateError) reason = `certificate refused: ${err.message}`;
        else if (err instanceof ForbiddenError) reason = err.message;
        else throw err;
      }
      if (reason === undefined) {
        this.#install([{ session, id: cluster.id, next: cluster }], 'memory');
        continue;
      }
      this.#log.warn({ rid: session.ridHex, fqdn: cluster.fqdn, cluster: cluster.id, reason }, 'stored cluster dropped at start');
      this.#persist([{ rid: session.ridHex, id: cluster.id, cluster: null }], 'log');
    }
  }

  async #publish(session: Session, uuid: Uint8Array, params: ReadonlyMap<string, unknown>): Promise<Results> {
    if (uuid.length === 0) throw new BadParamsError('publish_web needs a uuid: it becomes the cluster id');
    const domainText = text(params, 'domain');
    const subdomain = text(params, 'subdomain');
    const rewriteText = optionalText(params, 'rewrite');
    const ssl = optionalText(params, 'ssl');
    if (ssl !== null && ssl.length > MAX_SSL_CHARS) {
      throw new BadParamsError(`"ssl" is ${ssl.length} characters; a certificate chain and its key fit in ${MAX_SSL_CHARS} (64 KiB)`);
    }
    const containers = params.get('containers');
    if (!Array.isArray(containers)) throw new BadParamsError('"containers" must be an array');

    const domain = parseHostname(domainText, { allowPort: false });
    if (!domain.ok) throw new BadParamsError(`domain ${JSON.stringify(domainText.slice(0, 300))}: ${domain.reason}`);
    if (subdomain !== '' && !subdomain.endsWith('.')) {
      throw new BadParamsError(`subdomain ${JSON.stringify(subdomain.slice(0, 300))} must be empty or end with "."`);
    }
    const name = parseHostname(subdomain + domain.hostname, { allowPort: false, allowWildcard: true });
    if (!name.ok) throw new BadParamsError(`${JSON.stringify((subdomain + domain.hostname).slice(0, 300))}: ${name.reason}`);
    const fqdn = name.hostname;
    let rewrite: string | null = null;
    if (rewriteText !== null) {
      const host = parseAuthority(rewriteText);
      if (!host.ok) throw new BadParamsError(`rewrite ${JSON.stringify(rewriteText.slice(0, 300))}: ${host.reason}`);
      rewrite = host.hostname;
    }
    const certificate = ssl === null ? null : this.#sessionCertificate(ssl, fqdn);
    if (containers.length > MAX_MEMBERS) throw new BadParamsError(`a cluster may have at most ${MAX_MEMBERS} members`);
    const members = uniqueMembers(containers.map(member));

    this.#checkPermitted(session, fqdn, domain.hostname);

    const id = Buffer.from(uuid).toString('hex');
    // What this publish replaces: the session's cluster with this id, and its cluster at this fqdn
    // (looked up, not scanned for: a session may hold many thousands).
    const changes: Change[] = [];
    const sameId = session.clusters.get(id);
    if (sameId) changes.push({ id, before: sameId, after: undefined });
    const atFqdn = this.#owners.get(fqdn);
    const sameFqdn = atFqdn?.session === session && atFqdn.id !== id ? session.clusters.get(atFqdn.id) : undefined;
    if (sameFqdn) changes.push({ id: sameFqdn.id, before: sameFqdn, after: undefined });
    if (changes.length === 0 && session.clusters.size >= this.#maxClusters) {
      throw new ForbiddenError(`this session already publishes ${session.clusters.size} clusters, the most one session may (--max-clusters-per-session)`);
    }
    changes.push({ id, before: undefined, after: Object.freeze({ id, fqdn, members, rewrite, certificate }) });
    await this.#commit(session, changes);
    this.#log.info({ rid: session.ridHex, fqdn, cluster: id, members, certificate: certificate !== null }, 'cluster published');
    return {};
  }

  /**
   * Validates a publish's `ssl` text before anything changes (protocol.md, "The ssl text in detail"):
   * one unencrypted key matching a certificate, of a kind and size tfgate serves, valid now, covering
   * the fqdn; the leaf served with its issuer chain only.
   */
  #sessionCertificate(ssl: string, fqdn: string): CertificateSpec {
    let bundle: CertificateBundle;
    try {
      bundle = parseCertificateBundle(ssl);
      checkCertificate(bundle, fqdn, new Date(this.#now()));
      checkServable(bundle);
    } catch (err) {
      if (err instanceof CertificateError) throw new BadParamsError(`${fqdn}: certificate refused: ${err.message}`, { cause: err });
      throw err;
    }
    if (bundle.namesFromCommonName) {
      this.#log.warn({ fqdn, names: bundle.names }, 'session certificate has no SAN DNS names: matched on its CN');
    }
    return sessionCertificateSpec(fqdn, bundle.certPem, bundle.keyPem);
  }

  async #unpublish(session: Session, params: ReadonlyMap<string, unknown>): Promise<Results> {
    const cluster = this.#ownCluster(session, params);
    await this.#commit(session, [{ id: cluster.id, before: cluster, after: undefined }]);
    this.#log.info({ rid: session.ridHex, fqdn: cluster.fqdn, cluster: cluster.id }, 'cluster unpublished');
    return {};
  }

  async #addMember(session: Session, params: ReadonlyMap<string, unknown>): Promise<Results> {
    const cluster = this.#ownCluster(session, params);
    const address = member(params.get('container'));
    if (cluster.members.includes(address)) return {};
    if (cluster.members.length >= MAX_MEMBERS) throw new BadParamsError(`a cluster may have at most ${MAX_MEMBERS} members`);
    const after = Object.freeze({ ...cluster, members: Object.freeze([...cluster.members, address]) });
    await this.#commit(session, [{ id: cluster.id, before: cluster, after }]);
    this.#log.info({ rid: session.ridHex, fqdn: cluster.fqdn, member: address }, 'member added');
    return {};
  }

  async #removeMember(session: Session, params: ReadonlyMap<string, unknown>): Promise<Results> {
    const cluster = this.#ownCluster(session, params);
    const address = member(params.get('container'));
    if (!cluster.members.includes(address)) throw new ControlError(`${address} is not a member of the cluster at ${cluster.fqdn}`);
    const after = Object.freeze({ ...cluster, members: Object.freeze(cluster.members.filter((m) => m !== address)) });
    await this.#commit(session, [{ id: cluster.id, before: cluster, after }]);
    this.#log.info({ rid: session.ridHex, fqdn: cluster.fqdn, member: address }, 'member removed');
    return {};
  }

  /** The session's own cluster named by the `cluster` param; another session's gets a refusal. */
  #ownCluster(session: Session, params: ReadonlyMap<string, unknown>): PublishedCluster {
    const raw = params.get('cluster');
    if (!isBytes(raw)) throw new BadParamsError('"cluster" must be a byte string (a cluster id)');
    const id = Buffer.from(raw).toString('hex');
    const cluster = session.clusters.get(id);
    if (cluster) return cluster;
    if (this.#clusterHolders.has(id)) throw new ForbiddenError(`cluster ${id} belongs to another session`);
    throw new ControlError(`no cluster ${id.slice(0, 128)} is published by this session`);
  }

  /**
   * Throws a {@link ForbiddenError} unless `session` may hold a cluster at `fqdn` now: the domain
   * rules allow its account the name, the operator's static routes do not hold it, and no other
   * session publishes it. The one check a publish, a restore at start and an undo all pass through.
   */
  #checkPermitted(session: Session, fqdn: string, domain: string): void {
    this.#domains.checkPublish(session.publicKey, fqdn, domain);
    if (this.#routing.isStatic(fqdn)) throw new ForbiddenError(`${fqdn} is served by the operator's static routes`);
    const owner = this.#owners.get(fqdn)?.session;
    if (owner && owner !== session) throw new ForbiddenError(`${fqdn} is published by another session`);
  }

  /**
   * Applies changes, installs the new routing state, and undoes them when it cannot be installed.
   * The undo puts a cluster back only if it passes the publish check again: while the state was
   * being installed, its domain may have been released or claimed by another account, or its fqdn
   * published by another session; such a cluster stays unpublished and its session is told.
   */
  async #commit(session: Session, changes: readonly Change[]): Promise<void> {
    this.#install(changes.map((change) => ({ session, id: change.id, next: change.after })), 'refuse');
    try {
      await this.#applyRouting(this.#routing.snapshot());
    } catch (err) {
      this.#log.error({ err, rid: session.ridHex }, 'routing state could not be installed; change undone');
      const undo: Install[] = [];
      const lost: { fqdn: string; reason: string }[] = [];
      for (const change of [...changes].reverse()) {
        const reason = change.before ? this.#forbidden(session, change.before.fqdn) : undefined;
        if (change.before && reason !== undefined) lost.push({ fqdn: change.before.fqdn, reason });
        undo.push({ session, id: change.id, next: reason === undefined ? change.before : undefined });
      }
      this.#install(undo, 'log');
      await this.#applyRouting(this.#routing.snapshot()).catch(() => undefined);
      if (lost.length === 0) throw new ControlError('the gateway could not install the change; nothing was changed', { cause: err });
      this.#log.warn({ rid: session.ridHex, lost }, 'clusters not put back after a failed change: no longer permitted');
      for (const { fqdn, reason } of lost) this.#notify(session, `${fqdn} was unpublished: ${reason}`);
      const why = lost.map((l) => `${l.fqdn} could not be put back (${l.reason})`).join('; ');
      throw new ControlError(`the gateway could not install the change; it was undone, except that ${why}`, { cause: err });
    }
  }

  /** Why `session` may not hold a cluster at `fqdn` now, or undefined when it may (fails closed: an error reading the rules forbids). */
  #forbidden(session: Session, fqdn: string): string | undefined {
    try {
      this.#checkPermitted(session, fqdn, fqdn);
      return undefined;
    } catch (err) {
      if (err instanceof ForbiddenError) return err.message;
      this.#log.error({ err, rid: session.ridHex, fqdn }, 'could not check whether a cluster may be put back');
      return 'its permission could not be checked';
    }
  }

  /**
   * The one place cluster changes are applied: each cluster is set (or removed, with undefined) in
   * the store first — synchronously, so a change is durable before its reply is sent — then in its
   * session, the owners map and the routing state. `memory` skips the store (restore, shutdown).
   */
  #install(installs: readonly Install[], store: OnStoreError | 'memory'): void {
    if (store !== 'memory') {
      this.#persist(installs.map(({ session, id, next }) => ({ rid: session.ridHex, id, cluster: next ? storedCluster(session, next) : null })), store);
    }
    for (const { session, id, next } of installs) {
      const previous = session.clusters.get(id);
      if (previous) {
        session.clusters.delete(id);
        const holders = (this.#clusterHolders.get(id) ?? 1) - 1;
        if (holders === 0) this.#clusterHolders.delete(id);
        else this.#clusterHolders.set(id, holders);
        if (this.#owners.get(previous.fqdn)?.session === session) {
          this.#owners.delete(previous.fqdn);
          this.#routing.removeSession(previous.fqdn);
        }
      }
      if (next) {
        session.clusters.set(id, next);
        this.#clusterHolders.set(id, (this.#clusterHolders.get(id) ?? 0) + 1);
        this.#owners.set(next.fqdn, { session, id });
        this.#routing.putSession({ fqdn: next.fqdn, cluster: next.id, members: next.members, rewrite: next.rewrite, source: 'session' }, next.certificate);
      }
    }
  }

  /** Writes changes to the store; a failure refuses the change (a ControlError) or is logged. */
  #persist(changes: readonly ClusterChange[], onError: OnStoreError): void {
    try {
      this.#store.saveClusters(changes);
    } catch (err) {
      if (onError === 'refuse') throw new ControlError('the gateway could not record the change; nothing was changed', { cause: err });
      this.#log.error({ err, clusters: changes.map((c) => c.id) }, 'published clusters could not be recorded in the store');
    }
  }
}

/** The routing state's form of a session certificate for `fqdn`. */
export function sessionCertificateSpec(fqdn: string, certPem: string, keyPem: string): CertificateSpec {
  return Object.freeze({ source: 'session', origin: fqdn, certPem, keyPem, servedFor: Object.freeze([fqdn]) });
}

function storedCluster(session: Session, cluster: PublishedCluster): StoredCluster {
  return {
    rid: session.ridHex,
    owner: session.publicKey,
    id: cluster.id,
    fqdn: cluster.fqdn,
    members: cluster.members,
    rewrite: cluster.rewrite,
    certificate: cluster.certificate ? { certPem: cluster.certificate.certPem, keyPem: cluster.certificate.keyPem } : null,
  };
}

function text(params: ReadonlyMap<string, unknown>, key: string): string {
  const value = params.get(key);
  if (typeof value !== 'string') throw new BadParamsError(`"${key}" must be a text string`);
  return value;
}

function optionalText(params: ReadonlyMap<string, unknown>, key: string): string | null {
  const value = params.get(key);
  if (value === undefined || value === null) return null;
  if (typeof value !== 'string') throw new BadParamsError(`"${key}" must be a text string or null`);
  return value;
}

/** A `containers` entry: `"host:port"`, or `{"uuid": text, "address": "host:port"}`; a bare uuid cannot be resolved. */
function member(entry: unknown): string {
  let address: unknown = entry;
  if (entry instanceof Map) {
    address = entry.get('address');
    if (address === undefined) {
      const uuid = entry.get('uuid');
      const name = typeof uuid === 'string' ? uuid : isBytes(uuid) ? Buffer.from(uuid).toString('hex') : 'without uuid';
      throw new BadParamsError(`container ${name.slice(0, 100)} has no "address"; this gateway has no container registry`);
    }
  } else if (isBytes(entry)) {
    throw new BadParamsError(`container ${Buffer.from(entry).toString('hex').slice(0, 100)} cannot be resolved: name members as "host:port"`);
  }
  if (typeof address !== 'string') throw new BadParamsError('a container must be "host:port" text or a map with an "address"');
  const parsed = parseMemberAddress(address);
  if (!parsed.ok) throw new BadParamsError(parsed.reason);
  return parsed.value.address;
}

function uniqueMembers(members: string[]): readonly string[] {
  return Object.freeze([...new Set(members)]);
}
