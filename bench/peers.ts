import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BENCH_HOST, WRK_TLS_HOST } from './bench-certificate.js';
import type { BenchCertificate } from './bench-certificate.js';
import { onPath } from './load-generator.js';

/** What every peer is given: the same members, virtual host, certificate and worker count. */
export interface PeerSetup {
  readonly dir: string;
  readonly httpPort: number;
  readonly httpsPort: number;
  readonly members: readonly number[];
  readonly workers: number;
  readonly certificate: BenchCertificate;
}

/** A peer proxy the bench configures itself: how to find it, its version, and how to run it in the foreground. */
export interface Peer {
  readonly name: string;
  readonly binary: string;
  version(path: string): string;
  /** Writes the peer's config under `setup.dir` and returns the command line that runs it. */
  configure(setup: PeerSetup): Promise<{ args: string[]; env?: NodeJS.ProcessEnv }>;
}

/** The first line a command prints on stdout or stderr (nginx -v writes to stderr). */
export function firstLine(path: string, args: readonly string[]): string {
  const run = spawnSync(path, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 });
  const out = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim();
  return out.split('\n')[0] || `unknown${run.error ? ` (${run.error.message})` : ''}`;
}

const nginx: Peer = {
  name: 'nginx',
  binary: 'nginx',
  version: (path) => firstLine(path, ['-v']).replace(/^nginx version: /, ''),
  async configure(s) {
    const dir = join(s.dir, 'nginx');
    await mkdir(dir, { recursive: true });
    const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((kind) => `  ${kind}_temp_path ${join(dir, kind)};`);
    const conf = [
      'daemon off;',
      'master_process on;',
      ...(process.getuid?.() === 0 ? ['user root;'] : []), // as the current user: no switch to nobody
      `worker_processes ${s.workers};`,
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} warn;`,
      'events { worker_connections 4096; }',
      'http {',
      '  access_log off;',
      ...temp,
      `  upstream members { ${s.members.map((p) => `server 127.0.0.1:${p};`).join(' ')} keepalive 128; }`,
      '  server {',
      `    listen 127.0.0.1:${s.httpPort};`,
      `    listen 127.0.0.1:${s.httpsPort} ssl;`,
      `    server_name ${BENCH_HOST} ${WRK_TLS_HOST};`,
      `    ssl_certificate ${s.certificate.certFile};`,
      `    ssl_certificate_key ${s.certificate.keyFile};`,
      '    location / { proxy_pass http://members; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }',
      '  }',
      '}',
    ].join('\n');
    const file = join(dir, 'nginx.conf');
    await writeFile(file, `${conf}\n`);
    return { args: ['-p', dir, '-e', join(dir, 'error.log'), '-c', file] };
  },
};

const haproxy: Peer = {
  name: 'HAProxy',
  binary: 'haproxy',
  version: (path) => firstLine(path, ['-v']).replace(/ - https?:.*$/, ''),
  async configure(s) {
    const dir = join(s.dir, 'haproxy');
    await mkdir(dir, { recursive: true });
    const conf = [
      'global',
      `  nbthread ${s.workers}`,
      '  maxconn 4096',
      `  pidfile ${join(dir, 'haproxy.pid')}`,
      'defaults',
      '  mode http',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend bench',
      `  bind 127.0.0.1:${s.httpPort}`,
      `  bind 127.0.0.1:${s.httpsPort} ssl crt ${s.certificate.pemFile}`,
      `  use_backend members if { hdr(host) -i ${BENCH_HOST} }`,
      'backend members',
      '  balance roundrobin',
      ...s.members.map((p, i) => `  server m${i} 127.0.0.1:${p}`),
    ].join('\n');
    const file = join(dir, 'haproxy.cfg');
    await writeFile(file, `${conf}\n`);
    return { args: ['-db', '-f', file] };
  },
};

const caddy: Peer = {
  name: 'Caddy',
  binary: 'caddy',
  version: (path) => firstLine(path, ['version']).split(' ')[0] ?? 'unknown',
  async configure(s) {
    const dir = join(s.dir, 'caddy');
    await mkdir(dir, { recursive: true });
    const upstreams = s.members.map((p) => `127.0.0.1:${p}`).join(' ');
    const proxy = `  bind 127.0.0.1\n  reverse_proxy ${upstreams} {\n    lb_policy round_robin\n  }`;
    const conf = [
      '{',
      '  admin off',
      '  auto_https off',
      '  skip_install_trust',
      `  storage file_system ${join(dir, 'data')}`,
      `  default_sni ${BENCH_HOST}`,
      '}',
      `http://${BENCH_HOST}:${s.httpPort} {`,
      proxy,
      '}',
      `https://${BENCH_HOST}:${s.httpsPort}, https://${WRK_TLS_HOST}:${s.httpsPort} {`,
      `  tls ${s.certificate.certFile} ${s.certificate.keyFile}`,
      proxy,
      '}',
    ].join('\n');
    const file = join(dir, 'Caddyfile');
    await writeFile(file, `${conf}\n`);
    // HOME and XDG dirs in the temp dir: Caddy writes nothing outside it.
    const env = { ...process.env, HOME: dir, XDG_DATA_HOME: join(dir, 'data'), XDG_CONFIG_HOME: join(dir, 'config'), GOMAXPROCS: String(s.workers) };
    return { args: ['run', '--adapter', 'caddyfile', '--config', file], env };
  },
};

/** The peers `npm run bench` compares with, in report order; each runs only when its binary is on PATH. */
export const PEERS: readonly Peer[] = [nginx, haproxy, caddy];

/** A peer found on PATH, with its version. */
export interface FoundPeer {
  readonly peer: Peer;
  readonly path: string;
  readonly version: string;
}

/** The peers on PATH (`BENCH_PEERS=nginx,caddy` narrows the list, `BENCH_PEERS=none` skips them all). */
export function findPeers(): { found: FoundPeer[]; missing: string[] } {
  const wanted = process.env['BENCH_PEERS']?.toLowerCase().split(',').map((p) => p.trim());
  const found: FoundPeer[] = [];
  const missing: string[] = [];
  for (const peer of PEERS) {
    if (wanted !== undefined && !wanted.includes(peer.binary)) continue;
    const path = onPath(peer.binary);
    if (path === undefined) missing.push(peer.name);
    else found.push({ peer, path, version: safeVersion(peer, path) });
  }
  return { found, missing };
}

function safeVersion(peer: Peer, path: string): string {
  try {
    return peer.version(path);
  } catch (err) {
    return `version unknown (${(err as Error).message.split('\n')[0]})`;
  }
}
