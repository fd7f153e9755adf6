import { chmodSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { KEY_BYTES, generateKeyPair, keyPairFromSecretKey } from './frames.js';
import type { KeyPair } from './frames.js';
import { ControlError } from './errors.js';

/**
 * Key files. The gateway's pair lives in its state directory (`gateway.key`, secret, mode 0600;
 * `gateway.pub`). Client keys use the 20ft layout: `<dir>/<location>` (secret),
 * `<dir>/<location>.pub` (public), `<dir>/<location>.spub` (the gateway's public key), base64 text.
 */

export const GATEWAY_SECRET_FILE = 'gateway.key';
const GATEWAY_PUBLIC_FILE = 'gateway.pub';

/** The default client keys directory, as in 20ft. */
export function defaultKeysDir(): string {
  return join(homedir(), '.20ft');
}

/** Base64 of a key. */
export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key).toString('base64');
}

/** A 32-byte key from base64 text (whitespace ignored); throws {@link ControlError} naming `what`. */
export function decodeKey(text: string, what: string): Uint8Array {
  const clean = text.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(clean)) throw new ControlError(`${what} is not base64`);
  const key = new Uint8Array(Buffer.from(clean, 'base64'));
  if (key.length !== KEY_BYTES) throw new ControlError(`${what} must be ${KEY_BYTES} bytes, not ${key.length}`);
  return key;
}

/** Creates `dir` (0700) when missing. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/**
 * The gateway's key pair from `stateDir`, created on first use. Safe against a concurrent first
 * start (`tfgate keys` while `tfgate serve` starts): the secret file is published with an exclusive
 * link, so both end up with the same pair.
 */
export function loadOrCreateGatewayKeys(stateDir: string): KeyPair {
  ensurePrivateDir(stateDir);
  const secretPath = join(stateDir, GATEWAY_SECRET_FILE);
  const existing = readIfExists(secretPath);
  let pair: KeyPair;
  if (existing !== undefined) {
    pair = keyPairFromSecretKey(decodeKey(existing, secretPath));
  } else {
    const fresh = generateKeyPair();
    const temp = `${secretPath}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(temp, `${encodeKey(fresh.secretKey)}\n`, { mode: 0o600 });
    try {
      linkSync(temp, secretPath);
      pair = fresh;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      pair = keyPairFromSecretKey(decodeKey(readFileSync(secretPath, 'utf8'), secretPath));
    } finally {
      unlinkSync(temp);
    }
  }
  chmodSync(secretPath, 0o600);
  const publicPath = join(stateDir, GATEWAY_PUBLIC_FILE);
  const publicText = `${encodeKey(pair.publicKey)}\n`;
  if (readIfExists(publicPath) !== publicText) writeAtomic(publicPath, publicText, 0o644);
  return pair;
}

/** Paths of a client's key files for `location` in `dir`. */
export function clientKeyPaths(dir: string, location: string): { secret: string; public: string; server: string } {
  if (location.length === 0 || location.includes('/') || location.includes('\\') || location.startsWith('.')) {
    throw new ControlError(`location ${JSON.stringify(location)} cannot name key files`);
  }
  const base = join(dir, location);
  return { secret: base, public: `${base}.pub`, server: `${base}.spub` };
}

/**
 * Creates a client key pair for `location` in `dir` (secret 0600). Refuses to overwrite an existing
 * secret key: an authorised account would be lost. `serverKey`, when given, is written as `.spub`.
 */
export function createClientKeys(dir: string, location: string, serverKey?: Uint8Array): KeyPair {
  ensurePrivateDir(dir);
  const paths = clientKeyPaths(dir, location);
  if (readIfExists(paths.secret) !== undefined) {
    throw new ControlError(`${paths.secret} already exists; remove it first to create a new key pair`);
  }
  const pair = generateKeyPair();
  writeFileSync(paths.secret, `${encodeKey(pair.secretKey)}\n`, { mode: 0o600, flag: 'wx' });
  writeAtomic(paths.public, `${encodeKey(pair.publicKey)}\n`, 0o644);
  if (serverKey) writeAtomic(paths.server, `${encodeKey(serverKey)}\n`, 0o644);
  return pair;
}

/** A client's key pair for `location` from `dir`; throws {@link ControlError} when missing or malformed. */
export function readClientKeys(dir: string, location: string): KeyPair {
  const paths = clientKeyPaths(dir, location);
  const secret = readIfExists(paths.secret);
  if (secret === undefined) {
    throw new ControlError(`no key pair for ${location} in ${dir} (create one with: tfgate keygen --keys-dir ${dir} --location ${location})`);
  }
  const pair = keyPairFromSecretKey(decodeKey(secret, paths.secret));
  const pub = readIfExists(paths.public);
  if (pub !== undefined && encodeKey(decodeKey(pub, paths.public)) !== encodeKey(pair.publicKey)) {
    throw new ControlError(`${paths.public} does not match the secret key in ${paths.secret}`);
  }
  return pair;
}

/** The gateway's public key stored as `<location>.spub`, or undefined when there is none. */
export function readServerKey(dir: string, location: string): Uint8Array | undefined {
  const paths = clientKeyPaths(dir, location);
  const text = readIfExists(paths.server);
  return text === undefined ? undefined : decodeKey(text, paths.server);
}

function readIfExists(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function writeAtomic(path: string, text: string, mode: number): void {
  const temp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(temp, text, { mode });
  renameSync(temp, path);
}
