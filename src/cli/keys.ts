import { loadConfig } from '../config.js';
import { parseCommandArgs } from './args.js';
import { loadOrCreateGatewayKeys, encodeKey } from '../control/index.js';

const HELP = `Usage: tfgate keys [--state-dir DIR]

Prints the gateway's public key (base64), creating the gateway's key pair in the state directory
if it has none yet. Hand the key to clients: tfgate publish --server-key KEY, or their .spub file.
`;

/** `tfgate keys`: prints the gateway's public key. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('keys', HELP, argv, { 'state-dir': { type: 'string' } });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  const stateDir = loadConfig(values['state-dir'] ? ['--state-dir', values['state-dir']] : []).stateDir;
  const keys = loadOrCreateGatewayKeys(stateDir);
  process.stdout.write(`${encodeKey(keys.publicKey)}\n`);
  return 0;
}
