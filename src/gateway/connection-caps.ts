import { readFileSync } from 'node:fs';

/**
 * The client connection caps one data plane process enforces. `--max-connections` and
 * `--max-connections-per-client` are for the whole gateway, and each of the N worker processes counts
 * only its own connections, so each takes 1/N of them (the kernel spreads new connections between
 * workers). And a process cannot hold more connections than it may open files: a connection being
 * forwarded holds a member socket too, so past the open-file limit (`ulimit -n`) accepts and member
 * connects fail with EMFILE for every route; the cap is lowered to what the limit allows.
 */
export interface PlaneConnectionCaps {
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  /** Set when the open-file limit lowered the cap: the limit, for the warning. */
  readonly openFileLimit?: number;
}

/** Open files kept aside for what is not a client connection: listeners, idle member connections, logs, the store. */
export const RESERVED_FILES = 512;

/** Open files one client connection may need: its own socket and a member's. */
export const FILES_PER_CONNECTION = 2;

export function planeConnectionCaps(
  limits: { readonly maxConnections: number; readonly maxConnectionsPerClient: number },
  workers: number,
  openFileLimit: number | undefined,
): PlaneConnectionCaps {
  const share = (cap: number): number => Math.max(1, Math.ceil(cap / Math.max(1, workers)));
  const maxConnections = share(limits.maxConnections);
  const maxConnectionsPerClient = share(limits.maxConnectionsPerClient);
  if (openFileLimit === undefined) return { maxConnections, maxConnectionsPerClient };
  const affordable = Math.max(1, Math.floor((openFileLimit - RESERVED_FILES) / FILES_PER_CONNECTION));
  if (maxConnections <= affordable) return { maxConnections, maxConnectionsPerClient };
  return { maxConnections: affordable, maxConnectionsPerClient: Math.min(maxConnectionsPerClient, affordable), openFileLimit };
}

/** This process's open-file limit (the soft `Max open files` of /proc/self/limits), or undefined where that cannot be read. */
export function openFileLimit(limitsFile = '/proc/self/limits'): number | undefined {
  let text: string;
  try {
    text = readFileSync(limitsFile, 'utf8');
  } catch {
    return undefined;
  }
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(text)?.[1];
  return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
}
