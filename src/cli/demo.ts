import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../config.js';
import { Cluster, Location, createClientKeys, encodeKey, openStore } from '../control/index.js';
import { createLogger } from '../log.js';
import { startServer } from '../main.js';
import type { RunningServer } from '../main.js';
import { parseCommandArgs } from './args.js';

const HELP = `Usage: tfgate demo [--log-level LEVEL]

Starts, in one process and on free ports: a gateway (state in a temporary directory, global domain
"localhost"), two small demo upstreams that say which member answered, and a client session that
publishes them at demo.localhost. Prints the curl commands to try and the dashboard URL.
Ctrl-C stops all of it. The gateway's own logs go to stderr (level warn unless --log-level).
`;

/** The name the demo cluster is published at. */
export const DEMO_FQDN = 'demo.localhost';

/** `tfgate demo`: runs until SIGINT/SIGTERM, then stops everything and returns 0. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('demo', HELP, argv, { 'log-level': { type: 'string' } });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;

  const dir = mkdtempSync(join(tmpdir(), 'tfgate-demo-'));
  let server: RunningServer | undefined;
  let location: Location | undefined;
  const members: { server: Server; address: string }[] = [];
  // The session first (it unpublishes), then the gateway drains while the members still answer.
  const stopAll = async (): Promise<void> => {
    await location?.close().catch(() => undefined);
    await server?.close().catch(() => undefined);
    await Promise.all(members.map((member) => closeMember(member.server)));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const config = loadConfig([
      '--workers', '1',
      '--http', '127.0.0.1:0',
      '--https', '127.0.0.1:0',
      '--control', '127.0.0.1:0',
      '--admin', '127.0.0.1:0',
      '--state-dir', join(dir, 'state'),
      '--certs-dir', join(dir, 'certs'),
      '--global-domain', 'localhost',
      '--log-level', values['log-level'] ?? 'warn',
      '--drain-timeout', '2s',
    ], {});
    server = await startServer(config, createLogger(config.logLevel, process.stderr));
    members.push(await startMember('A'), await startMember('B'));

    // A client key pair, authorised as an account through the store, as `tfgate accounts add` would.
    const keys = createClientKeys(join(dir, 'keys'), '127.0.0.1');
    const store = openStore(config.stateDir);
    try {
      store.addAccount(encodeKey(keys.publicKey), 'demo');
    } finally {
      store.close();
    }
    location = await Location.connect({ host: '127.0.0.1', port: server.control, serverKey: server.publicKey, keys });
    await location.endpointFor(DEMO_FQDN).publish(new Cluster(members.map((m) => m.address)), DEMO_FQDN);

    process.stdout.write(banner(server, members.map((m) => m.address)));
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', () => resolve('SIGINT'));
      process.once('SIGTERM', () => resolve('SIGTERM'));
    });
    process.stdout.write(`\n${signal}: stopping the session, the gateway and the demo members…\n`);
    await stopAll();
    process.stdout.write('stopped\n');
  } catch (err) {
    await stopAll();
    process.stderr.write(`tfgate demo: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  // A library handle must not keep a finished demo alive.
  setTimeout(() => process.exit(0), 2_000).unref();
  return 0;
}

function banner(server: RunningServer, members: string[]): string {
  const url = `http://127.0.0.1:${server.http}/`;
  return [
    'tfgate demo is running.',
    '',
    `  ${DEMO_FQDN} is published by a client session, balanced over two demo members:`,
    ...members.map((address, i) => `    member ${'AB'[i]}  ${address}`),
    '',
    '  Try it (run it a few times: the members take turns):',
    `    curl -H 'Host: ${DEMO_FQDN}' ${url}`,
    `    for i in 1 2 3 4; do curl -s -H 'Host: ${DEMO_FQDN}' ${url}; done`,
    `    curl -k --resolve ${DEMO_FQDN}:${server.https}:127.0.0.1 https://${DEMO_FQDN}:${server.https}/   (HTTPS, self-signed default certificate)`,
    '',
    `  Dashboard:  http://${server.admin}/`,
    `  Status:     curl http://${server.admin}/status`,
    `  Metrics:    curl http://${server.admin}/metrics`,
    '',
    'Ctrl-C stops the gateway, the members and the session.',
    '',
  ].join('\n');
}

/** A demo upstream on a free port that says which member answered. */
async function startMember(name: string): Promise<{ server: Server; address: string }> {
  let served = 0;
  let address = '';
  const server = createServer((req, res) => {
    served++;
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(`Hello from demo member ${name} (${address}): request #${served} for ${req.headers.host ?? '?'}${req.url ?? '/'}\n`);
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { server, address };
}

function closeMember(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
