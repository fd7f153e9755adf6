import { connect, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';
import { describe, expect, it, onTestFinished } from 'vitest';
import { httpRequest, rawRequest, statusOf } from '../helpers/http.js';
import { startGateway, waitFor } from './harness.js';

/**
 * An HTTP request fuzzer over raw sockets: valid seeds, mutated at the byte, line and header level,
 * sent to an in-process gateway whose member parses what it receives strictly, byte for byte. The
 * gateway must never crash, never forward a request with ambiguous framing, and end as it started.
 */

const SEEDS = [
  'GET /a?b=c HTTP/1.1\r\nHost: app.test\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello',
  'POST /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n',
  'GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n',
  'PUT http://app.test/abs HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nxyz',
  'GET / HTTP/1.0\r\nHost: app.test\r\n\r\n',
];

const NASTY_HEADERS = [
  'Content-Length: 3', 'Content-Length: 0', 'Content-Length: -1', 'Content-Length: 1e3', 'Content-Length: 0x10', 'Content-Length:  5 ',
  'Content-Length: 5, 5', 'Content-Length: 99999999999999999999', 'Transfer-Encoding: chunked', 'Transfer-Encoding: Chunked',
  'Transfer-Encoding: chunked, identity', 'Transfer-Encoding: identity', 'Transfer-Encoding : chunked', ' Transfer-Encoding: chunked',
  'Transfer-Encoding:\tchunked', 'Transfer-Encoding: xchunked', 'Transfer-Encoding: chunked\r\n Content-Length: 2', 'X-Folded: a\r\n b',
  'Host: evil.test', 'Host: app.test:99999', 'Host:', 'Connection: close, Content-Length', 'Connection: upgrade\r\nUpgrade: h2c',
  'Expect: 100-continue', 'X-Nul: a\0b', 'X-Cr: a\rb', 'X-Lf: a\nb', 'X-Big: ' + 'v'.repeat(20_000), 'Bad Name: x', ': empty', 'X-Utf8: \u00e9\u00ff',
];

const NASTY_BYTES = ['\0', '\r', '\n', '\r\n', ' ', '\t', ':', ';', '\x7f', '\xff', '0', 'f', '-', '\r\n\r\n', ',', '"'];

const BAD_CHUNKS = ['zz\r\nabc\r\n', 'ffffffffffffffffff\r\n', '5\r\nabc\r\n', '3\nabc\n', '-1\r\n', '3 \r\nabc\r\n', '3\r\nabcXX', '0\r\nX-Trailer: t\r\n\r\n', '1;' + 'e'.repeat(10_000) + '\r\na\r\n'];

/** A small seeded PRNG (mulberry32), so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mutate(seed: string, random: () => number): string {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  let text = seed;
  const rounds = 1 + Math.floor(random() * 3);
  for (let r = 0; r < rounds; r++) {
    const at = Math.floor(random() * (text.length + 1));
    const headEnd = Math.max(text.indexOf('\r\n') + 2, 2);
    switch (Math.floor(random() * 9)) {
      case 0: text = text.slice(0, at) + pick(NASTY_BYTES) + text.slice(at); break;
      case 1: text = text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 4)); break;
      case 2: text = text.slice(0, headEnd) + pick(NASTY_HEADERS) + '\r\n' + text.slice(headEnd); break;
      case 3: text = text.replace(/\r\n/g, random() < 0.5 ? '\n' : '\r'); break;
      case 4: text = text.replace(/^[A-Z]+/, pick(['GET', 'POST', 'get', 'G ET', 'CONNECT', 'PRI', 'X'.repeat(300), ''])); break;
      case 5: text = text.replace('HTTP/1.1', pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.10', 'http/1.1', 'HTTP/1.1 ', 'HTTP/0.9', ''])); break;
      case 6: {
        const body = text.indexOf('\r\n\r\n');
        if (body !== -1) text = text.slice(0, body + 4) + pick(BAD_CHUNKS) + text.slice(body + 4);
        break;
      }
      case 7: {
        const line = text.indexOf('\r\n', headEnd);
        if (line !== -1) text = text.slice(0, line + 2) + text.slice(headEnd, line + 2) + text.slice(line + 2); // repeat a header line
        break;
      }
      default: text = text.replace(' /', ` /${pick(['%00', '..%2f', '#frag', '?' + 'q'.repeat(9_000), ' x', '\u00e9'])}`);
    }
  }
  return text;
}

/** What the member saw that it should never have seen. */
interface Violation {
  readonly reason: string;
  readonly bytes: string;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * A member that parses each connection's bytes as a strict HTTP/1.1 server would (RFC 9112):
 * well-formed request line and header lines, no bare CR/LF/NUL, one Host, exactly one way of
 * framing the body, chunked bodies well-formed; then answers 200 and reads the next request.
 * Anything else is a violation: the gateway forwarded something ambiguous.
 */
async function strictMember(violations: Violation[]) {
  let requests = 0;
  const server = createServer((socket: Socket) => {
    socket.on('error', () => {});
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const consumed = parseOne(buffer, (reason) => violations.push({ reason, bytes: buffer.toString('latin1').slice(0, 2_000) }));
        if (consumed === 0) return;
        if (consumed < 0) {
          socket.destroy();
          return;
        }
        requests++;
        buffer = buffer.subarray(consumed);
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { address: `127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => requests };
}

/** Bytes of one complete request at the start of `buf`, 0 when incomplete, -1 after a violation. */
function parseOne(buf: Buffer, violate: (reason: string) => void): number {
  const text = buf.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return 0;
  const lines = text.slice(0, end).split('\r\n');
  const fail = (reason: string): number => (violate(reason), -1);
  if (!/^[A-Z]+ \/[^\s\0]* HTTP\/1\.1$/.test(lines[0]!)) return fail(`bad request line ${JSON.stringify(lines[0])}`);
  let lengths = 0;
  let length = 0;
  let chunked = false;
  let hosts = 0;
  for (const line of lines.slice(1)) {
    if (/[\r\n\0]/.test(line)) return fail(`bare CR, LF or NUL in ${JSON.stringify(line)}`);
    const colon = line.indexOf(':');
    if (colon <= 0 || !TOKEN.test(line.slice(0, colon))) return fail(`bad header line ${JSON.stringify(line)}`);
    if (line[0] === ' ' || line[0] === '\t') return fail('obs-fold');
    const name = line.slice(0, colon).toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'host') hosts++;
    if (name === 'content-length') {
      lengths++;
      if (!/^[0-9]+$/.test(value)) return fail(`bad Content-Length ${JSON.stringify(value)}`);
      length = Number(value);
    }
    if (name === 'transfer-encoding') {
      if (value.toLowerCase() !== 'chunked' || chunked) return fail(`Transfer-Encoding ${JSON.stringify(value)}`);
      chunked = true;
    }
  }
  if (hosts !== 1) return fail(`${hosts} Host headers`);
  if (lengths > 1) return fail('several Content-Length');
  if (lengths === 1 && chunked) return fail('Content-Length and Transfer-Encoding');
  let at = end + 4;
  if (chunked) {
    for (;;) {
      const eol = text.indexOf('\r\n', at);
      if (eol === -1) return 0;
      const size = text.slice(at, eol);
      if (!/^[0-9a-fA-F]{1,8}$/.test(size)) return fail(`bad chunk size ${JSON.stringify(size.slice(0, 40))}`);
      const n = parseInt(size, 16);
      at = eol + 2;
      if (n === 0) {
        // Trailers are not forwarded: the last chunk is followed by the empty line.
        if (text.length < at + 2) return 0;
        return text.slice(at, at + 2) === '\r\n' ? at + 2 : fail('bad end of chunked body');
      }
      if (text.length < at + n + 2) return 0;
      if (text.slice(at + n, at + n + 2) !== '\r\n') return fail('chunk not followed by CRLF');
      at += n + 2;
    }
  }
  if (buf.length < at + length) return 0;
  return at + length;
}

/** Writes `bytes`, half-closes (so the gateway closes after answering), and returns all it read; bounded at 1 s. */
async function sendAndHalfClose(port: number, bytes: Buffer): Promise<string> {
  const socket = connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => {});
  socket.end(bytes);
  const timer = setTimeout(() => socket.destroy(), 1_000);
  await once(socket, 'close');
  clearTimeout(timer);
  return Buffer.concat(chunks).toString('latin1');
}

describe('HTTP request fuzzer', () => {
  it('never crashes, never forwards an ambiguous request, and ends in the state it started in', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const iterations = Number(process.env.FUZZ_ITERATIONS ?? 2_000);
    const budgetMs = Number(process.env.FUZZ_BUDGET_MS ?? 8_000);
    const violations: Violation[] = [];
    const member = await strictMember(violations);
    const gw = await startGateway({ 'app.test': { members: [member.address] } }, { accessLog: false, limits: { headersTimeoutMs: 1_000 } });
    const version = gw.dataPlane.version;
    const random = prng(seed);
    const started = Date.now();
    let sent = 0;
    const statuses = new Map<string, number>();
    for (; sent < iterations && Date.now() - started < budgetMs; sent++) {
      const request = mutate(SEEDS[Math.floor(random() * SEEDS.length)]!, random);
      const raw = await sendAndHalfClose(gw.port, Buffer.from(request, 'latin1'));
      const status = /^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 'none';
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (violations.length > 0) break;
    }
    expect(violations, `seed ${seed}: the member saw ${JSON.stringify(violations[0])}`).toEqual([]);
    expect(sent).toBeGreaterThan(100);
    expect(statuses.get('500') ?? 0, `seed ${seed}: internal errors`).toBe(0);
    // The state is what it was: same routes, member not ejected, nothing left in flight.
    await waitFor(() => gw.gateway.inFlight === 0, 3_000, 'no request left in flight');
    expect(gw.dataPlane.version).toBe(version);
    const upstream = gw.dataPlane.registry.peek(member.address)!;
    expect(upstream.isAvailable(Date.now())).toBe(true);
    await waitFor(() => upstream.inFlight === 0, 3_000, 'the member released');
    expect((await httpRequest(gw.port, { host: 'app.test' })).body).toBe('ok');
    expect(member.requests()).toBeGreaterThan(0);
  }, 30_000);

  it('counts out a pipelined request whose connection an earlier answer closed', async () => {
    const violations: Violation[] = [];
    const member = await strictMember(violations);
    const gw = await startGateway({ 'app.test': { members: [member.address] } });
    const raw = await rawRequest(gw.port, 'GET /1 HTTP/1.1\r\nHost: app.test\r\nHost: app.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n');
    expect(statusOf(raw)).toBe(400);
    await waitFor(() => gw.gateway.inFlight === 0, 2_000, 'the pipelined request counted out');
    expect(violations).toEqual([]);
  });
});
