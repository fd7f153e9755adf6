import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { ControlPlane, RoutingStateBuilder, openStore } from '../../src/control/index.js';
import type { ControlStore } from '../../src/control/index.js';
import { DataPlane } from '../../src/gateway/index.js';
import { createLogger } from '../../src/log.js';
import type { RoutingState } from '../../src/vhost/index.js';
import { RawControlClient, b64, eventually, newKeys } from '../helpers/control-client.js';
import type { TestKeys } from '../helpers/control-client.js';
import { startDnsServer } from '../helpers/dns-server.js';

const publish = (subdomain: string, member: string) => ({ domain: 'example.com', subdomain, rewrite: null, ssl: null, containers: [member] });
const X = Buffer.from('0000000000000000000000000000000a', 'hex');
const Y = Buffer.from('0000000000000000000000000000000b', 'hex');

/** An `applyRouting` call held until the test lets it fail. */
interface HeldApply {
  /** Resolves once the matching call has started (its change is installed in the control plane, not yet live). */
  readonly reached: Promise<void>;
  /** Makes the held call fail, as a data plane that cannot take the state would. */
  fail(): void;
  /** Lets the held call go on and install its state. */
  pass(): void;
}

/**
 * A control plane over a real data plane and store, whose `applyRouting` can be held, then failed
 * or let go, for one chosen routing state. What `seed` writes (accounts, claims, the clusters of a
 * previous run) is in the store before the control plane opens it. Call `start()` to start it.
 */
function create(seed: (store: ControlStore) => void, options: { dnsServer?: string } = {}) {
  const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-undo-'));
  const seeding = openStore(stateDir);
  seed(seeding);
  seeding.close();
  const routing = new RoutingStateBuilder();
  const dataPlane = new DataPlane({ balancer: 'least-outstanding' });
  let hold: { when: (state: RoutingState) => boolean; reached: () => void; outcome: Promise<void> } | undefined;
  const control = new ControlPlane({
    listen: { host: '127.0.0.1', port: 0 },
    stateDir,
    globalDomains: [],
    ...(options.dnsServer ? { dnsServer: options.dnsServer } : {}),
    sessionGraceMs: 60_000,
    maxFrameBytes: 1024 * 1024,
    messagesPerSecond: 1000,
    routing,
    applyRouting: async (state) => {
      const held = hold;
      if (held?.when(state)) {
        hold = undefined;
        held.reached();
        await held.outcome;
      }
      dataPlane.apply(state);
    },
    log: createLogger('fatal'),
  });
  const clients: RawControlClient[] = [];
  onTestFinished(async () => {
    for (const client of clients) client.close();
    await control.close();
    rmSync(stateDir, { recursive: true, force: true });
  });
  return {
    control,
    stateDir,
    start: () => control.start(),
    async session(keys: TestKeys): Promise<RawControlClient> {
      const serverKey = new Uint8Array(Buffer.from(control.publicKey, 'base64'));
      const client = new RawControlClient(`tcp://127.0.0.1:${control.port}`, serverKey, keys);
      clients.push(client);
      await client.handshake();
      return client;
    },
    membersOf(fqdn: string): string[] | undefined {
      return dataPlane.routes.current.lookup(fqdn)?.cluster.members.map((m) => m.address);
    },
    /** Holds the next `applyRouting` whose state matches `when`. */
    holdApply(when: (state: RoutingState) => boolean): HeldApply {
      let reached!: () => void;
      let pass!: () => void;
      let fail!: (err: Error) => void;
      const outcome = new Promise<void>((resolve, reject) => {
        pass = resolve;
        fail = reject;
      });
      outcome.catch(() => undefined);
      const isReached = new Promise<void>((resolve) => (reached = resolve));
      hold = { when, reached, outcome };
      return { reached: isReached, fail: () => fail(new Error('the data plane refused the state (test)')), pass };
    },
    /** The fqdns the store holds for the next start. */
    storedFqdns(): string[] {
      const store = openStore(stateDir);
      try {
        return store.listClusters().map((cluster) => cluster.fqdn);
      } finally {
        store.close();
      }
    },
  };
}

/** Waits for a `log` message to the client whose text matches (it may have arrived before a reply). */
async function toldLog(client: RawControlClient, text: RegExp): Promise<boolean> {
  const matches = (message: { command: string; params: Record<string, unknown> }) => message.command === 'log' && text.test(String(message.params.log));
  if (client.others.some(matches)) return true;
  // Bounded: each receive times out, and a test client gets a handful of messages, not an endless stream.
  for (let i = 0; i < 50; i++) if (matches(await client.receive())) return true;
  return false;
}

describe('undoing a change the data plane could not install', () => {
  it('does not put back a cluster whose domain claim was released while the change was pending', async () => {
    const a = newKeys();
    const gw = create((store) => {
      store.addAccount(b64(a.publicKey), 'a');
      expect(store.claimDomain(b64(a.publicKey), 'example.com').ok).toBe(true);
    });
    await gw.start();
    const s1 = await gw.session(a);
    const s2 = await gw.session(a);
    expect((await s1.request('publish_web', publish('www.', '10.0.0.1:80'), X)).params).toEqual({});
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.1:80']);

    // s1 republishes the fqdn as cluster Y; while the data plane takes that state, s2 releases the domain.
    const held = gw.holdApply((state) => state.routes['www.example.com']?.cluster === Y.toString('hex'));
    const republish = s1.request('publish_web', publish('www.', '10.0.0.2:80'), Y);
    await held.reached;
    expect((await s2.request('release_domain', { domain: 'example.com' })).params).toEqual({});
    held.fail();
    expect((await republish).params.exception).toMatch(
      /^the gateway could not install the change; it was undone, except that www\.example\.com could not be put back \(www\.example\.com is not under a domain/,
    );
    expect(await toldLog(s1, /^www\.example\.com was unpublished: www\.example\.com is not under a domain this account may publish under/)).toBe(true);

    // The account may no longer publish www.example.com: the undo must not bring cluster X back.
    expect(gw.membersOf('www.example.com')).toBeUndefined();
    expect(gw.control.sessions().flatMap((session) => session.fqdns)).toEqual([]);
    expect(gw.storedFqdns()).toEqual([]);
    expect((await s1.request('unpublish_web', { cluster: X })).params.exception).toMatch(/no cluster .* is published by this session/);
  });

  it('does not put back an unpublished cluster whose domain another account claimed meanwhile; that account can publish it', async () => {
    const dns = await startDnsServer();
    const a = newKeys();
    const b = newKeys();
    const gw = create(
      (store) => {
        store.addAccount(b64(a.publicKey), 'a');
        store.addAccount(b64(b.publicKey), 'b');
        expect(store.claimDomain(b64(a.publicKey), 'example.com').ok).toBe(true);
      },
      { dnsServer: dns.address },
    );
    await gw.start();
    const a1 = await gw.session(a);
    const a2 = await gw.session(a);
    const b1 = await gw.session(b);
    expect((await a1.request('publish_web', publish('www.', '10.0.0.1:80'), X)).params).toEqual({});

    // a1 unpublishes; while that state is pending, a2 releases example.com and b claims it (DNS proof and all).
    const held = gw.holdApply((state) => state.routes['www.example.com'] === undefined);
    const unpublish = a1.request('unpublish_web', { cluster: X });
    await held.reached;
    expect((await a2.request('release_domain', { domain: 'example.com' })).params).toEqual({});
    const prepared = await b1.request('prepare_domain', { domain: 'example.com' });
    await dns.setTxt('tf-token.example.com', Buffer.from(prepared.params.token as Uint8Array).toString('ascii'));
    expect((await b1.request('claim_domain', { domain: 'example.com' })).params).toEqual({});
    held.fail();
    expect((await unpublish).params.exception).toMatch(/except that www\.example\.com could not be put back/);
    expect(await toldLog(a1, /^www\.example\.com was unpublished: www\.example\.com: example\.com is claimed by another account$/)).toBe(true);

    expect(gw.membersOf('www.example.com')).toBeUndefined();
    expect(gw.storedFqdns()).toEqual([]);
    // example.com is b's now: b publishes www.example.com, and a's old cluster is not in its way.
    expect((await b1.request('publish_web', publish('www.', '10.0.0.9:80'))).params).toEqual({});
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.9:80']);
  });
});

describe('restoring the previous run at start', () => {
  it('unpublishes a restored cluster whose claim another process released while the gateway was starting', async () => {
    const a = newKeys();
    const gw = create((store) => {
      store.addAccount(b64(a.publicKey), 'a');
      expect(store.claimDomain(b64(a.publicKey), 'example.com').ok).toBe(true);
      const rid = '00112233445566778899aabbccddeeff';
      const cluster = { rid, owner: b64(a.publicKey), id: X.toString('hex'), fqdn: 'www.example.com', members: ['10.0.0.1:80'], rewrite: null, certificate: null };
      store.saveClusters([{ rid, id: cluster.id, cluster }]);
    });
    // Hold start-up where it installs the restored clusters (their permission already checked)...
    const held = gw.holdApply((state) => state.routes['www.example.com'] !== undefined);
    const starting = gw.start();
    await held.reached;
    // ...and meanwhile another process sharing the store releases the claim.
    const other = openStore(gw.stateDir);
    expect(other.releaseDomain(b64(a.publicKey), 'example.com')).toBe(true);
    other.close();
    held.pass();
    await starting;
    expect(gw.membersOf('www.example.com')).toEqual(['10.0.0.1:80']);
    // The running gateway must notice the change like any other made by another process.
    await eventually(() => gw.membersOf('www.example.com') === undefined, 5000, 'www.example.com to be unpublished');
    expect(gw.control.sessions().flatMap((session) => session.fqdns)).toEqual([]);
    expect(gw.storedFqdns()).toEqual([]);
  });
});
