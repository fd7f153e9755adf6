import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FILES_PER_CONNECTION, RESERVED_FILES, openFileLimit, planeConnectionCaps } from '../../src/gateway/connection-caps.js';

describe('planeConnectionCaps', () => {
  const limits = { maxConnections: 100, maxConnectionsPerClient: 10 };

  it('gives each of N workers 1/N of the gateway-wide caps, never 0', () => {
    expect(planeConnectionCaps(limits, 1, undefined)).toEqual({ maxConnections: 100, maxConnectionsPerClient: 10 });
    expect(planeConnectionCaps(limits, 2, undefined)).toEqual({ maxConnections: 50, maxConnectionsPerClient: 5 });
    expect(planeConnectionCaps(limits, 3, undefined)).toEqual({ maxConnections: 34, maxConnectionsPerClient: 4 });
    expect(planeConnectionCaps({ maxConnections: 1, maxConnectionsPerClient: 1 }, 8, undefined)).toEqual({ maxConnections: 1, maxConnectionsPerClient: 1 });
  });

  it('lowers the cap to what the open-file limit allows, two files a connection, and says so', () => {
    const files = RESERVED_FILES + 40 * FILES_PER_CONNECTION;
    expect(planeConnectionCaps(limits, 1, files)).toEqual({ maxConnections: 40, maxConnectionsPerClient: 10, openFileLimit: files });
    expect(planeConnectionCaps({ maxConnections: 100, maxConnectionsPerClient: 100 }, 1, files)).toMatchObject({ maxConnections: 40, maxConnectionsPerClient: 40 });
    expect(planeConnectionCaps(limits, 1, 100_000)).toEqual({ maxConnections: 100, maxConnectionsPerClient: 10 });
    expect(planeConnectionCaps(limits, 1, 10).maxConnections).toBe(1);
  });

  it('reads the soft open-file limit of /proc/self/limits, and nothing where it cannot', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-limits-'));
    const file = join(dir, 'limits');
    writeFileSync(file, 'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 4096                 files\n');
    expect(openFileLimit(file)).toBe(1024);
    writeFileSync(file, 'Max open files            unlimited            unlimited            files\n');
    expect(openFileLimit(file)).toBeUndefined();
    expect(openFileLimit(join(dir, 'missing'))).toBeUndefined();
    if (process.platform === 'linux') expect(openFileLimit()).toBeGreaterThan(0);
  });
});
