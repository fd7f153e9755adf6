import { describe, expect, it, onTestFinished } from 'vitest';
import { eventually, startTestControlPlane, uncbor } from '../helpers/control-client.js';

const publish = (subdomain: string, containers: unknown[]) => ({ domain: 'test', subdomain, rewrite: null, ssl: null, containers });

describe('control sessions', () => {
  it('keeps routes during the grace window after the connection drops, and removes them after it', async () => {
    const gw = await startTestControlPlane({ sessionGraceMs: 500 });
    const a = await gw.session();
    await a.request('publish_web', publish('a.', ['10.0.0.1:80']));
    a.close();
    await eventually(() => gw.control.sessions()[0]?.connected === false, 3000, 'the drop to be noticed');
    const noticed = Date.now();
    expect(gw.membersOf('a.test')).toEqual(['10.0.0.1:80']);
    await eventually(() => gw.membersOf('a.test') === undefined, 3000, 'the routes to go');
    expect(Date.now() - noticed).toBeGreaterThanOrEqual(400);
    expect(gw.control.sessions()).toEqual([]);
  });

  it('a client reconnecting with its old rid and key inside the window keeps its session and routes, without an offer', async () => {
    const gw = await startTestControlPlane({ sessionGraceMs: 500 });
    const a = await gw.session();
    const cluster = Buffer.from('keep-me');
    await a.request('publish_web', publish('a.', ['10.0.0.1:80']), cluster);
    a.close();
    await eventually(() => gw.control.sessions()[0]?.connected === false, 3000, 'the drop to be noticed');
    const again = gw.client(a.keys);
    await again.handshake(a.rid, false);
    expect(again.rid.equals(a.rid)).toBe(true);
    expect((await again.request('add_to_cluster', { cluster, container: '10.0.0.2:80' })).params).toEqual({});
    expect(again.others).toEqual([]); // no resource_offer for a resumed session
    // Well past the grace window the routes are still there.
    await new Promise((resolve) => setTimeout(resolve, 900));
    expect(gw.membersOf('a.test')).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
    expect(gw.control.sessions()).toMatchObject([{ connected: true, fqdns: ['a.test'] }]);
  });

  it('never expires a live connection that sends nothing', async () => {
    const gw = await startTestControlPlane({ sessionGraceMs: 300 });
    const a = await gw.session();
    await a.request('publish_web', publish('quiet.', ['10.0.0.1:80']));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(gw.membersOf('quiet.test')).toEqual(['10.0.0.1:80']);
    expect(gw.control.sessions()).toMatchObject([{ connected: true }]);
    // The probes it received are encrypted messages with an unknown command and no uuid.
    expect(a.pending).toBeGreaterThan(0);
    const probe = a.open(await a.next());
    expect(probe).toMatchObject({ command: 'probe', params: {} });
    expect(probe.uuid).toHaveLength(0);
  });

  it('an old rid after the grace window gets a new session and an offer', async () => {
    const gw = await startTestControlPlane({ sessionGraceMs: 200 });
    const a = await gw.session();
    a.close();
    await eventually(() => gw.control.sessions().length === 0, 3000, 'the session to end');
    const again = gw.client(a.keys);
    await again.handshake(a.rid, true);
    expect(again.rid.equals(a.rid)).toBe(false);
  });

  it('ignores a replayed message', async () => {
    const gw = await startTestControlPlane();
    const a = await gw.session();
    const uuid = Buffer.from('publish-uuid');
    const frame = a.seal('publish_web', uuid, publish('r.', ['10.0.0.1:80']));
    await a.sendRaw(frame);
    await a.replyTo(uuid);
    await a.request('unpublish_web', { cluster: uuid });
    expect(gw.membersOf('r.test')).toBeUndefined();
    await a.sendRaw(frame); // replay
    expect((await a.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(a.others).toEqual([]);
    expect(gw.membersOf('r.test')).toBeUndefined();
    expect(gw.logs.some((line) => line.msg === 'replayed control message ignored')).toBe(true);
  });

  it('removing an account ends its live sessions and refuses its next handshake', async () => {
    const gw = await startTestControlPlane();
    const a = await gw.session();
    const b = await gw.session();
    await a.request('publish_web', publish('gone.', ['10.0.0.1:80']));
    gw.removeAccount(a.keys);
    const log = await a.receive();
    expect(log).toMatchObject({ command: 'log', params: { error: true } });
    await eventually(() => gw.membersOf('gone.test') === undefined, 3000, 'the routes to go');
    expect(gw.control.sessions().map((s) => s.rid)).toEqual([b.rid.toString('hex')]);
    const again = gw.client(a.keys);
    expect(uncbor(await again.auth(a.rid)) as unknown[]).toHaveLength(5);
  });

  it('an account added while running can authenticate at once', async () => {
    const gw = await startTestControlPlane();
    const keys = gw.addAccount('late@example.com');
    const client = await gw.session(keys);
    expect(gw.control.sessions()).toMatchObject([{ account: 'late@example.com', rid: client.rid.toString('hex') }]);
  });
});

describe('dead connections', () => {
  it('a peer that vanishes silently (no FIN, sends nothing) is detected and its routes go after the grace window', async () => {
    const { startTcpProxy, RawControlClient } = await import('../helpers/control-client.js');
    const gw = await startTestControlPlane({ sessionGraceMs: 400 });
    const proxy = await startTcpProxy(gw.control.port);
    const client = new RawControlClient(`tcp://127.0.0.1:${proxy.port}`, gw.serverKey, gw.addAccount());
    onTestFinished(() => client.close());
    await client.handshake();
    await client.request('publish_web', publish('silent.', ['10.0.0.1:80']));
    proxy.freeze();
    await eventually(() => gw.control.sessions()[0]?.connected === false, 5000, 'the silent peer to be noticed');
    expect(gw.membersOf('silent.test')).toEqual(['10.0.0.1:80']);
    await eventually(() => gw.membersOf('silent.test') === undefined, 5000, 'the routes to go');
  });

  it('an auth with an account\'s public key alone cannot lock the account out: unproven sessions do not count', async () => {
    const gw = await startTestControlPlane({ maxSessionsPerAccount: 2 });
    const keys = gw.addAccount('victim');
    // Someone who knows the public key (no secret) authenticates again and again, never proving it.
    for (let i = 0; i < 6; i++) expect(uncbor(await gw.client(keys).auth()) as unknown[]).toHaveLength(3);
    expect(gw.control.sessions().filter((s) => s.account === 'victim').length).toBeLessThanOrEqual(2);
    const owner = await gw.session(keys);
    expect((await owner.request('publish_web', publish('mine.', ['10.0.0.1:80']))).params).toEqual({});
    expect(gw.membersOf('mine.test')).toEqual(['10.0.0.1:80']);
    // Proven sessions do count: with two of them, a third is refused.
    const second = await gw.session(keys);
    await second.request('list_domains', {});
    expect(uncbor(await gw.client(keys).auth()) as unknown[]).toHaveLength(5);
  });

  it('a resume by a connection that cannot open the session key does not take over a live session', async () => {
    const gw = await startTestControlPlane({ sessionGraceMs: 60_000 });
    const keys = gw.addAccount('owner');
    const owner = await gw.session(keys);
    expect((await owner.request('publish_web', publish('live.', ['10.0.0.1:80']))).params).toEqual({});
    // The public key and rid are all the intruder has (rids show in logs); it sends auth, then garbage.
    const intruder = gw.client(keys);
    expect(uncbor(await intruder.auth(owner.rid)) as unknown[]).toHaveLength(3);
    intruder.sessionKey = new Uint8Array(32).fill(7);
    await intruder.sendRaw(intruder.seal('unpublish_web', Buffer.from('x'), { cluster: Buffer.from('none') }));
    // The owner's session is untouched: same key, same connection, routes in place.
    expect((await owner.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(gw.membersOf('live.test')).toEqual(['10.0.0.1:80']);
    // The key holder itself resuming from a new connection takes over with its first message.
    const again = gw.client(keys);
    await again.handshake(owner.rid, false);
    expect((await again.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(gw.control.sessions().filter((s) => s.account === 'owner')).toHaveLength(1);
    expect(gw.membersOf('live.test')).toEqual(['10.0.0.1:80']);
  });

  it('tells a session with a log message when a command without a uuid is over the rate limit', async () => {
    const gw = await startTestControlPlane({ messagesPerSecond: 3 });
    const a = await gw.session();
    for (let i = 0; i < 6; i++) await a.tell('heartbeat', {});
    const log = await a.receive();
    expect(log.command).toBe('log');
    expect(log.params).toMatchObject({ error: true, log: expect.stringMatching(/rate limit exceeded/) });
  });
});
