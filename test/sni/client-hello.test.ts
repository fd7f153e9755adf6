import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { parseClientHello } from '../../src/sni/index.js';

/** The first bytes a real TLS client sends, captured on a plain TCP server. */
async function captureClientHello(servername?: string): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection');
  const client = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, rejectUnauthorized: false, ...(servername ? { servername } : {}) });
  client.on('error', () => {});
  const [socket] = (await accepted) as [import('node:net').Socket];
  const chunks: Buffer[] = [];
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    chunks.push(chunk);
    if (parseClientHello(Buffer.concat(chunks)).kind !== 'incomplete') break;
  }
  client.destroy();
  socket.destroy();
  server.close();
  return Buffer.concat(chunks);
}

/** Re-frames a single-record ClientHello as two records, split inside the handshake message. */
function splitIntoTwoRecords(hello: Buffer, at: number): Buffer {
  const body = hello.subarray(5);
  const record = (fragment: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, fragment.length >> 8, fragment.length & 0xff]), fragment]);
  return Buffer.concat([record(body.subarray(0, at)), record(body.subarray(at))]);
}

describe('parseClientHello', () => {
  it('reads the server name of a real ClientHello, and none when the client sent none', async () => {
    expect(parseClientHello(await captureClientHello('www.example.com'))).toEqual({ kind: 'hello', servername: 'www.example.com' });
    expect(parseClientHello(await captureClientHello())).toEqual({ kind: 'hello', servername: undefined });
  });

  it('waits for every byte, whatever the TCP segmentation, and for every record the message spans', async () => {
    const hello = await captureClientHello('a.example.com');
    for (const cut of [1, 4, 5, 6, 9, 50, hello.length - 1]) expect(parseClientHello(hello.subarray(0, cut)).kind).toBe('incomplete');
    for (const at of [2, 3, 40, 100]) {
      const twoRecords = splitIntoTwoRecords(hello, at);
      expect(parseClientHello(twoRecords)).toEqual({ kind: 'hello', servername: 'a.example.com' });
      expect(parseClientHello(twoRecords.subarray(0, twoRecords.length - 1)).kind).toBe('incomplete');
    }
  });

  it.each([
    ['plain HTTP', Buffer.from('GET / HTTP/1.1\r\n'), 'not a TLS handshake record'],
    ['an alert record', Buffer.from([0x15, 3, 1, 0, 2, 2, 40]), 'not a TLS handshake record'],
    ['a ServerHello', Buffer.from([0x16, 3, 1, 0, 4, 2, 0, 0, 0]), 'not a ClientHello'],
    ['an empty record', Buffer.from([0x16, 3, 1, 0, 0]), 'empty TLS record'],
    ['a huge declared ClientHello', Buffer.from([0x16, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]), 'over the limit'],
    ['a truncated body', Buffer.from([0x16, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3]), 'truncated'],
  ])('refuses %s', (_name, bytes, reason) => {
    const result = parseClientHello(bytes);
    expect(result.kind).toBe('invalid');
    if (result.kind === 'invalid') expect(result.reason).toContain(reason);
  });

  it('never throws on mutated ClientHellos', async () => {
    const hello = await captureClientHello('fuzz.example.com');
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 5_000; i++) {
      const mutated = Buffer.from(hello);
      for (let j = 0; j < 1 + Math.floor(random() * 4); j++) mutated[Math.floor(random() * mutated.length)] = Math.floor(random() * 256);
      expect(() => parseClientHello(mutated.subarray(0, Math.floor(random() * mutated.length) + 1))).not.toThrow();
    }
  });
});
