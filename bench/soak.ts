/**
 * `npm run soak`: a bounded soak test of a real `tfgate serve` child process (the compiled CLI, free
 * ports). Mixed HTTP, HTTPS and WebSocket traffic to a stable cluster, publish/unpublish churn of other
 * clusters from several control sessions, and one member of the stable cluster killed and restarted
 * midway. Reports requests, errors by kind (expected vs unexpected) and the gateway's RSS; exits 0 only
 * with zero unexpected errors and no unbounded memory growth.
 *
 * Usage: node dist/bench/soak.js [--duration 60] (seconds; env SOAK_DURATION_S).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import nacl from 'tweetnacl';
import { Cluster, Location, encodeKey, openStore } from '../src/control/index.js';
import type { KeyPair } from '../src/control/index.js';
import { ChildSet } from './processes.js';

const DOMAIN = 'soak.test';
const STABLE = `stable.${DOMAIN}`;
const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'tfgate.js');
/** After a member is restarted, how long its failures still count as expected (ejection back-off, health check). */
const RECOVERY_MS = 3_000;
/** One publish/unpublish cycle per session every this many ms (80 a second, 160 control messages). */
const CHURN_CYCLE_MS = 12.5;

/** One soak run's figures. */
export interface SoakReport {
  durationS: number;
  requests: { http: number; https: number; websocketMessages: number; websocketSessions: number; churnCycles: number };
  expected: Record<string, number>;
  unexpected: Record<string, number>;
  rssMb: { start: number; end: number; max: number };
  memoryOk: boolean;
  exitCode: number | null;
  ok: boolean;
}

/** A member: HTTP `ok from PORT`, `/healthz`, and a WebSocket-style echo after a 101 (the gateway only tunnels bytes). */
class Member {
  server: Server | undefined;
  readonly sockets = new Set<Socket>();
  port = 0;

  async start(port = 0): Promise<void> {
    const server = createServer((req, res) => {
      req.resume();
      res.end(req.url === '/healthz' ? 'healthy' : `ok from ${this.port}`);
    });
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      socket.on('error', () => socket.destroy());
      const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.on('data', (chunk: Buffer) => socket.write(chunk));
      socket.on('end', () => socket.end());
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  /** Like a crash: every connection cut at once, the port closed. */
  async kill(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }
}

/** Counts outcomes; an error is expected when `isExpected` says so at the time it happened. */
class Tally {
  readonly expected: Record<string, number> = {};
  readonly unexpected: Record<string, number> = {};
  readonly samples: string[] = [];

  error(kind: string, expected: boolean, detail = ''): void {
    const bucket = expected ? this.expected : this.unexpected;
    bucket[kind] = (bucket[kind] ?? 0) + 1;
    if (!expected && this.samples.length < 10) this.samples.push(`${kind} ${detail}`.trim());
  }
}

function rssMb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round(Number(match[1]) / 102.4) / 10 : 0;
  } catch {
    return 0;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** GET over a keep-alive agent; resolves with the status and body, rejects on a transport error. */
function get(send: typeof httpRequest, agent: HttpAgent, port: number, host: string, extra: Record<string, unknown> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = send({ host: '127.0.0.1', port, path: '/', headers: { host }, agent, ...extra }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(5_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** One WebSocket session through the gateway: upgrade, `messages` echoes, close. Resolves with the echoes received. */
async function websocketSession(port: number, messages: number, stop: () => boolean): Promise<number> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write(`GET /ws HTTP/1.1\r\nHost: ${STABLE}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomKey()}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let buffer = '';
  const closed = once(socket, 'close').then(() => {
    throw new Error('tunnel closed');
  });
  closed.catch(() => {});
  const read = async (until: (text: string) => boolean): Promise<void> => {
    const timer = setTimeout(() => socket.destroy(), 5_000);
    try {
      while (!until(buffer)) {
        await Promise.race([once(socket, 'data').then(([chunk]) => (buffer += (chunk as Buffer).toString('latin1'))), closed]);
      }
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    await read((text) => text.includes('\r\n\r\n'));
    if (!buffer.startsWith('HTTP/1.1 101')) throw new Error(`upgrade answered ${buffer.slice(0, 12)}`);
    buffer = buffer.slice(buffer.indexOf('\r\n\r\n') + 4);
    let echoed = 0;
    for (let i = 0; i < messages && !stop(); i++) {
      const message = `m${i}-${Math.random().toString(36).slice(2)};`;
      socket.write(message);
      await read((text) => text.includes(message));
      buffer = buffer.slice(buffer.indexOf(message) + message.length);
      echoed++;
      await sleep(20);
    }
    return echoed;
  } finally {
    socket.destroy();
  }
}

function randomKey(): string {
  return Buffer.from(nacl.randomBytes(16)).toString('base64');
}

/** Runs the soak for `durationS` seconds and returns its report (also printed). */
export async function runSoak(durationS: number): Promise<SoakReport> {
  const children = new ChildSet();
  const stateDir = mkdtempSync(join(tmpdir(), 'tfgate-soak-'));
  children.removeOnClose(stateDir);
  const members = [new Member(), new Member(), new Member()];
  const tally = new Tally();
  const counts = { http: 0, https: 0, websocketMessages: 0, websocketSessions: 0, churnCycles: 0 };
  const sessions: Location[] = [];
  let exitCode: number | null = null;
  try {
    for (const member of members) await member.start();
    const [m1, m2, m3] = members as [Member, Member, Member];
    const keys: KeyPair[] = [0, 1, 2].map(() => nacl.box.keyPair());
    const store = openStore(stateDir);
    try {
      keys.forEach((pair, i) => store.addAccount(encodeKey(pair.publicKey), `soak-${i}`));
    } finally {
      store.close();
    }
    const gateway = await spawnGateway(children, [
      '--http', '127.0.0.1:0', '--https', '127.0.0.1:0', '--control', '127.0.0.1:0', '--admin', '127.0.0.1:0',
      '--state-dir', stateDir, '--certs-dir', join(stateDir, 'certs'), '--global-domain', DOMAIN,
      '--access-log=false', '--health-path', '/healthz', '--health-interval', '500ms', '--health-timeout', '400ms',
      '--session-grace', '5s', '--drain-timeout', '5s',
    ]);
    const { http, https, control, publicKey } = gateway.record as { http: number; https: number; control: number; publicKey: string };
    const connectSession = (pair: KeyPair) => Location.connect({ host: '127.0.0.1', port: control, serverKey: publicKey, keys: pair, heartbeatIntervalMs: 0 });
    for (const pair of keys) sessions.push(await connectSession(pair));
    const [owner, churnB, churnC] = sessions as [Location, Location, Location];
    await owner.endpointFor(DOMAIN).publish(new Cluster([m1.address, m2.address]), STABLE);

    const started = Date.now();
    const endAt = started + durationS * 1_000;
    const killAt = started + durationS * 400;
    const restartAt = started + durationS * 600;
    let killedAt = Number.POSITIVE_INFINITY;
    let restartedAt = Number.POSITIVE_INFINITY;
    const stop = (): boolean => Date.now() >= endAt;
    /** Failures on the stable cluster are expected from the kill until a while after the restart. */
    const inKillWindow = (t: number): boolean => t >= killedAt - 50 && t <= restartedAt + RECOVERY_MS;

    const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
    const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: 8, rejectUnauthorized: false });
    const churnNames = Array.from({ length: 8 }, (_, i) => `churn-${i}.${DOMAIN}`);

    const httpLoop = async (secure: boolean): Promise<void> => {
      let i = 0;
      while (!stop()) {
        const churn = !secure && i++ % 5 === 4;
        const host = churn ? churnNames[i % churnNames.length]! : STABLE;
        const t = Date.now();
        const kind = secure ? 'https' : 'http';
        try {
          const res = secure
            ? await get(httpsRequest as typeof httpRequest, httpsAgent, https, host, { servername: host })
            : await get(httpRequest, httpAgent, http, host);
          counts[kind]++;
          if (res.status === 200 && res.body.startsWith('ok from')) continue;
          // A churned name is published or not at any moment: 404 is a right answer for it.
          const expected = (churn && res.status === 404) || (!churn && inKillWindow(t) && res.status >= 500);
          tally.error(`${kind} ${res.status}${churn ? ' (churned name)' : ''}`, expected, res.body.slice(0, 120));
        } catch (err) {
          counts[kind]++;
          tally.error(`${kind} ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, !churn && inKillWindow(t));
        }
      }
    };

    const websocketLoop = async (): Promise<void> => {
      while (!stop()) {
        const t = Date.now();
        try {
          counts.websocketMessages += await websocketSession(http, 30, stop);
          counts.websocketSessions++;
        } catch (err) {
          counts.websocketSessions++;
          // A tunnel to the killed member ends with it (or starts while the member is out).
          tally.error(`websocket ${(err as Error).message}`, inKillWindow(t) || inKillWindow(Date.now()));
        }
      }
    };

    /**
     * Publishes and unpublishes its own names in turn, paced to stay under the gateway's default
     * per-session control rate (200 messages a second): 2 messages per cycle, at most 80 cycles a second.
     */
    const churnLoop = async (session: Location, names: readonly string[]): Promise<void> => {
      const endpoint = session.endpointFor(DOMAIN);
      const startedAt = Date.now();
      let i = 0;
      while (!stop()) {
        await sleep(startedAt + i * CHURN_CYCLE_MS - Date.now());
        const cluster = new Cluster([m3.address]);
        try {
          await endpoint.publish(cluster, names[i++ % names.length]!);
          await endpoint.unpublish(cluster);
          counts.churnCycles++;
        } catch (err) {
          tally.error(`churn ${(err as Error).message.slice(0, 80)}`, false);
          await sleep(10);
        }
      }
    };

    const chaos = async (): Promise<void> => {
      await sleep(killAt - Date.now());
      killedAt = Date.now();
      await m2.kill();
      await sleep(restartAt - Date.now());
      await m2.start(m2.port);
      restartedAt = Date.now();
    };

    // RSS after a short warm-up (the first TLS contexts, pools and JIT), then sampled every second.
    let rssStart = 0;
    let rssMax = 0;
    const sampler = (async () => {
      await sleep(Math.min(2_000, durationS * 150));
      rssStart = rssMb(gateway.pid);
      while (!stop()) {
        rssMax = Math.max(rssMax, rssMb(gateway.pid));
        await sleep(1_000);
      }
    })();

    await Promise.all([
      ...Array.from({ length: 6 }, () => httpLoop(false)),
      ...Array.from({ length: 3 }, () => httpLoop(true)),
      websocketLoop(),
      websocketLoop(),
      churnLoop(churnB, churnNames.slice(0, 4)),
      churnLoop(churnC, churnNames.slice(4)),
      chaos(),
      sampler,
    ]);
    const rssEnd = rssMb(gateway.pid);
    rssMax = Math.max(rssMax, rssEnd);
    httpAgent.destroy();
    httpsAgent.destroy();
    for (const session of sessions.splice(0)) await session.close();

    exitCode = await gateway.stop();
    const memoryOk = rssEnd <= Math.max(rssStart * 1.5, rssStart + 64);
    const unexpectedTotal = Object.values(tally.unexpected).reduce((a, b) => a + b, 0);
    const ok = unexpectedTotal === 0 && memoryOk && exitCode === 0 && counts.http > 0 && counts.https > 0 && counts.websocketMessages > 0 && counts.churnCycles > 0;
    const report: SoakReport = {
      durationS,
      requests: counts,
      expected: tally.expected,
      unexpected: tally.unexpected,
      rssMb: { start: rssStart, end: rssEnd, max: rssMax },
      memoryOk,
      exitCode,
      ok,
    };
    if (tally.samples.length > 0) console.error(`unexpected, first ones:\n  ${tally.samples.join('\n  ')}`);
    return report;
  } finally {
    for (const session of sessions) await session.close().catch(() => {});
    for (const member of members) await member.kill();
    await children.close();
  }
}

/** A started `tfgate serve`: its listening record, and a stop that SIGTERMs it and resolves with its exit code. */
interface SoakGateway {
  readonly pid: number;
  readonly record: Record<string, unknown>;
  stop(): Promise<number | null>;
}

/** Starts the compiled CLI in its own process group and waits for its `listening` line. */
async function spawnGateway(children: ChildSet, args: readonly string[]): Promise<SoakGateway> {
  const child = children.add(spawn(process.execPath, [CLI, 'serve', ...args], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] }));
  const tail: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => tail.push(line));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const record = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in 20 s: ${tail.slice(-10).join('\n')}`)), 20_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('"listening"')) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as Record<string, unknown>);
    });
    void exited.then(() => reject(new Error(`tfgate exited before listening: ${tail.slice(-10).join('\n')}`)));
  });
  return {
    pid: child.pid!,
    record,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

function durationArg(argv: readonly string[]): number {
  const at = argv.indexOf('--duration');
  const text = at !== -1 ? argv[at + 1] : process.env.SOAK_DURATION_S;
  const value = text === undefined ? 60 : Number(text);
  if (!Number.isFinite(value) || value < 5 || value > 3_600) throw new Error(`--duration: seconds between 5 and 3600, got ${text}`);
  return value;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const durationS = durationArg(process.argv.slice(2));
  console.log(`soak: ${durationS} s of HTTP, HTTPS and WebSocket traffic, publish churn from two sessions, a member killed at 40% and restarted at 60%`);
  runSoak(durationS).then(
    (report) => {
      const { requests: r, rssMb: m } = report;
      console.log(`requests: ${r.http} http, ${r.https} https, ${r.websocketMessages} websocket messages in ${r.websocketSessions} sessions, ${r.churnCycles} publish/unpublish cycles`);
      console.log(`expected errors: ${JSON.stringify(report.expected)}`);
      console.log(`unexpected errors: ${JSON.stringify(report.unexpected)}`);
      console.log(`gateway RSS: ${m.start} MB after warm-up, ${m.end} MB at the end (max ${m.max} MB)${report.memoryOk ? '' : ' — grew too much'}; exit code ${report.exitCode}`);
      console.log(JSON.stringify({ msg: 'soak', ...report }));
      console.log(report.ok ? 'soak: PASS' : 'soak: FAIL');
      process.exitCode = report.ok ? 0 : 1;
    },
    (err: unknown) => {
      console.error('soak: FAIL', err);
      process.exitCode = 1;
    },
  );
}
