import { loadConfig } from '../config.js';
import { ControlError, decodeKey, encodeKey, openStore } from '../control/index.js';
import { parseCommandArgs } from './args.js';
import { checkStateDir } from './state-dir.js';

const HELP = `Usage: tfgate accounts add KEY [--name TEXT] [--state-dir DIR] [--create]
       tfgate accounts list [--state-dir DIR] [--json]
       tfgate accounts remove KEY [--state-dir DIR]

Authorises client public keys (base64, as "tfgate keygen" prints them) to open sessions. Works while
the gateway runs: an added key can authenticate at once; removing a key ends its live sessions.
Adding a key that is already authorised changes its name when --name is given, and nothing else.
A state directory that holds no gateway state is refused (a mistyped path would authorise keys in a
store no gateway reads); "add --create" makes a new state there.
`;

/** `tfgate accounts add|list|remove`. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('accounts', HELP, argv, { name: { type: 'string' }, 'state-dir': { type: 'string' }, json: { type: 'boolean' }, create: { type: 'boolean' } }, true);
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const [action, key, ...extra] = positionals;
  const usageError = usageProblem(action, key, extra, values);
  if (usageError !== undefined) {
    process.stderr.write(`tfgate accounts: ${usageError}\n\n${HELP}`);
    return 2;
  }
  let publicKey = '';
  if (action !== 'list') {
    try {
      publicKey = encodeKey(decodeKey(key!, 'the public key'));
    } catch (err) {
      if (!(err instanceof ControlError)) throw err;
      process.stderr.write(`tfgate accounts: ${err.message}\n`);
      return 1;
    }
  }
  const stateDir = loadConfig(values['state-dir'] ? ['--state-dir', values['state-dir']] : []).stateDir;
  const refused = checkStateDir(stateDir, { create: values.create === true, createFlag: action === 'add' });
  if (refused !== undefined) {
    process.stderr.write(`tfgate accounts: ${refused}\n`);
    return 1;
  }
  const store = openStore(stateDir);
  try {
    if (action === 'add') {
      const before = store.findAccount(publicKey);
      if (before !== undefined && (values.name === undefined || values.name === before.name)) {
        process.stdout.write(`${publicKey} was already authorised${before.name ? ` (${before.name})` : ''}; nothing changed\n`);
        return 0;
      }
      const account = store.addAccount(publicKey, values.name ?? '');
      if (before !== undefined) process.stdout.write(`${account.publicKey} was already authorised; its name changed from ${JSON.stringify(before.name)} to ${JSON.stringify(account.name)}\n`);
      else process.stdout.write(`authorised ${account.publicKey}${account.name ? ` (${account.name})` : ''}\n`);
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

/** What is wrong with the command line, in one sentence; undefined when it is fine. */
function usageProblem(action: string | undefined, key: string | undefined, extra: string[], values: { create?: boolean }): string | undefined {
  if (action === undefined) return 'say what to do: add, list or remove';
  if (action !== 'add' && action !== 'list' && action !== 'remove') return `unknown action ${JSON.stringify(action)} (add, list or remove)`;
  if (action === 'list' && key !== undefined) return `list takes no key, got ${JSON.stringify(key)}`;
  if (action !== 'list' && key === undefined) return `${action} needs the client's public key`;
  if (extra.length > 0) return `unexpected argument ${JSON.stringify(extra[0])} (one key at a time)`;
  if (values.create && action !== 'add') return '--create goes with add';
  return undefined;
}
