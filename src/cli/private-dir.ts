import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Creates `dir` and its missing parents (mode 0700) one level at a time, and throws a reason a person
 * can act on where Node 20's `mkdir(dir, { recursive: true })` spins for ever: under /proc, or past a
 * dangling symbolic link, mkdir answers ENOENT although the parent exists, and the recursive walk
 * goes back to the parent, finds it, and tries again. The reason names a path only when it is not
 * `dir` itself (the caller names `dir`).
 */
export function makePrivateDir(dir: string): void {
  const target = resolve(dir);
  const at = (path: string): string => (path === target ? '' : `${path}: `);
  const missing: string[] = [];
  let path = target;
  for (;;) {
    const kind = kindOf(path);
    if (kind === 'directory') break;
    if (kind === 'other') throw new Error(`${at(path)}exists and is not a directory`);
    const parent = dirname(path);
    if (parent === path) throw new Error(`${path} does not exist`);
    missing.push(path);
    path = parent;
  }
  for (const child of missing.reverse()) {
    try {
      mkdirSync(child, { mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && kindOf(child) === 'directory') continue; // made meanwhile by another process
      const reason =
        code === 'EEXIST'
          ? 'is a symbolic link to nothing'
          : code === 'ENOENT'
            ? `cannot be created: ${dirname(child)} takes no new directories (a virtual file system such as /proc?)`
            : code === 'EACCES' || code === 'EPERM'
              ? 'cannot be created: permission denied'
              : code === 'EROFS'
                ? 'cannot be created: read-only file system'
                : `cannot be created: ${(err as Error).message}`;
      throw new Error(`${at(child)}${reason}`, { cause: err });
    }
  }
}

/** What is at `path`, following links; 'missing' for nothing there (a dangling link included) or under a file. */
function kindOf(path: string): 'directory' | 'other' | 'missing' {
  try {
    return statSync(path).isDirectory() ? 'directory' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOTDIR: a parent is a file, which the walk up finds and names.
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    if (code === 'EACCES') throw new Error(`${path}: permission denied`, { cause: err });
    throw err;
  }
}
