import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { envName, loadConfig, parseDurationMs, parseListen, serveHelp, SERVE_FLAGS } from '../src/config.js';
import { ConfigError } from '../src/errors.js';

describe('loadConfig', () => {
  it('has the documented defaults', () => {
    const config = loadConfig([], {});
    expect(config.http).toEqual({ host: '', port: 8080 });
    expect(config.control).toEqual({ host: '', port: 2020 });
    expect(config.admin).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(config.stateDir).toBe('./state');
    expect(config.certsDir).toBe('./certs');
    expect(config.sessionGraceMs).toBe(60_000);
    expect(config.limits.headersTimeoutMs).toBe(10_000);
    expect(config.limits.idleTimeoutMs).toBe(60_000);
    expect(config.limits.tunnelIdleTimeoutMs).toBe(3_600_000);
    expect(config.limits.upstreamConnectTimeoutMs).toBe(5_000);
    expect(config.limits.upstreamResponseTimeoutMs).toBe(30_000);
    expect(config.accessLog).toBe(true);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.limits)).toBe(true);
  });

  it('takes flags over env over the config file over defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-config-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ http: 81, admin: '127.0.0.1:82', 'global-domain': ['file.test'], 'state-dir': '/from-file' }));
    const config = loadConfig(['--config', file, '--http', '0', '--global-domain', 'A.test', '--global-domain', 'b.test.'], {
      TFGATE_ADMIN: '[::1]:0',
      TFGATE_HTTP: '9999',
    });
    expect(config.http.port).toBe(0);
    expect(config.admin).toEqual({ host: '::1', port: 0 });
    expect(config.globalDomains).toEqual(['a.test', 'b.test']);
    expect(config.stateDir).toBe('/from-file');
  });

  it('reads booleans as --flag, --flag=false and env', () => {
    expect(loadConfig(['--access-log=false'], {}).accessLog).toBe(false);
    expect(loadConfig(['--access-log'], {}).accessLog).toBe(true);
    expect(loadConfig([], { TFGATE_ACCESS_LOG: 'false' }).accessLog).toBe(false);
  });

  it('reads --tunnel-idle-timeout as a duration, 0 turning it off', () => {
    expect(loadConfig(['--tunnel-idle-timeout', '90s'], {}).limits.tunnelIdleTimeoutMs).toBe(90_000);
    expect(loadConfig([], { TFGATE_TUNNEL_IDLE_TIMEOUT: '0' }).limits.tunnelIdleTimeoutMs).toBe(0);
    expect(() => loadConfig(['--tunnel-idle-timeout', 'never'], {})).toThrow('--tunnel-idle-timeout: expected a duration');
  });

  it('reads lists from env as comma-separated names', () => {
    expect(loadConfig([], { TFGATE_GLOBAL_DOMAIN: 'a.test, b.test' }).globalDomains).toEqual(['a.test', 'b.test']);
  });

  it.each([
    [['--http', 'eighty'], {}, '--http: expected PORT or HOST:PORT'],
    [['--http', '70000'], {}, '--http'],
    [['--header-timeout', 'soon'], {}, '--header-timeout: expected a duration'],
    [['--workers', '0'], {}, '--workers: must be at least 1'],
    [['--balancer', 'random'], {}, '--balancer: expected one of'],
    [['--access-log=maybe'], {}, 'expected true or false'],
    [['--global-domain', 'bad name'], {}, '"bad name"'],
    [['--no-such-flag'], {}, 'no-such-flag'],
    [[], { TFGATE_CONTROL: 'x' }, 'TFGATE_CONTROL: expected PORT or HOST:PORT'],
    [['--config', '/nonexistent/tfgate.json'], {}, 'cannot read config file'],
  ] as const)('refuses %j %j naming the key', (argv, env, message) => {
    expect(() => loadConfig(argv, env)).toThrow(ConfigError);
    expect(() => loadConfig(argv, env)).toThrow(message);
  });

  it('refuses unknown keys in the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-config-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, '{"htp": 80}');
    expect(() => loadConfig(['--config', file], {})).toThrow('unknown key "htp"');
  });

  it('refuses a config file key that is only an Object.prototype name', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfgate-config-'));
    const file = join(dir, 'config.json');
    for (const key of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      writeFileSync(file, `{"http": 80, "${key}": 1}`);
      expect(() => loadConfig(['--config', file], {})).toThrow(`unknown key "${key}"`);
    }
  });

  it('keeps a bare admin port on loopback, as the default is', () => {
    expect(loadConfig(['--admin', '9091'], {}).admin).toEqual({ host: '127.0.0.1', port: 9091 });
    expect(loadConfig(['--admin', ':9091'], {}).admin).toEqual({ host: '127.0.0.1', port: 9091 });
    expect(loadConfig([], { TFGATE_ADMIN: '0' }).admin).toEqual({ host: '127.0.0.1', port: 0 });
    expect(loadConfig(['--admin', '0.0.0.0:9091'], {}).admin).toEqual({ host: '0.0.0.0', port: 9091 });
    expect(loadConfig(['--http', '81'], {}).http).toEqual({ host: '', port: 81 });
  });

  it.each([
    [['--health-interval', '1000h'], '--health-interval: must be at most 480h'],
    [['--drain-timeout', '2147483648'], '--drain-timeout: must be at most 480h'],
    [['--session-grace', '720h'], '--session-grace: must be at most 480h'],
    [['--workers', '99999999999999999999'], '--workers: must be at most 256'],
    [['--max-header-bytes', '99999999999999999999'], '--max-header-bytes: must be at most 1048576'],
    [['--max-connections', '99999999999999999999'], '--max-connections: 99999999999999999999 is too large'],
    [['--retry-budget', '101'], '--retry-budget: must be at most 100'],
  ] as const)('refuses %j, which no timer or limit can honour', (argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(message);
  });

  it('takes the longest duration and the largest numbers it allows', () => {
    expect(loadConfig(['--session-grace', '480h'], {}).sessionGraceMs).toBe(480 * 3_600_000);
    expect(loadConfig(['--workers', '256'], {}).workers).toBe(256);
  });

  it('documents every flag with its env name in --help', () => {
    const help = serveHelp();
    for (const flag of Object.keys(SERVE_FLAGS)) {
      expect(help).toContain(`--${flag}`);
      expect(help).toContain(envName(flag));
    }
  });
});

describe('parsers', () => {
  it('parses listen addresses', () => {
    expect(parseListen('0')).toEqual({ host: '', port: 0 });
    expect(parseListen(':80')).toEqual({ host: '', port: 80 });
    expect(parseListen('0.0.0.0:80')).toEqual({ host: '0.0.0.0', port: 80 });
    expect(parseListen('[::]:443')).toEqual({ host: '::', port: 443 });
    expect(parseListen('::1:80')).toBeUndefined();
    expect(parseListen('host:')).toBeUndefined();
  });

  it('parses durations', () => {
    expect(parseDurationMs('250')).toBe(250);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('1.5s')).toBe(1_500);
    expect(parseDurationMs('2m')).toBe(120_000);
    expect(parseDurationMs('1h')).toBe(3_600_000);
    expect(parseDurationMs('-1s')).toBeUndefined();
    expect(parseDurationMs('soon')).toBeUndefined();
  });
});
