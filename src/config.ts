import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import type { LevelWithSilent } from 'pino';
import { ConfigError } from './errors.js';
import { LOG_LEVELS } from './log.js';
import { parseHostname } from './hostname.js';
import { BALANCER_NAMES } from './upstreams/index.js';
import type { BalancerName } from './upstreams/index.js';

/** A listen address: `host` empty means every interface. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Everything `tfgate serve` runs on, validated, with units in the names, frozen. */
export interface Config {
  readonly http: ListenAddress;
  readonly https: ListenAddress;
  readonly admin: ListenAddress;
  /** Names the admin listener also answers to as Host, besides localhost, loopback and its own address. */
  readonly adminHosts: readonly string[];
  readonly control: ListenAddress;
  readonly stateDir: string;
  readonly certsDir: string;
  readonly workers: number;
  readonly routesFile: string | null;
  readonly defaultName: string;
  readonly redirectHttp: boolean;
  /** Automatic certificates; null without `--acme-directory`. */
  readonly acme: AcmeConfig | null;
  readonly globalDomains: readonly string[];
  /** The DNS server domain claims query (`ip:port`, as `setServers` takes it); null = the system's resolvers. */
  readonly dnsServer: string | null;
  readonly sessionGraceMs: number;
  readonly balancer: BalancerName;
  readonly accessLog: boolean;
  readonly logLevel: LevelWithSilent;
  readonly drainTimeoutMs: number;
  readonly healthCheck: HealthCheckConfig | null;
  readonly limits: Limits;
}

/** Limits and timeouts where a peer can stall or flood. */
export interface Limits {
  readonly maxHeaderBytes: number;
  readonly maxHeaderCount: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly upstreamConnectTimeoutMs: number;
  readonly upstreamResponseTimeoutMs: number;
  readonly upstreamMaxConnections: number;
  readonly controlMaxFrameBytes: number;
  readonly controlMessagesPerSecond: number;
  /** Control sessions one account may hold at once (connected or in their grace window). */
  readonly maxSessionsPerAccount: number;
  /** Clusters one control session may publish. */
  readonly maxClustersPerSession: number;
  /** Domains one account may have prepared and not yet claimed (unexpired tokens). */
  readonly maxPendingDomainsPerAccount: number;
  /** Open client connections across the HTTP and HTTPS listeners; new ones past it are refused. */
  readonly maxConnections: number;
  /** Open client connections from one address. */
  readonly maxConnectionsPerClient: number;
  /** Request body size limit (413 beyond); 0 = no limit. */
  readonly maxBodyBytes: number;
  /** Retries as a percentage of requests (0 = never retry). */
  readonly retryBudgetPercent: number;
  /** Requests in flight to one member before it takes no more (circuit breaker). */
  readonly maxInFlightPerMember: number;
  /** A WebSocket tunnel with no traffic either way for this long is closed; 0 = never. */
  readonly tunnelIdleTimeoutMs: number;
}

/** Active health checks of members; null when off. */
export interface HealthCheckConfig {
  readonly path: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

/** ACME issuance and renewal (`--acme-*`). */
export interface AcmeConfig {
  readonly directoryUrl: string;
  readonly email: string | null;
  /** PEM file of the CA that signs the ACME server's own HTTPS certificate (a private CA such as Pebble). */
  readonly caFile: string | null;
  /** Renew when less than this fraction of a certificate's lifetime remains. */
  readonly renewFraction: number;
  /** First retry after a failed order; doubles per failure, up to six hours. */
  readonly retryMinMs: number;
}

type Kind = 'listen' | 'string' | 'hostname' | 'path' | 'int' | 'duration' | 'bool' | 'list' | 'enum';

interface FlagSpec {
  readonly kind: Kind;
  readonly default: string | boolean | readonly string[] | null;
  readonly help: string;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** Listen flags: the host of a bare `PORT` (or `:PORT`); every interface when absent. */
  readonly defaultHost?: string;
}

/**
 * The longest duration a flag takes: Node's timers wrap anything over 2^31 - 1 ms (24.8 days) to 1 ms,
 * which would turn a long health interval into a flood and a long drain into none; this leaves room
 * for the few seconds some timers add.
 */
const MAX_DURATION_MS = 480 * 3_600_000;

/** Every `serve` flag: its kind, default and one line of help. Env name: `TFGATE_` + upper-snake of the flag. */
export const SERVE_FLAGS = {
  http: { kind: 'listen', default: '8080', help: 'HTTP listener: PORT or HOST:PORT (0 = any free port)' },
  https: { kind: 'listen', default: '8443', help: 'HTTPS listener (TLS 1.2+, certificate chosen by SNI): PORT or HOST:PORT' },
  admin: { kind: 'listen', default: '127.0.0.1:9090', defaultHost: '127.0.0.1', help: 'admin listener (health, metrics, status): HOST:PORT (a bare PORT stays on 127.0.0.1)' },
  control: { kind: 'listen', default: '2020', help: 'control queue (ZeroMQ ROUTER): PORT or HOST:PORT' },
  'state-dir': { kind: 'path', default: './state', help: 'directory for keys and the SQLite store (created 0700)' },
  'certs-dir': { kind: 'path', default: './certs', help: 'directory for certificates (created 0700)' },
  workers: { kind: 'int', default: String(availableParallelism()), min: 1, max: 256, help: 'data plane processes (default: one per CPU; 1 = everything in one process)' },
  'default-name': { kind: 'hostname', default: 'localhost', help: "the gateway's own name, on its self-signed default certificate" },
  'redirect-http': { kind: 'bool', default: true, help: 'redirect plain HTTP (308) to HTTPS for names with a certificate of their own' },
  routes: { kind: 'path', default: null, help: 'JSON file of static clusters, reloaded on SIGHUP' },
  'global-domain': { kind: 'list', default: [], help: 'a domain every account may publish under (repeatable)' },
  'admin-host': { kind: 'list', default: [], help: 'a name the admin listener answers to as Host besides localhost, loopback and its own address, e.g. the one Prometheus scrapes (repeatable)' },
  'dns-server': { kind: 'string', default: null, help: "DNS server for domain claims' TXT lookups: IP or IP:PORT (default the system's resolvers)" },
  'session-grace': { kind: 'duration', default: '60s', help: 'how long a disconnected session keeps its clusters' },
  balancer: { kind: 'enum', default: 'least-outstanding', values: BALANCER_NAMES, help: 'how requests are spread over members' },
  'access-log': { kind: 'bool', default: true, help: 'one JSON line per request on stdout' },
  'log-level': { kind: 'enum', default: 'info', values: LOG_LEVELS, help: 'fatal, error, warn, info, debug, trace or silent' },
  'drain-timeout': { kind: 'duration', default: '30s', help: 'on SIGTERM, how long in-flight requests may finish' },
  'acme-directory': { kind: 'string', default: null, help: 'ACME directory URL: certificates for published names (off unless set)' },
  'acme-email': { kind: 'string', default: null, help: 'contact address of the ACME account' },
  'acme-ca': { kind: 'path', default: null, help: "PEM file of the CA to trust for the ACME server's own HTTPS (a private CA)" },
  'acme-renew-percent': { kind: 'int', default: '33', min: 1, max: 100, help: 'renew when less than this percentage of the lifetime remains (100 = always due)' },
  'acme-retry': { kind: 'duration', default: '1m', help: 'first retry after a failed order; doubles per failure up to 6h' },
  'max-header-bytes': { kind: 'int', default: '16384', min: 1024, max: 1_048_576, help: 'request header block size limit (431 beyond)' },
  'max-header-count': { kind: 'int', default: '100', min: 1, help: 'request header count limit (431 beyond)' },
  'header-timeout': { kind: 'duration', default: '10s', help: 'time a client has to send its request headers' },
  'idle-timeout': { kind: 'duration', default: '60s', help: 'idle keep-alive connections are closed after this' },
  'tunnel-idle-timeout': { kind: 'duration', default: '1h', help: 'WebSocket tunnels with no traffic either way are closed after this (0 = never)' },
  'upstream-connect-timeout': { kind: 'duration', default: '5s', help: 'time to connect to a member' },
  'upstream-response-timeout': { kind: 'duration', default: '30s', help: 'time for a member to send its response headers' },
  'upstream-max-connections': { kind: 'int', default: '128', min: 1, help: 'keep-alive pool size per member' },
  'control-max-frame': { kind: 'int', default: '1048576', min: 1024, max: 67_108_864, help: 'largest control frame accepted, in bytes' },
  'control-rate': { kind: 'int', default: '200', min: 1, help: 'control messages per second per session' },
  'max-clusters-per-session': { kind: 'int', default: '1000', min: 1, help: 'clusters one control session may publish' },
  'max-pending-domains-per-account': { kind: 'int', default: '100', min: 1, help: 'domains one account may have prepared and not yet claimed (unexpired tokens)' },
  'max-sessions-per-account': { kind: 'int', default: '64', min: 1, help: 'control sessions one account may hold at once (connected or in their grace window, counted from their first sealed message)' },
  'max-connections': { kind: 'int', default: '16384', min: 1, help: 'open client connections across the HTTP and HTTPS listeners' },
  'max-connections-per-client': { kind: 'int', default: '1024', min: 1, help: 'open client connections from one address' },
  'max-body-bytes': { kind: 'int', default: '0', help: 'request body size limit, 413 beyond (0 = no limit)' },
  'retry-budget': { kind: 'int', default: '20', max: 100, help: 'retries on another member, as a percentage of requests (0 = never retry)' },
  'max-in-flight-per-member': { kind: 'int', default: '4096', min: 1, help: 'requests and WebSocket tunnels open to one member; past it others take them, or 503' },
  'health-path': { kind: 'string', default: null, help: 'path GET on every member to check its health (off unless set)' },
  'health-interval': { kind: 'duration', default: '10s', help: 'time between two health checks of a member' },
  'health-timeout': { kind: 'duration', default: '2s', help: 'time a member has to answer a health check' },
} as const satisfies Record<string, FlagSpec>;

export type ServeFlag = keyof typeof SERVE_FLAGS;

/** `--state-dir` → `TFGATE_STATE_DIR`. */
export function envName(flag: string): string {
  return `TFGATE_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/**
 * Builds the config from, in order of precedence: command-line flags, `TFGATE_*` environment
 * variables, the JSON file named by `--config` (keys are flag names), and the defaults.
 * The only reader of process.env. Throws {@link ConfigError} naming the bad key.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { config: { type: 'string' } };
  for (const [flag, spec] of Object.entries(SERVE_FLAGS) as [string, FlagSpec][]) {
    options[flag] = { type: 'string', multiple: spec.kind === 'list' };
  }
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({ args: [...normaliseBooleans(argv)], options, allowPositionals: false, strict: true }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see tfgate serve --help)`);
  }

  const configPath = (values.config as string | undefined) ?? env.TFGATE_CONFIG;
  const file = configPath ? readConfigFile(configPath) : {};

  const raw = (flag: string): { value: unknown; from: string } | undefined => {
    if (values[flag] !== undefined) return { value: values[flag], from: `--${flag}` };
    const fromEnv = env[envName(flag)];
    if (fromEnv !== undefined) {
      const spec = (SERVE_FLAGS as Record<string, FlagSpec>)[flag]!;
      return { value: spec.kind === 'list' ? fromEnv.split(',').map((s) => s.trim()).filter(Boolean) : fromEnv, from: envName(flag) };
    }
    if (flag in file) return { value: file[flag], from: `${configPath}: "${flag}"` };
    return undefined;
  };

  const get = (flag: ServeFlag): unknown => {
    const spec: FlagSpec = SERVE_FLAGS[flag];
    const given = raw(flag);
    if (given === undefined) return spec.default === null ? null : convert(flag, spec, spec.default, 'default');
    return convert(flag, spec, given.value, given.from);
  };

  const config: Config = {
    http: get('http') as ListenAddress,
    https: get('https') as ListenAddress,
    admin: get('admin') as ListenAddress,
    control: get('control') as ListenAddress,
    stateDir: get('state-dir') as string,
    certsDir: get('certs-dir') as string,
    workers: get('workers') as number,
    routesFile: get('routes') as string | null,
    defaultName: get('default-name') as string,
    redirectHttp: get('redirect-http') as boolean,
    acme: acmeConfig(get),
    globalDomains: get('global-domain') as string[],
    adminHosts: get('admin-host') as string[],
    dnsServer: dnsServerOf(get('dns-server') as string | null),
    sessionGraceMs: get('session-grace') as number,
    balancer: get('balancer') as Config['balancer'],
    accessLog: get('access-log') as boolean,
    logLevel: get('log-level') as LevelWithSilent,
    drainTimeoutMs: get('drain-timeout') as number,
    healthCheck: healthCheckConfig(get('health-path') as string | null, get('health-interval') as number, get('health-timeout') as number),
    limits: Object.freeze({
      maxHeaderBytes: get('max-header-bytes') as number,
      maxHeaderCount: get('max-header-count') as number,
      headersTimeoutMs: get('header-timeout') as number,
      idleTimeoutMs: get('idle-timeout') as number,
      tunnelIdleTimeoutMs: get('tunnel-idle-timeout') as number,
      upstreamConnectTimeoutMs: get('upstream-connect-timeout') as number,
      upstreamResponseTimeoutMs: get('upstream-response-timeout') as number,
      upstreamMaxConnections: get('upstream-max-connections') as number,
      controlMaxFrameBytes: get('control-max-frame') as number,
      controlMessagesPerSecond: get('control-rate') as number,
      maxSessionsPerAccount: get('max-sessions-per-account') as number,
      maxClustersPerSession: get('max-clusters-per-session') as number,
      maxPendingDomainsPerAccount: get('max-pending-domains-per-account') as number,
      maxConnections: get('max-connections') as number,
      maxConnectionsPerClient: get('max-connections-per-client') as number,
      maxBodyBytes: get('max-body-bytes') as number,
      retryBudgetPercent: get('retry-budget') as number,
      maxInFlightPerMember: get('max-in-flight-per-member') as number,
    }),
  };
  return Object.freeze(config);
}

function healthCheckConfig(path: string | null, intervalMs: number, timeoutMs: number): HealthCheckConfig | null {
  if (path === null) return null;
  if (!path.startsWith('/')) throw new ConfigError(`--health-path: must start with "/", got ${JSON.stringify(path)}`);
  if (intervalMs < 10) throw new ConfigError('--health-interval: must be at least 10ms');
  if (timeoutMs < 1) throw new ConfigError('--health-timeout: must be at least 1ms');
  return Object.freeze({ path, intervalMs, timeoutMs });
}

/** The help text of `tfgate serve`, one line per flag with its env name and default. */
export function serveHelp(): string {
  const lines = ['Usage: tfgate serve [flags]', '', 'Every flag can also be set as an environment variable or a key of the --config JSON file.', ''];
  lines.push(`  --config FILE  JSON file of flag values ({"http": 80, "global-domain": ["example.com"]})  [env TFGATE_CONFIG]`);
  for (const [flag, spec] of Object.entries(SERVE_FLAGS) as [string, FlagSpec][]) {
    const def = spec.default === null ? 'none' : Array.isArray(spec.default) ? 'none' : String(spec.default);
    lines.push(`  --${flag}  ${spec.help}  [env ${envName(flag)}, default ${def}]`);
  }
  lines.push('', 'Booleans take --flag=false. Durations take ms, s, m or h (e.g. 500ms, 10s, 5m).');
  return lines.join('\n');
}

/** `--flag` alone for a boolean flag means true; parseArgs sees every flag as a string. */
function normaliseBooleans(argv: readonly string[]): string[] {
  return argv.map((arg) => {
    const name = arg.startsWith('--') ? arg.slice(2) : '';
    const spec = (SERVE_FLAGS as Record<string, FlagSpec>)[name];
    return spec?.kind === 'bool' ? `${arg}=true` : arg;
  });
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object of flag names to values`);
  }
  for (const key of Object.keys(parsed)) {
    if (!Object.hasOwn(SERVE_FLAGS, key)) throw new ConfigError(`config file ${path}: unknown key "${key}" (keys are the serve flags, e.g. "http")`);
  }
  return parsed as Record<string, unknown>;
}

function convert(flag: string, spec: FlagSpec, value: unknown, from: string): unknown {
  const bad = (why: string): never => {
    throw new ConfigError(`${from === 'default' ? `--${flag}` : from}: ${why}`);
  };
  if (spec.kind === 'list') {
    const items = Array.isArray(value) ? value : typeof value === 'string' ? [value] : bad('expected a list of names');
    return Object.freeze(
      items.map((item) => {
        if (typeof item !== 'string') return bad('expected names');
        const name = parseHostname(item, { allowPort: false });
        return name.ok ? name.hostname : bad(`${JSON.stringify(item)}: ${name.reason}`);
      }),
    );
  }
  if (spec.kind === 'bool') {
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '1' || value === 'yes') return true;
    if (value === 'false' || value === '0' || value === 'no') return false;
    return bad(`expected true or false, got ${JSON.stringify(value)}`);
  }
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value : bad(`expected a value, got ${JSON.stringify(value)}`);
  switch (spec.kind) {
    case 'listen': {
      const address = parseListen(text) ?? bad(`expected PORT or HOST:PORT, got ${JSON.stringify(text)}`);
      return address.host === '' && spec.defaultHost !== undefined ? Object.freeze({ host: spec.defaultHost, port: address.port }) : address;
    }
    case 'int': {
      if (!/^[0-9]+$/.test(text)) return bad(`expected a whole number, got ${JSON.stringify(text)}`);
      const n = Number(text);
      if (spec.min !== undefined && n < spec.min) return bad(`must be at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) return bad(`must be at most ${spec.max}`);
      if (!Number.isSafeInteger(n)) return bad(`${text} is too large`);
      return n;
    }
    case 'duration': {
      const ms = parseDurationMs(text) ?? bad(`expected a duration such as 500ms, 10s or 5m, got ${JSON.stringify(text)}`);
      return ms <= MAX_DURATION_MS ? ms : bad(`must be at most ${MAX_DURATION_MS / 3_600_000}h, got ${JSON.stringify(text)}`);
    }
    case 'enum':
      return spec.values!.includes(text) ? text : bad(`expected one of ${spec.values!.join(', ')}, got ${JSON.stringify(text)}`);
    case 'path':
      return text.length > 0 ? text : bad('must not be empty');
    case 'string':
      return text.length > 0 ? text : bad('must not be empty');
    case 'hostname': {
      const name = parseHostname(text, { allowPort: false });
      return name.ok ? name.hostname : bad(`${JSON.stringify(text)}: ${name.reason}`);
    }
  }
  return bad('unsupported flag');
}

/** `8080`, `127.0.0.1:8080`, `[::1]:8080`, `:8080` → host and port; undefined when malformed. */
export function parseListen(text: string): ListenAddress | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(text) ?? /^()()([0-9]{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return Object.freeze({ host: match[1] ?? match[2] ?? '', port });
}

/** `250ms`, `10s`, `5m`, `1h`, or a bare number of milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const match = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[match[2] ?? 'ms']!;
  return Math.round(Number(match[1]) * unit);
}

function acmeConfig(get: (flag: ServeFlag) => unknown): AcmeConfig | null {
  const directoryUrl = get('acme-directory') as string | null;
  if (directoryUrl === null) return null;
  let url: URL;
  try {
    url = new URL(directoryUrl);
  } catch {
    throw new ConfigError(`--acme-directory: not a URL: ${JSON.stringify(directoryUrl)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(`--acme-directory: expected an https:// URL, got ${JSON.stringify(directoryUrl)}`);
  const percent = get('acme-renew-percent') as number;
  if (percent > 100) throw new ConfigError('--acme-renew-percent: must be at most 100');
  return Object.freeze({
    directoryUrl,
    email: get('acme-email') as string | null,
    caFile: get('acme-ca') as string | null,
    renewFraction: percent / 100,
    retryMinMs: get('acme-retry') as number,
  });
}

/** `--dns-server`: `IP`, `IP:PORT`, `[IPv6]:PORT` → `ip:port` (port 53 by default); a name is refused (it would need a resolver itself). */
function dnsServerOf(text: string | null): string | null {
  if (text === null) return null;
  const bracketed = /^\[([0-9a-fA-F:.]+)\](?::([0-9]{1,5}))?$/.exec(text);
  const plain = bracketed ? null : /^([^:]+)(?::([0-9]{1,5}))?$/.exec(text);
  const host = bracketed?.[1] ?? plain?.[1] ?? (isIP(text) === 6 ? text : undefined);
  const port = Number(bracketed?.[2] ?? plain?.[2] ?? 53);
  if (host === undefined || isIP(host) === 0 || port < 1 || port > 65535) {
    throw new ConfigError(`--dns-server: expected IP or IP:PORT (e.g. 127.0.0.1:8053), got ${JSON.stringify(text)}`);
  }
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
