import { readFileSync } from 'node:fs';
import { Cluster, ControlError, Location, decodeKey, defaultKeysDir, readClientKeys, readServerKey } from '../control/index.js';
import type { WebEndpoint } from '../control/index.js';
import { parseCommandArgs } from './args.js';

const HELP = `Usage: tfgate publish --location HOST[:PORT] --fqdn NAME --upstream HOST:PORT [--upstream HOST:PORT ...]
                      [--keys-dir DIR] [--server-key B64] [--rewrite HOST] [--ssl CERT,KEY[,CHAIN]]

Publishes a cluster of upstreams at NAME through the gateway at HOST (control port, default 2020),
prints one line once it is live, and keeps it live until Ctrl-C or SIGTERM, which unpublish it.
Keys come from DIR (default ~/.20ft) in the 20ft layout: DIR/HOST, DIR/HOST.pub, and the gateway's
key in DIR/HOST.spub unless --server-key is given (create them with tfgate keygen).
`;

/** `HOST[:PORT]` → host and port (2020 when absent); `[v6]:PORT` for IPv6. */
export function parseLocation(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::([0-9]{1,5}))?$/.exec(text.trim());
  const port = match?.[3] === undefined ? 2020 : Number(match[3]);
  if (!match || port < 1 || port > 65535) throw new ControlError(`--location ${JSON.stringify(text)}: expected HOST or HOST:PORT`);
  return { host: match[1] ?? match[2]!, port };
}

/** The key files' name for a location: its host part. */
export function locationHost(text: string): string {
  return parseLocation(text).host;
}

interface Values {
  location?: string | undefined;
  'keys-dir'?: string | undefined;
  fqdn?: string | undefined;
  upstream?: string[] | undefined;
  rewrite?: string | undefined;
  ssl?: string | undefined;
  'server-key'?: string | undefined;
  help?: boolean | undefined;
}

/** `tfgate publish`: publishes until interrupted. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('publish', HELP, argv, {
    location: { type: 'string' },
    'keys-dir': { type: 'string' },
    fqdn: { type: 'string' },
    upstream: { type: 'string', multiple: true },
    rewrite: { type: 'string' },
    ssl: { type: 'string' },
    'server-key': { type: 'string' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (!values.location || !values.fqdn || !values.upstream?.length) {
    process.stderr.write(`tfgate publish: --location, --fqdn and at least one --upstream are required\n\n${HELP}`);
    return 2;
  }
  const code = await publish(values as Required<Pick<Values, 'location' | 'fqdn' | 'upstream'>> & Values).catch((err: unknown) => {
    process.stderr.write(`tfgate publish: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  });
  // A library handle must not keep a finished command alive.
  setTimeout(() => process.exit(code), 3_000).unref();
  return code;
}

async function publish(values: Required<Pick<Values, 'location' | 'fqdn' | 'upstream'>> & Values): Promise<number> {
  const { host, port } = parseLocation(values.location);
  const dir = values['keys-dir'] ?? defaultKeysDir();
  const keys = readClientKeys(dir, host);
  const serverKey = values['server-key'] ? decodeKey(values['server-key'], '--server-key') : readServerKey(dir, host);
  if (!serverKey) throw new ControlError(`no gateway key: pass --server-key (tfgate keys on the gateway prints it) or write it to ${dir}/${host}.spub`);
  const ssl = values.ssl ? readSsl(values.ssl) : null;

  const location = await Location.connect({
    host,
    port,
    serverKey,
    keys,
    onLog: (message) => process.stderr.write(`gateway${message.error ? ' error' : ''}: ${message.log}\n`),
    onConnection: (event) => process.stderr.write(`connection to the gateway ${event === 'lost' ? 'lost; reconnecting' : event === 'resumed' ? 'back (session kept)' : 'back (new session; publishing again)'}\n`),
  });
  let endpoint: WebEndpoint;
  const cluster = new Cluster(values.upstream);
  try {
    endpoint = location.endpointFor(values.fqdn);
    await endpoint.publish(cluster, values.fqdn, { rewrite: values.rewrite ?? null, ssl });
  } catch (err) {
    await location.close();
    throw err;
  }
  process.stdout.write(`live: http://${cluster.fqdn}/ -> ${cluster.members.join(', ')} (session ${location.rid}; Ctrl-C to unpublish)\n`);

  const outcome = await new Promise<{ signal: NodeJS.Signals } | { lost: Error }>((resolve) => {
    process.once('SIGINT', () => resolve({ signal: 'SIGINT' }));
    process.once('SIGTERM', () => resolve({ signal: 'SIGTERM' }));
    void location.lost.then((lost) => resolve({ lost }));
  });
  if ('lost' in outcome) {
    await location.close();
    throw outcome.lost;
  }
  try {
    await withTimeout(endpoint.unpublish(cluster), 5_000, 'the gateway did not confirm the unpublish in time');
    process.stdout.write(`unpublished ${values.fqdn}\n`);
  } finally {
    await location.close();
  }
  return 0;
}

/** `CERT,KEY[,CHAIN]` → the files' PEM text joined, as the 20ft SDK sends it. */
function readSsl(list: string): string {
  const files = list.split(',').map((f) => f.trim()).filter(Boolean);
  if (files.length < 2 || files.length > 3) throw new ControlError('--ssl takes CERT,KEY or CERT,KEY,CHAIN');
  return files
    .map((file) => {
      try {
        return readFileSync(file, 'utf8');
      } catch (err) {
        throw new ControlError(`--ssl: cannot read ${file}: ${(err as Error).message}`);
      }
    })
    .join('');
}

function withTimeout<T>(promise: Promise<T>, ms: number, why: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new ControlError(why)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
