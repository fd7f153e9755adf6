import { describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import { EMPTY, cbor, cborShape, newKeys, startTestControlPlane, uncbor } from '../helpers/control-client.js';

describe('control handshake', () => {
  it('authenticates a known key, answers [nonce, box(session key), rid] and sends a resource offer', async () => {
    const gw = await startTestControlPlane({ globalDomains: ['test', 'example.org'] });
    const client = gw.client();
    const answer = await client.auth();
    expect(cborShape(answer)).toEqual(['bytes', 'bytes', 'bytes']);
    const [nonce, boxed, rid] = uncbor(answer) as Uint8Array[];
    expect(nonce).toHaveLength(24);
    expect(rid).toHaveLength(16);
    const sessionKey = nacl.box.open(boxed!, nonce!, gw.serverKey, client.keys.secretKey);
    expect(sessionKey).not.toBeNull();
    expect(sessionKey).toHaveLength(32);
    client.sessionKey = sessionKey!;

    const offerRaw = await client.next();
    expect(cborShape(offerRaw)).toEqual(['bytes', 'bytes', 'bytes', 'bytes', 'bytes']);
    const offer = client.open(offerRaw);
    expect(offer.command).toBe('resource_offer');
    expect(offer.uuid).toHaveLength(0);
    expect(cborShape(offer.paramsPlain)).toEqual({
      domains: [{ domain: 'text' }, { domain: 'text' }],
      nodes: [],
      volumes: [],
      externals: [],
    });
    expect(offer.params).toEqual({ domains: [{ domain: 'test' }, { domain: 'example.org' }], nodes: [], volumes: [], externals: [] });
    expect(gw.control.sessions()).toMatchObject([{ rid: Buffer.from(rid!).toString('hex'), account: 'test account', connected: true }]);
  });

  it('refuses an unknown key with a 5-element answer and keeps no session', async () => {
    const gw = await startTestControlPlane();
    const client = gw.client(newKeys());
    const answer = await client.auth();
    const parts = uncbor(answer) as unknown[];
    expect(parts).toHaveLength(5);
    expect(cborShape(answer)).toEqual(['bytes', 'bytes', 'bytes', {}, 'bytes']);
    expect(gw.control.sessions()).toEqual([]);
    // The connection is forgotten: a command from it is dropped, and a known key can still authenticate on it.
    await client.sendRaw(cbor([Buffer.alloc(24), Buffer.from('list_domains'), Buffer.from('x'), Buffer.alloc(20), EMPTY]));
    const other = await gw.session();
    expect((await other.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(client.pending).toBe(0);
  });

  it('a client holding the wrong gateway key cannot open the session key', async () => {
    const gw = await startTestControlPlane();
    const wrong = newKeys().publicKey;
    const client = gw.client(undefined, wrong);
    await expect(client.handshake()).rejects.toThrow('cannot open the session key');
  });

  it('drops a stale command queued before auth and still completes the handshake', async () => {
    const gw = await startTestControlPlane();
    const client = gw.client();
    const staleKey = nacl.randomBytes(32);
    client.sessionKey = staleKey;
    await client.sendRaw(client.seal('publish_web', Buffer.from('stale-uuid'), { domain: 'test', subdomain: 'a.', rewrite: null, ssl: null, containers: ['10.0.0.1:80'] }));
    await client.sendRaw(cbor(['garbage']));
    await client.sendRaw(Buffer.from('not cbor at all \xff'));
    await client.handshake();
    // The first frame after auth was the handshake answer; then the offer; nothing else.
    expect(client.offer?.command).toBe('resource_offer');
    const reply = await client.request('list_domains', {});
    expect(reply.params).toEqual({ domains: ['test'] });
    expect(client.others).toEqual([]);
    expect(gw.membersOf('a.test')).toBeUndefined();
  });

  it('gives another key presenting a live rid a new session, not that one', async () => {
    const gw = await startTestControlPlane();
    const alice = await gw.session();
    await alice.request('publish_web', { domain: 'test', subdomain: 'alice.', rewrite: null, ssl: null, containers: ['10.0.0.1:80'] });
    const mallory = gw.client();
    await mallory.handshake(alice.rid); // a new session gets an offer
    expect(mallory.offer?.command).toBe('resource_offer');
    expect(mallory.rid.equals(alice.rid)).toBe(false);
    const uuid = Buffer.from('0123456789abcdef');
    const reply = await mallory.request('unpublish_web', { cluster: Buffer.from('x') }, uuid);
    expect(reply.params.exception).toMatch(/no cluster/);
    expect(gw.membersOf('alice.test')).toEqual(['10.0.0.1:80']);
    expect(gw.control.sessions()).toHaveLength(2);
  });

  it('rid is 16 random bytes, different for every session', async () => {
    const gw = await startTestControlPlane();
    const rids = new Set<string>();
    for (let i = 0; i < 5; i++) rids.add((await gw.session()).rid.toString('hex'));
    expect(rids.size).toBe(5);
  });

  it('creates the gateway key pair once and reuses it', async () => {
    const gw = await startTestControlPlane();
    const { statSync, readFileSync } = await import('node:fs');
    const secret = `${gw.stateDir}/gateway.key`;
    expect(statSync(secret).mode & 0o777).toBe(0o600);
    expect(readFileSync(`${gw.stateDir}/gateway.pub`, 'utf8').trim()).toBe(gw.control.publicKey);
    const again = await startTestControlPlane({ stateDir: gw.stateDir });
    expect(again.control.publicKey).toBe(gw.control.publicKey);
  });

  it('binds every interface for host "" and any free port for port 0', async () => {
    const gw = await startTestControlPlane({ listenHost: '' });
    expect(gw.control.port).toBeGreaterThan(0);
    const client = await gw.session();
    expect(client.offer?.command).toBe('resource_offer');
  });
});
