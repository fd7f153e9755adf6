import { parseArgs } from 'node:util';
import { loadConfig } from '../config.js';
import { loadOrCreateGatewayKeys, encodeKey } from '../control/index.js';

const HELP = `Usage: tfgate keys [--state-dir DIR]

Prints the gateway's public key (base64), creating the gateway's key pair in the state directory
if it has none yet. Hand the key to clients: tfgate publish --server-key KEY, or their .spub file.
`;

/** `tfgate keys`: prints the gateway's public key. */
export async function run(argv: string[]): Promise<number> {
  let values: { 'state-dir'?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args: argv, options: { 'state-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    process.stderr.write(`tfgate keys: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const stateDir = loadConfig(values['state-dir'] ? ['--state-dir', values['state-dir']] : []).stateDir;
  const keys = loadOrCreateGatewayKeys(stateDir);
  process.stdout.write(`${encodeKey(keys.publicKey)}\n`);
  return 0;
}
