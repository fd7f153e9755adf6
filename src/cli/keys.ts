import { loadConfig } from '../config.js';
import { parseCommandArgs } from './args.js';
import { loadOrCreateGatewayKeys, encodeKey } from '../control/index.js';
import { checkStateDir } from './state-dir.js';

const HELP = `Usage: tfgate keys [--state-dir DIR] [--create]

Prints the gateway's public key (base64) from its state directory. Hand it to clients: tfgate publish
--server-key KEY, or their .spub file. A directory that holds no gateway state is refused (a mistyped
path would mint a key no gateway holds); --create makes a new state there, with a new key pair.
`;

/** `tfgate keys`: prints the gateway's public key. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('keys', HELP, argv, { 'state-dir': { type: 'string' }, create: { type: 'boolean' } });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const stateDir = loadConfig(values['state-dir'] ? ['--state-dir', values['state-dir']] : []).stateDir;
  const refused = checkStateDir(stateDir, { create: values.create === true, createFlag: true });
  if (refused !== undefined) {
    process.stderr.write(`tfgate keys: ${refused}\n`);
    return 1;
  }
  const keys = loadOrCreateGatewayKeys(stateDir);
  process.stdout.write(`${encodeKey(keys.publicKey)}\n`);
  return 0;
}
