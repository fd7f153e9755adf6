import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GATEWAY_SECRET_FILE, STORE_FILE } from '../control/index.js';
import { makePrivateDir } from './private-dir.js';

/**
 * Makes sure `stateDir` is a gateway's state before an offline command (`keys`, `accounts`) reads or
 * writes it: a mistyped `--state-dir` would otherwise become a second, empty state the gateway never
 * reads (accounts added there authorise nobody; `keys` would mint a key no gateway holds). With
 * `create` a missing or empty directory is made a new state. Returns the reason it is refused (one
 * line naming the path and how to create it), or undefined when the command may go on.
 */
export function checkStateDir(stateDir: string, options: { create: boolean; createFlag: boolean }): string | undefined {
  if (options.create) {
    try {
      makePrivateDir(stateDir);
    } catch (err) {
      return `--state-dir ${stateDir}: ${(err as Error).message}`;
    }
    return undefined;
  }
  if (hasState(stateDir)) return undefined;
  if (existsSync(stateDir) && !statSync(stateDir).isDirectory()) return `--state-dir ${stateDir} is not a directory; check the path`;
  const what = existsSync(stateDir) ? 'holds no tfgate state (no gateway key, no store)' : 'does not exist';
  const create = `${options.createFlag ? 'pass --create, or ' : ''}start the gateway on it once: tfgate serve --state-dir ${stateDir}`;
  return `--state-dir ${stateDir} ${what}; check the path, or to make a new state there ${create}`;
}

function hasState(stateDir: string): boolean {
  return existsSync(join(stateDir, GATEWAY_SECRET_FILE)) || existsSync(join(stateDir, STORE_FILE));
}
