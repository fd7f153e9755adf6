import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { CLI } from '../helpers/gateway-process.js';

/** Runs `tfgate ARGS` to completion (killed after 10 s). */
function tfgate(...args: string[]): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 10_000 });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tfgate-cli-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const KEY = Buffer.alloc(32, 7).toString('base64');

describe('tfgate keys and accounts: a state dir that holds no gateway state', () => {
  it.each([
    ['keys', []],
    ['accounts', ['list']],
    ['accounts', ['add', KEY]],
    ['accounts', ['remove', KEY]],
  ] as const)('%s %s refuses a state dir that does not exist, and creates nothing', (command, args) => {
    const typo = join(tempDir(), 'stat-typo');
    const result = tfgate(command, ...args, '--state-dir', typo);
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`tfgate ${command}: --state-dir ${typo} does not exist; check the path`);
    expect(result.stderr).toContain(`tfgate serve --state-dir ${typo}`);
    expect(existsSync(typo)).toBe(false);
  });

  it('refuses an empty directory too, and makes a new state there with --create', () => {
    const dir = join(tempDir(), 'state');
    mkdirSync(dir);
    const refused = tfgate('keys', '--state-dir', dir);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`--state-dir ${dir} holds no tfgate state`);
    expect(refused.stderr).toContain('--create');

    const created = tfgate('keys', '--state-dir', dir, '--create');
    expect(created.status).toBe(0);
    const key = created.stdout.trim();
    expect(Buffer.from(key, 'base64')).toHaveLength(32);
    // From then on it is a state: the same key, no --create needed.
    expect(tfgate('keys', '--state-dir', dir)).toMatchObject({ status: 0, stdout: `${key}\n` });
    expect(tfgate('accounts', 'list', '--state-dir', dir)).toMatchObject({ status: 0, stdout: '' });
  });

  it('accounts add --create makes a new state (with missing parents) and authorises the key', () => {
    const dir = join(tempDir(), 'new', 'state');
    expect(tfgate('accounts', 'add', KEY, '--name', 'alice', '--state-dir', dir, '--create')).toMatchObject({ status: 0, stdout: `authorised ${KEY} (alice)\n` });
    expect(JSON.parse(tfgate('accounts', 'list', '--state-dir', dir, '--json').stdout)).toMatchObject([{ publicKey: KEY, name: 'alice' }]);
  });
});

describe('tfgate accounts', () => {
  it('says a key was already authorised, and what changed', () => {
    const dir = join(tempDir(), 'state');
    expect(tfgate('accounts', 'add', KEY, '--name', 'alice', '--state-dir', dir, '--create').status).toBe(0);

    const again = tfgate('accounts', 'add', KEY, '--state-dir', dir);
    expect(again).toMatchObject({ status: 0, stdout: `${KEY} was already authorised (alice); nothing changed\n` });
    const renamed = tfgate('accounts', 'add', KEY, '--name', 'bob', '--state-dir', dir);
    expect(renamed).toMatchObject({ status: 0, stdout: `${KEY} was already authorised; its name changed from "alice" to "bob"\n` });
    expect(JSON.parse(tfgate('accounts', 'list', '--state-dir', dir, '--json').stdout)).toMatchObject([{ publicKey: KEY, name: 'bob' }]);
  });

  it.each([
    [[], 'say what to do: add, list or remove'],
    [['list', KEY], `list takes no key, got "${KEY}"`],
    [['add', KEY, KEY], `unexpected argument "${KEY}" (one key at a time)`],
    [['add'], "add needs the client's public key"],
    [['rename', KEY], 'unknown action "rename" (add, list or remove)'],
  ])('gives the reason before the help: accounts %s', (args, reason) => {
    const result = tfgate('accounts', ...args);
    expect(result.status).toBe(2);
    expect(result.stderr.startsWith(`tfgate accounts: ${reason}\n\nUsage: tfgate accounts`)).toBe(true);
  });
});

describe('tfgate keygen', () => {
  it('fails at once on a keys dir under /proc, where a recursive mkdir would spin', () => {
    const result = tfgate('keygen', '--location', '127.0.0.1', '--keys-dir', '/proc/tfgate-keys');
    expect(result.signal).toBeNull();
    expect(result.status).toBe(1);
    expect(result.stderr).toBe('tfgate keygen: --keys-dir /proc/tfgate-keys: cannot be created: /proc takes no new directories (a virtual file system such as /proc?)\n');
  });
});
