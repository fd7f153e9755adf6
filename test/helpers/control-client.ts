/**
 * A raw control-protocol client for tests, written against protocol.md with its own CBOR and NaCl
 * calls (not the gateway's frames.ts), so the tests check the wire format rather than agree with
 * the server's own codec. Also: a tiny CBOR major-type inspector, and a control-plane fixture.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decoder, Encoder } from 'cbor-x';
import nacl from 'tweetnacl';
import { Dealer } from 'zeromq';
import { onTestFinished } from 'vitest';
import { createLogger } from '../../src/log.js';
import { ControlPlane, RoutingStateBuilder, openStore } from '../../src/control/index.js';
import { DataPlane } from '../../src/gateway/index.js';
import type { RoutingState } from '../../src/vhost/index.js';

const encoder = new Encoder({ useRecords: false, variableMapSize: true, tagUint8Array: false });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

export const EMPTY = Buffer.alloc(0);

/** Encodes like a Python cbor2 client would: Buffers → byte strings, strings → text. */
export function cbor(value: unknown): Buffer {
  return encoder.encode(value);
}

export function uncbor(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}

export interface TestKeys {
  publicKey: Uint8Array;
  secretKey: Uint8Array;
}

export function newKeys(): TestKeys {
  const pair = nacl.box.keyPair();
  return { publicKey: pair.publicKey, secretKey: pair.secretKey };
}

export function b64(key: Uint8Array): string {
  return Buffer.from(key).toString('base64');
}

/** A decrypted message from the gateway. */
export interface Received {
  raw: Buffer;
  nonce: Buffer;
  command: string;
  uuid: Buffer;
  params: Record<string, unknown>;
  paramsPlain: Uint8Array;
}

/** A DEALER speaking the protocol by hand. */
export class RawControlClient {
  readonly socket: Dealer;
  sessionKey: Uint8Array | undefined;
  rid: Buffer = EMPTY;
  offer: Received | undefined;
  readonly #frames: Buffer[] = [];
  readonly #waiters: (() => void)[] = [];
  #closed = false;

  constructor(readonly endpoint: string, readonly serverKey: Uint8Array, readonly keys: TestKeys) {
    this.socket = new Dealer({ linger: 0 });
    this.socket.connect(endpoint);
    void this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      for await (const [frame] of this.socket) {
        if (!frame) continue;
        this.#frames.push(frame);
        for (const wake of this.#waiters.splice(0)) wake();
      }
    } catch {
      // closed
    }
  }

  /** The next raw frame from the gateway. */
  async next(timeoutMs = 3000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const frame = this.#frames.shift();
      if (frame) return frame;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no frame from the gateway in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Frames received and not yet read. */
  get pending(): number {
    return this.#frames.length;
  }

  async sendRaw(frame: Uint8Array | Uint8Array[]): Promise<void> {
    await this.socket.send(frame as Buffer);
  }

  /** Sends `auth` with this client's key (or another one) and returns the raw answer. */
  async auth(rid: Uint8Array = EMPTY, user: Uint8Array = this.keys.publicKey): Promise<Buffer> {
    await this.sendRaw(cbor([EMPTY, Buffer.from('auth'), EMPTY, { user: Buffer.from(user), rid: Buffer.from(rid) }, EMPTY]));
    return this.next();
  }

  /** Full handshake; waits for the resource offer unless `expectOffer` is false. */
  async handshake(rid: Uint8Array = EMPTY, expectOffer = true): Promise<void> {
    const answer = await this.auth(rid);
    const parts = uncbor(answer) as unknown[];
    if (!Array.isArray(parts) || parts.length !== 3) throw new Error('Authentication failed');
    const [nonce, boxed, newRid] = parts as [Uint8Array, Uint8Array, Uint8Array];
    const key = nacl.box.open(boxed, nonce, this.serverKey, this.keys.secretKey);
    if (!key) throw new Error('cannot open the session key');
    this.sessionKey = key;
    this.rid = Buffer.from(newRid);
    if (expectOffer) this.offer = await this.receive();
  }

  /** Seals a message like a client: `[nonce, command, uuid, box(params), box(bulk) or b'']`. */
  seal(command: string | Uint8Array, uuid: Uint8Array, params: unknown, options: { nonce?: Uint8Array; bulk?: Uint8Array } = {}): Buffer {
    const key = this.sessionKey!;
    const nonce = options.nonce ?? nacl.randomBytes(24);
    const paramsBox = nacl.secretbox(cbor(params), nonce, key);
    const bulkBox = options.bulk ? nacl.secretbox(options.bulk, nonce, key) : EMPTY;
    return cbor([Buffer.from(nonce), Buffer.from(command), Buffer.from(uuid), Buffer.from(paramsBox), Buffer.from(bulkBox)]);
  }

  /** Decrypts a gateway message. */
  open(raw: Buffer): Received {
    const parts = uncbor(raw) as Uint8Array[];
    const [nonce, command, uuid, paramsBox] = parts as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
    const plain = nacl.secretbox.open(paramsBox, nonce, this.sessionKey!);
    if (!plain) throw new Error('cannot open a gateway message');
    return {
      raw,
      nonce: Buffer.from(nonce),
      command: Buffer.from(command).toString(),
      uuid: Buffer.from(uuid),
      params: uncbor(plain) as Record<string, unknown>,
      paramsPlain: plain,
    };
  }

  /** The next gateway message that is not a probe. */
  async receive(timeoutMs = 3000): Promise<Received> {
    for (;;) {
      const message = this.open(await this.next(timeoutMs));
      if (message.command !== 'probe') return message;
    }
  }

  /** Sends a command and returns the reply with the same uuid (other messages in between are kept in `others`). */
  async request(command: string, params: unknown, uuid: Uint8Array = nacl.randomBytes(16)): Promise<Received> {
    await this.sendRaw(this.seal(command, uuid, params));
    return this.replyTo(uuid);
  }

  readonly others: Received[] = [];

  async replyTo(uuid: Uint8Array, timeoutMs = 3000): Promise<Received> {
    const early = this.others.findIndex((m) => m.command === '' && Buffer.compare(m.uuid, Buffer.from(uuid)) === 0);
    if (early !== -1) return this.others.splice(early, 1)[0]!;
    for (;;) {
      const message = await this.receive(timeoutMs);
      if (message.command === '' && Buffer.compare(message.uuid, Buffer.from(uuid)) === 0) return message;
      this.others.push(message);
    }
  }

  /** Sends a command without a uuid (no reply is asked for). */
  async tell(command: string, params: unknown): Promise<void> {
    await this.sendRaw(this.seal(command, EMPTY, params));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.socket.close();
  }
}

/** The CBOR major type of each item, read from raw bytes (independent of any CBOR library). */
export type Shape = 'uint' | 'negint' | 'bytes' | 'text' | 'true' | 'false' | 'null' | 'float' | `tag` | Shape[] | { [key: string]: Shape };

export function cborShape(bytes: Uint8Array): Shape {
  let pos = 0;
  const readArg = (info: number): number => {
    if (info < 24) return info;
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : -1;
    if (size < 0) throw new Error(`indefinite or reserved length (info ${info}) at ${pos}`);
    let value = 0;
    for (let i = 0; i < size; i++) value = value * 256 + bytes[pos++]!;
    return value;
  };
  const readText = (): string => {
    const head = bytes[pos++]!;
    if (head >> 5 !== 3) throw new Error('map key is not a text string');
    const length = readArg(head & 31);
    const text = Buffer.from(bytes.subarray(pos, pos + length)).toString('utf8');
    pos += length;
    return text;
  };
  const item = (): Shape => {
    const head = bytes[pos++]!;
    const major = head >> 5;
    const info = head & 31;
    switch (major) {
      case 0:
        readArg(info);
        return 'uint';
      case 1:
        readArg(info);
        return 'negint';
      case 2:
      case 3: {
        const length = readArg(info);
        pos += length;
        return major === 2 ? 'bytes' : 'text';
      }
      case 4: {
        const length = readArg(info);
        return Array.from({ length }, () => item());
      }
      case 5: {
        const length = readArg(info);
        const map: Record<string, Shape> = {};
        for (let i = 0; i < length; i++) {
          const key = readText();
          map[key] = item();
        }
        return map;
      }
      case 6:
        readArg(info);
        item();
        return 'tag';
      default:
        if (info === 20) return 'false';
        if (info === 21) return 'true';
        if (info === 22) return 'null';
        if (info >= 25 && info <= 27) {
          pos += info === 25 ? 2 : info === 26 ? 4 : 8;
          return 'float';
        }
        throw new Error(`unexpected simple value ${info}`);
    }
  };
  const shape = item();
  if (pos !== bytes.length) throw new Error(`trailing bytes after the CBOR item (${bytes.length - pos})`);
  return shape;
}

/** A running control plane over a real data plane, in a temp state dir, torn down when the test ends. */
export interface TestControlPlane {
  control: ControlPlane;
  dataPlane: DataPlane;
  routing: RoutingStateBuilder;
  stateDir: string;
  endpoint: string;
  serverKey: Uint8Array;
  logs: Record<string, unknown>[];
  /** Authorises a new key pair (through the store, as `tfgate accounts add` does) and returns it. */
  addAccount(name?: string): TestKeys;
  removeAccount(keys: TestKeys): void;
  /** Records a domain claim for the account straight in the store (as a claim with a DNS proof would). */
  claimDomain(keys: TestKeys, domain: string): void;
  /** A raw client connected (not yet authenticated). */
  client(keys?: TestKeys, serverKey?: Uint8Array): RawControlClient;
  /** A raw client that has done its handshake and read its resource offer. */
  session(keys?: TestKeys): Promise<RawControlClient>;
  /** The members the data plane routes `fqdn` to, or undefined. */
  membersOf(fqdn: string): string[] | undefined;
  applied: RoutingState[];
}

export async function startTestControlPlane(
  options: {
    maxClustersPerSession?: number;
    sessionGraceMs?: number;
    maxFrameBytes?: number;
    messagesPerSecond?: number;
    maxSessionsPerAccount?: number;
    globalDomains?: string[];
    stateDir?: string;
    listenHost?: string;
    /** `ip:port` of the DNS server domain claims query. */
    dnsServer?: string;
    now?: () => number;
  } = {},
): Promise<TestControlPlane> {
  const stateDir = options.stateDir ?? mkdtempSync(join(tmpdir(), 'tfgate-control-'));
  const logs: Record<string, unknown>[] = [];
  const log = createLogger('debug', {
    write(line: string) {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const routing = new RoutingStateBuilder();
  const dataPlane = new DataPlane({ balancer: 'least-outstanding' });
  const applied: RoutingState[] = [];
  const control = new ControlPlane({
    listen: { host: options.listenHost ?? '127.0.0.1', port: 0 },
    stateDir,
    globalDomains: options.globalDomains ?? ['test'],
    ...(options.dnsServer ? { dnsServer: options.dnsServer } : {}),
    ...(options.now ? { now: options.now } : {}),
    sessionGraceMs: options.sessionGraceMs ?? 60_000,
    maxFrameBytes: options.maxFrameBytes ?? 1024 * 1024,
    messagesPerSecond: options.messagesPerSecond ?? 1000,
    ...(options.maxClustersPerSession !== undefined ? { maxClustersPerSession: options.maxClustersPerSession } : {}),
    ...(options.maxSessionsPerAccount ? { maxSessionsPerAccount: options.maxSessionsPerAccount } : {}),
    routing,
    applyRouting: async (state) => {
      applied.push(state);
      dataPlane.apply(state);
    },
    log,
  });
  await control.start();
  const store = openStore(stateDir);
  const clients: RawControlClient[] = [];
  onTestFinished(async () => {
    for (const client of clients) client.close();
    store.close();
    await control.close();
    if (!options.stateDir) rmSync(stateDir, { recursive: true, force: true });
  });
  const endpoint = `tcp://127.0.0.1:${control.port}`;
  const serverKey = new Uint8Array(Buffer.from(control.publicKey, 'base64'));
  const fixture: TestControlPlane = {
    control,
    dataPlane,
    routing,
    stateDir,
    endpoint,
    serverKey,
    logs,
    applied,
    addAccount(name = 'test account') {
      const keys = newKeys();
      store.addAccount(b64(keys.publicKey), name);
      return keys;
    },
    removeAccount(keys) {
      store.removeAccount(b64(keys.publicKey));
    },
    claimDomain(keys, domain) {
      const outcome = store.claimDomain(b64(keys.publicKey), domain);
      if (!outcome.ok) throw new Error(`${domain} is claimed by another account`);
    },
    client(keys = fixture.addAccount(), key = serverKey) {
      const client = new RawControlClient(endpoint, key, keys);
      clients.push(client);
      return client;
    },
    async session(keys) {
      const client = fixture.client(keys);
      await client.handshake();
      return client;
    },
    membersOf(fqdn) {
      const route = dataPlane.routes.current.lookup(fqdn);
      return route ? route.cluster.members.map((m) => m.address) : undefined;
    },
  };
  return fixture;
}

/** Waits until `check` returns true, polling (for effects with no event to wait on, such as a grace window). */
export async function eventually(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A TCP proxy in front of the control port, so a test can break a client's connection: `cut()`
 * resets every connection (the client reconnects through the proxy), `freeze()` silently stops
 * forwarding without closing anything (a peer that vanished without a FIN).
 */
export interface TcpProxy {
  readonly port: number;
  cut(): void;
  freeze(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const { createServer, connect } = await import('node:net');
  const pairs = new Set<[import('node:net').Socket, import('node:net').Socket]>();
  let frozen = false;
  const server = createServer((downstream) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair: [import('node:net').Socket, import('node:net').Socket] = [downstream, upstream];
    pairs.add(pair);
    for (const socket of pair) {
      socket.on('error', () => undefined);
      socket.on('close', () => {
        pairs.delete(pair);
        downstream.destroy();
        upstream.destroy();
      });
    }
    downstream.on('data', (chunk) => {
      if (!frozen) upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (!frozen) downstream.write(chunk);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as import('node:net').AddressInfo).port;
  const proxy: TcpProxy = {
    port,
    cut() {
      for (const [downstream, upstream] of pairs) {
        downstream.resetAndDestroy();
        upstream.resetAndDestroy();
      }
    },
    freeze() {
      frozen = true;
    },
    async close() {
      proxy.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  onTestFinished(() => proxy.close());
  return proxy;
}
