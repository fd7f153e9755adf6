import { ControlError, Location, decodeKey, defaultKeysDir, readClientKeys, readServerKey } from '../control/index.js';
import { parseHostname } from '../hostname.js';
import { parseLocation } from './publish.js';
import { parseCommandArgs } from './args.js';

const HELP = `Usage: tfgate domains prepare|claim|release|global|private DOMAIN --location HOST[:PORT] [--keys-dir DIR] [--server-key B64]
       tfgate domains list --location HOST[:PORT] [--keys-dir DIR] [--server-key B64]

Proves and manages this account's ownership of domains on the gateway at HOST (control port, default 2020):
  prepare DOMAIN   get a token and print the DNS record to create: tf-token.DOMAIN TXT=TOKEN (valid 6 hours)
  claim DOMAIN     claim the domain once that TXT record is in DNS; then publish under it
  release DOMAIN   give the domain up (this account's names under it are unpublished)
  global DOMAIN    let every account publish (exact names) under this account's domain
  private DOMAIN   stop that (the other accounts' names under it are unpublished)
  list             the domains this account may publish under (its own and the global ones)
Keys as for tfgate publish: DIR (default ~/.20ft) in the 20ft layout, and the gateway's key in
DIR/HOST.spub unless --server-key is given. Exits 1 with the gateway's reason when it refuses.
`;

/** Subcommand → protocol command. */
const COMMANDS: Record<string, string> = {
  prepare: 'prepare_domain',
  claim: 'claim_domain',
  release: 'release_domain',
  global: 'make_domain_global',
  private: 'make_domain_private',
  list: 'list_domains',
};

interface Values {
  location?: string | undefined;
  'keys-dir'?: string | undefined;
  'server-key'?: string | undefined;
  help?: boolean | undefined;
}

/** `tfgate domains`: one domain command against a gateway, its outcome printed. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('domains', HELP, argv, { location: { type: 'string' }, 'keys-dir': { type: 'string' }, 'server-key': { type: 'string' } }, true);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [action, domain, ...extra] = positionals;
  const command = action === undefined ? undefined : COMMANDS[action];
  const wantsDomain = action !== 'list';
  if (command === undefined || (wantsDomain ? domain === undefined : domain !== undefined) || extra.length > 0 || !values.location) {
    process.stderr.write(`tfgate domains: expected one of ${Object.keys(COMMANDS).join(', ')}${wantsDomain ? ' with a DOMAIN' : ''}, and --location\n\n${HELP}`);
    return 2;
  }
  const code = await domains(values as Values & { location: string }, action!, command, domain).catch((err: unknown) => {
    process.stderr.write(`tfgate domains ${action}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  });
  // A library handle must not keep a finished command alive.
  setTimeout(() => process.exit(code), 3_000).unref();
  return code;
}

async function domains(values: Values & { location: string }, action: string, command: string, raw: string | undefined): Promise<number> {
  const { host, port } = parseLocation(values.location);
  const dir = values['keys-dir'] ?? defaultKeysDir();
  const keys = readClientKeys(dir, host);
  const serverKey = values['server-key'] ? decodeKey(values['server-key'], '--server-key') : readServerKey(dir, host);
  if (!serverKey) throw new ControlError(`no gateway key: pass --server-key (tfgate keys on the gateway prints it) or write it to ${dir}/${host}.spub`);

  const location = await Location.connect({ host, port, serverKey, keys, heartbeatIntervalMs: 0 });
  let results: Record<string, unknown>;
  try {
    results = await location.request(command, raw === undefined ? {} : { domain: raw });
  } finally {
    await location.close();
  }
  // The gateway accepted the name, so it parses; printed as the gateway normalised it.
  const parsed = raw === undefined ? undefined : parseHostname(raw, { allowPort: false });
  const domain = parsed?.ok ? parsed.hostname : (raw ?? '');
  switch (action) {
    case 'prepare': {
      const token = results.token;
      if (!(token instanceof Uint8Array)) throw new ControlError('the gateway sent no token');
      process.stdout.write(`tf-token.${domain} TXT=${Buffer.from(token).toString('ascii')}\n`);
      process.stderr.write(`Create that TXT record (valid 6 hours), then run: tfgate domains claim ${domain}\n`);
      break;
    }
    case 'claim':
      process.stdout.write(`claimed ${domain}: this account may publish under it\n`);
      break;
    case 'release':
      process.stdout.write(`released ${domain}\n`);
      break;
    case 'global':
      process.stdout.write(`${domain} is global: every account may publish under it\n`);
      break;
    case 'private':
      process.stdout.write(`${domain} is private: only this account may publish under it\n`);
      break;
    case 'list': {
      const list = Array.isArray(results.domains) ? results.domains.filter((d): d is string => typeof d === 'string') : [];
      process.stdout.write(list.length > 0 ? `${list.join('\n')}\n` : '');
      break;
    }
  }
  return 0;
}
