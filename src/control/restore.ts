import type { Logger } from '../log.js';
import { sessionCertificateSpec } from './commands.js';
import type { Commands } from './commands.js';
import { KEY_BYTES, randomBytes } from './frames.js';
import { RID_BYTES } from './handshake.js';
import { Session } from './sessions.js';
import type { PublishedCluster } from './sessions.js';
import type { ControlStore, StoredCluster } from './store.js';

/** What {@link restoreSessions} needs. */
export interface RestoreContext {
  readonly store: ControlStore;
  readonly commands: Commands;
  readonly log: Logger;
  readonly now: number;
  readonly messagesPerSecond: number;
}

/**
 * Rebuilds the sessions of a previous run from the clusters in the store, as held (disconnected)
 * sessions with their clusters in the routing state, so the gateway serves them before it listens
 * and a client resuming with its rid and key takes its session back. Clusters of accounts removed
 * meanwhile, or of malformed rows, are dropped from the store with a log line.
 */
export function restoreSessions(context: RestoreContext): Session[] {
  const { store, commands, log, now } = context;
  const byRid = new Map<string, StoredCluster[]>();
  for (const stored of store.listClusters()) {
    const group = byRid.get(stored.rid);
    if (group) group.push(stored);
    else byRid.set(stored.rid, [stored]);
  }
  const sessions: Session[] = [];
  for (const [rid, stored] of byRid) {
    const owner = stored[0]!.owner;
    const account = store.findAccount(owner);
    const usable = stored.filter((cluster) => cluster.owner === owner);
    if (!account || !/^[0-9a-f]+$/.test(rid) || rid.length !== RID_BYTES * 2 || usable.length !== stored.length) {
      const reason = !account ? 'the account was removed' : 'malformed stored session';
      log.warn({ rid, fqdns: stored.map((c) => c.fqdn), reason }, 'stored clusters dropped at start');
      store.saveClusters(stored.map((cluster) => ({ rid, id: cluster.id, cluster: null })));
      continue;
    }
    const session = new Session(new Uint8Array(Buffer.from(rid, 'hex')), {
      publicKey: owner,
      accountName: account.name,
      // Never used: a resuming client gets a fresh session key at its handshake.
      sessionKey: randomBytes(KEY_BYTES),
      now,
      messagesPerSecond: context.messagesPerSecond,
    });
    session.disconnectedAt = now;
    session.proven = true; // it published before the restart
    commands.restore(session, stored.map(toPublished));
    if (session.clusters.size === 0) continue;
    log.info({ rid, account: account.name, fqdns: [...session.clusters.values()].map((c) => c.fqdn) }, 'session restored');
    sessions.push(session);
  }
  return sessions;
}

function toPublished(stored: StoredCluster): PublishedCluster {
  return Object.freeze({
    id: stored.id,
    fqdn: stored.fqdn,
    members: stored.members,
    rewrite: stored.rewrite,
    certificate: stored.certificate ? sessionCertificateSpec(stored.fqdn, stored.certificate.certPem, stored.certificate.keyPem) : null,
  });
}
