import { loadConfig } from '../config.js';
import { ControlError, decodeKey, encodeKey, openStore } from '../control/index.js';
import { parseCommandArgs } from './args.js';

const HELP = `Usage: tfgate accounts add KEY [--name TEXT] [--state-dir DIR]
       tfgate accounts list [--state-dir DIR] [--json]
       tfgate accounts remove KEY [--state-dir DIR]

Authorises client public keys (base64, as "tfgate keygen" prints them) to open sessions. Works while
the gateway runs: an added key can authenticate at once; removing a key ends its live sessions.
`;

/** `tfgate accounts add|list|remove`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('accounts', HELP, argv, { name: { type: 'string' }, 'state-dir': { type: 'string' }, json: { type: 'boolean' } }, true);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [action, key, ...extra] = positionals;
  const needsKey = action === 'add' || action === 'remove';
  if (!(needsKey || action === 'list') || (needsKey && key === undefined) || extra.length > 0 || (action === 'list' && key !== undefined)) {
    process.stderr.write(HELP);
    return 2;
  }
  let publicKey = '';
  if (needsKey) {
    try {
      publicKey = encodeKey(decodeKey(key!, 'the public key'));
    } catch (err) {
      if (!(err instanceof ControlError)) throw err;
      process.stderr.write(`tfgate accounts: ${err.message}\n`);
      return 1;
    }
  }
  const stateDir = loadConfig(values['state-dir'] ? ['--state-dir', values['state-dir']] : []).stateDir;
  const store = openStore(stateDir);
  try {
    if (action === 'add') {
      const account = store.addAccount(publicKey, values.name ?? '');
      process.stdout.write(`authorised ${account.publicKey}${account.name ? ` (${account.name})` : ''}\n`);
      return 0;
    }
    if (action === 'remove') {
      if (!store.removeAccount(publicKey)) {
        process.stderr.write(`tfgate accounts: ${publicKey} is not an account\n`);
        return 1;
      }
      process.stdout.write(`removed ${publicKey}\n`);
      return 0;
    }
    const accounts = store.listAccounts();
    if (values.json) process.stdout.write(`${JSON.stringify(accounts)}\n`);
    else for (const account of accounts) process.stdout.write(`${account.publicKey}  ${new Date(account.addedAt).toISOString()}  ${account.name}\n`);
    return 0;
  } finally {
    store.close();
  }
}
