import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/** The layering of conventions.md, read from the import lines of every file in src/. */
const SRC = join(import.meta.dirname, '..', 'src');
const FOLDERS = ['cli', 'control', 'gateway', 'sni', 'upstreams', 'vhost'];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sourceFiles(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  // Type-only imports leave no trace at run time: they do not count.
  const statements = [...text.matchAll(/^\s*((?:import|export)\b[^;]*?\sfrom\s+'([^']+)')/gms)].filter((m) => !/^(?:import|export)\s+type\b/.test(m[1]!));
  return [...statements.map((m) => m[2]!), ...[...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]!)];
}

const files = sourceFiles(SRC).map((path) => {
  const rel = relative(SRC, path);
  const folder = rel.includes('/') ? rel.split('/')[0]! : null;
  return { rel, folder, imports: importsOf(path) };
});

/** Libraries that each live behind one file (or the named few). */
const ONLY_IN: Record<string, string[]> = {
  undici: ['gateway/forward.ts'],
  'http-proxy': ['gateway/websocket.ts'],
  zeromq: ['control/server.ts'],
  tweetnacl: ['control/frames.ts'],
  'cbor-x': ['control/frames.ts'],
  'prom-client': ['gateway/metrics.ts'],
  'acme-client': ['sni/acme.ts'],
  '@peculiar/x509': ['sni/self-signed.ts'],
  'better-sqlite3': ['control/store.ts', 'sni/storage.ts'],
  pino: ['log.ts'],
};

describe('architecture (conventions.md, "Direction of dependencies")', () => {
  it('reads the import lines of every source file', () => {
    expect(files.length).toBeGreaterThan(40);
    expect(files.find((f) => f.rel === 'main.ts')?.imports).toContain('./gateway/index.js');
    expect(files.find((f) => f.rel === 'gateway/forward.ts')?.imports).toContain('undici');
    expect(files.find((f) => f.rel === 'sni/acme.ts')?.imports).toContain('acme-client');
  });

  it('imports another folder only through its index.ts', () => {
    const violations = files.flatMap(({ rel, folder, imports }) =>
      imports
        .filter((spec) => spec.startsWith('.'))
        .map((spec) => relative(SRC, join(SRC, rel, '..', spec)))
        .filter((target) => {
          const targetFolder = target.includes('/') ? target.split('/')[0]! : null;
          return targetFolder !== null && targetFolder !== folder && FOLDERS.includes(targetFolder) && !target.endsWith('/index.js');
        })
        .map((target) => `${rel} → ${target}`),
    );
    expect(violations).toEqual([]);
  });

  it('keeps control and gateway apart, and upstreams and sni free of other folders', () => {
    const forbidden: Record<string, string[]> = { control: ['gateway'], gateway: ['control'], upstreams: FOLDERS, sni: FOLDERS };
    const violations = files.flatMap(({ rel, folder, imports }) =>
      folder === null || !forbidden[folder]
        ? []
        : imports
            .filter((spec) => spec.startsWith('.'))
            .map((spec) => relative(SRC, join(SRC, rel, '..', spec)).split('/')[0]!)
            .filter((target) => target !== folder && forbidden[folder]!.includes(target))
            .map((target) => `${rel} → ${target}`),
    );
    expect(violations).toEqual([]);
  });

  it('keeps each third-party library behind its one file', () => {
    const violations = files.flatMap(({ rel, imports }) =>
      imports
        .filter((spec) => !spec.startsWith('.') && !spec.startsWith('node:'))
        .filter((spec) => ONLY_IN[spec] !== undefined && !ONLY_IN[spec]!.includes(rel))
        .map((spec) => `${rel} imports ${spec}`),
    );
    expect(violations).toEqual([]);
  });
});
