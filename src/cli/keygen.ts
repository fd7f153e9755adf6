import { ControlError, createClientKeys, decodeKey, defaultKeysDir, encodeKey } from '../control/index.js';
import { locationHost } from './publish.js';
import { parseCommandArgs } from './args.js';
import { makePrivateDir } from './private-dir.js';

const HELP = `Usage: tfgate keygen --location HOST[:PORT] [--keys-dir DIR] [--server-key B64]

Creates a client key pair in the 20ft layout: DIR/HOST (secret, mode 0600) and DIR/HOST.pub, plus
DIR/HOST.spub (the gateway's public key) when --server-key is given. DIR defaults to ~/.20ft.
Prints the public key: the gateway's operator authorises it with "tfgate accounts add KEY".
`;

/** `tfgate keygen`: creates a client key pair and prints its public key. */
export async function run(argv: string[]): Promise<number> {
  const parsed = parseCommandArgs('keygen', HELP, argv, { location: { type: 'string' }, 'keys-dir': { type: 'string' }, 'server-key': { type: 'string' } });
  if (typeof parsed === 'number') return parsed;
  const { values } = parsed;
  if (!values.location) {
    process.stderr.write(`tfgate keygen: --location is required\n\n${HELP}`);
    return 2;
  }
  const dir = values['keys-dir'] ?? defaultKeysDir();
  try {
    const location = locationHost(values.location);
    const serverKey = values['server-key'] ? decodeKey(values['server-key'], '--server-key') : undefined;
    try {
      makePrivateDir(dir);
    } catch (err) {
      process.stderr.write(`tfgate keygen: --keys-dir ${dir}: ${(err as Error).message}\n`);
      return 1;
    }
    const pair = createClientKeys(dir, location, serverKey);
    process.stdout.write(`${encodeKey(pair.publicKey)}\n`);
    process.stderr.write(`Created ${dir}/${location} and ${location}.pub. Ask the gateway's operator to run: tfgate accounts add ${encodeKey(pair.publicKey)} --name "<you>"\n`);
    return 0;
  } catch (err) {
    if (err instanceof ControlError) {
      process.stderr.write(`tfgate keygen: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
