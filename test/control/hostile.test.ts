import { describe, expect, it } from 'vitest';
import nacl from 'tweetnacl';
import { EMPTY, cbor, newKeys, startTestControlPlane } from '../helpers/control-client.js';
import type { RawControlClient } from '../helpers/control-client.js';

const publish = (subdomain: string, containers: unknown[]) => ({ domain: 'test', subdomain, rewrite: null, ssl: null, containers });

/** A deterministic PRNG so a failing fuzz run can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('hostile control input', () => {
  it('a fuzz loop of random and mutated frames leaves the gateway serving and its state unchanged', async () => {
    const gw = await startTestControlPlane({ messagesPerSecond: 1_000_000 });
    const owner = await gw.session();
    const cluster = Buffer.from('owned-cluster');
    await owner.request('publish_web', publish('owned.', ['10.0.0.1:80']), cluster);
    const before = gw.routing.snapshot();
    const fuzzer = await gw.session();
    const stranger = gw.client(newKeys());
    const random = prng(20_201);
    const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(random() * 256)));
    const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const anyValue = (depth = 0): unknown => {
      switch (Math.floor(random() * (depth > 2 ? 6 : 9))) {
        case 0: return bytes(Math.floor(random() * 40));
        case 1: return 'text' + Math.floor(random() * 100);
        case 2: return Math.floor(random() * 1e6) - 5e5;
        case 3: return null;
        case 4: return random() < 0.5;
        case 5: return random() * 1e9;
        case 6: return Array.from({ length: Math.floor(random() * 4) }, () => anyValue(depth + 1));
        case 7: return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, (_, i) => [pick(['domain', 'subdomain', 'cluster', 'container', 'containers', 'rewrite', 'ssl', `k${i}`]), anyValue(depth + 1)]));
        default: return new Map([[bytes(3), anyValue(depth + 1)]]);
      }
    };
    const commands = ['publish_web', 'unpublish_web', 'add_to_cluster', 'remove_from_cluster', 'list_domains', 'heartbeat', 'auth', 'prepare_domain', '', 'x'.repeat(70), '\u0000\u00ff'];
    const validFrame = fuzzer.seal('add_to_cluster', Buffer.from('u'), { cluster, container: '10.6.6.6:80' });
    const generators: ((client: RawControlClient) => Buffer | Buffer[])[] = [
      () => bytes(Math.floor(random() * 200)),
      () => {
        const copy = Buffer.from(validFrame);
        for (let i = 0; i < 1 + Math.floor(random() * 4); i++) copy[Math.floor(random() * copy.length)] = Math.floor(random() * 256);
        return copy;
      },
      () => validFrame.subarray(0, Math.floor(random() * validFrame.length)),
      () => cbor(anyValue()),
      () => cbor(Array.from({ length: Math.floor(random() * 7) }, () => anyValue(1))),
      (client) => {
        // Well-encrypted, with params that can never make a valid change.
        const command = pick(commands);
        const params = command === 'publish_web'
          ? { ...publish('fz.', ['10.6.6.6:80']), domain: pick([bytes(4), 5, null, ['test']]) }
          : (anyValue() as object);
        const uuid = random() < 0.7 ? bytes(1 + Math.floor(random() * 20)) : EMPTY;
        return client.sessionKey ? client.seal(command, uuid, params) : cbor([EMPTY, Buffer.from(command), uuid, params, EMPTY]);
      },
      () => cbor([EMPTY, Buffer.from('auth'), EMPTY, anyValue(), EMPTY]),
      () => cbor([EMPTY, Buffer.from('auth'), EMPTY, { user: bytes(32), rid: bytes(16) }, EMPTY]),
      () => [bytes(5), bytes(5)],
      () => cbor([bytes(24), Buffer.from('publish_web'), bytes(16), bytes(60), bytes(20)]),
      () => cbor([bytes(24), 'publish_web', bytes(16), bytes(60), EMPTY]),
    ];
    const deadline = Date.now() + 4000;
    let sent = 0;
    while (sent < 3000 && Date.now() < deadline) {
      const client = random() < 0.75 ? fuzzer : stranger;
      await client.sendRaw(pick(generators)(client));
      sent++;
    }
    expect(sent).toBeGreaterThan(500);
    // Still serving: the owner and a brand new session get answers, and nothing changed.
    expect((await owner.request('list_domains', {}, Buffer.from('after-fuzz'))).params).toEqual({ domains: ['test'] });
    const fresh = await gw.session();
    expect((await fresh.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(gw.routing.snapshot()).toBe(before);
    expect(gw.membersOf('owned.test')).toEqual(['10.0.0.1:80']);
    expect(gw.logs.some((line) => line.level === 50 && line.msg === 'control frame handling failed')).toBe(false);
    expect(gw.logs.some((line) => line.msg === 'control command failed')).toBe(false);
  }, 30_000);

  it('rate-limits a flooding session without slowing another one', async () => {
    const gw = await startTestControlPlane({ messagesPerSecond: 20 });
    const flooder = await gw.session();
    const other = await gw.session();
    const uuids: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const uuid = Buffer.from(`flood-${i}`);
      uuids.push(uuid);
      await flooder.sendRaw(flooder.seal('list_domains', uuid, {}));
    }
    expect((await other.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    let refused = 0;
    for (const uuid of uuids) {
      const reply = await flooder.replyTo(uuid);
      if (typeof reply.params.exception === 'string') {
        expect(reply.params.exception).toMatch(/rate limit/);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(150);
    expect(refused).toBeLessThan(200);
  });

  it('refuses a frame over the size limit with an exception, and survives one far over it', async () => {
    const gw = await startTestControlPlane({ maxFrameBytes: 4096 });
    const a = await gw.session();
    const before = gw.routing.snapshot();
    const uuid = Buffer.from('big-one');
    await a.sendRaw(a.seal('publish_web', uuid, { ...publish('big.', ['10.0.0.1:80']), pad: 'x'.repeat(5000) }));
    expect((await a.replyTo(uuid)).params.exception).toMatch(/over the limit of 4096/);
    const b = await gw.session();
    await b.sendRaw(b.seal('publish_web', Buffer.from('huge'), { ...publish('huge.', ['10.0.0.1:80']), pad: 'x'.repeat(100_000) }));
    // Another session is unaffected and nothing changed.
    expect((await a.request('list_domains', {})).params).toEqual({ domains: ['test'] });
    expect(gw.routing.snapshot()).toBe(before);
  });

  it('refuses CBOR tags before decoding them: a huge bignum from a stranger does not stall anyone', async () => {
    const gw = await startTestControlPlane();
    const a = await gw.session();
    const stranger = gw.client(newKeys());
    // Tag 2 (bignum) over a 200 kB byte string: cbor-x builds it in quadratic time (15 s here).
    const bignum = Buffer.concat([Buffer.from([0xc2, 0x5a]), Buffer.alloc(4), Buffer.alloc(200_000, 0xab)]);
    bignum.writeUInt32BE(200_000, 2);
    await stranger.sendRaw(bignum);
    const started = Date.now();
    expect((await a.request('list_domains', {}, Buffer.from('after-bignum'))).params).toEqual({ domains: ['test'] });
    expect(Date.now() - started).toBeLessThan(2000);
    // Inside a session too: a tag anywhere in the params is refused, not decoded.
    const uuid = Buffer.from('tagged');
    const nonce = nacl.randomBytes(24);
    const tagged = Buffer.from([0xa1, 0x61, 0x78, 0xc2, 0x41, 0x01]); // {"x": 2(h'01')}, a one-byte bignum
    await a.sendRaw(cbor([Buffer.from(nonce), Buffer.from('publish_web'), uuid, Buffer.from(nacl.secretbox(tagged, nonce, a.sessionKey!)), EMPTY]));
    expect((await a.replyTo(uuid)).params.exception).toMatch(/CBOR tags are not part of the control protocol/);
  });

  it('answers wrong shapes and undecryptable frames with an exception when a uuid was given', async () => {
    const gw = await startTestControlPlane();
    const a = await gw.session();
    const uuid = Buffer.from('shape-1');
    await a.sendRaw(cbor([Buffer.alloc(24), Buffer.from('list_domains'), uuid, Buffer.from(nacl.randomBytes(40)), EMPTY]));
    expect((await a.replyTo(uuid)).params.exception).toMatch(/could not be decrypted/);
    const uuid2 = Buffer.from('shape-2');
    await a.sendRaw(cbor([Buffer.alloc(24), 'list_domains', uuid2, Buffer.alloc(40), EMPTY]));
    expect((await a.replyTo(uuid2)).params.exception).toMatch(/command must be a byte string/);
    const uuid3 = Buffer.from('shape-3');
    const key = a.sessionKey!;
    const nonce = nacl.randomBytes(24);
    await a.sendRaw(cbor([Buffer.from(nonce), Buffer.from('list_domains'), uuid3, Buffer.from(nacl.secretbox(cbor(['not', 'a', 'map']), nonce, key)), EMPTY]));
    expect((await a.replyTo(uuid3)).params.exception).toMatch(/params must be a CBOR map/);
    const uuid4 = Buffer.from('shape-4');
    // {h'646f6d61696e': "x"} as a Python client would send it (cbor-x would wrap such a map in tag 259).
    const byteKeyMap = Buffer.concat([Buffer.from([0xa1, 0x46]), Buffer.from('domain'), Buffer.from([0x61, 0x78])]);
    const nonce4 = nacl.randomBytes(24);
    await a.sendRaw(cbor([Buffer.from(nonce4), Buffer.from('list_domains'), uuid4, Buffer.from(nacl.secretbox(byteKeyMap, nonce4, key)), EMPTY]));
    expect((await a.replyTo(uuid4)).params.exception).toMatch(/keys must be text strings/);
    // A uuid over the 64-byte limit still gets its one reply, an exception.
    const longUuid = Buffer.alloc(65, 'u');
    await a.sendRaw(a.seal('list_domains', longUuid, {}));
    expect((await a.replyTo(longUuid)).params.exception).toMatch(/uuid longer than 64 bytes/);
  });
});
