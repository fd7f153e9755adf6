import { describe, expect, it } from 'vitest';
import { workerListenError } from '../../src/gateway/workers.js';

type Fields = { code?: string; syscall?: string; address?: string; port?: number; hostname?: string };

describe('workerListenError (a worker reports only its error message)', () => {
  it.each<[string, Fields]>([
    ['bind EADDRINUSE 127.0.0.1:8080', { code: 'EADDRINUSE', syscall: 'bind', address: '127.0.0.1', port: 8080 }],
    ['listen EADDRINUSE: address already in use 127.0.0.1:8080', { code: 'EADDRINUSE', syscall: 'listen', address: '127.0.0.1', port: 8080 }],
    ['bind EADDRINUSE ::1:8443', { code: 'EADDRINUSE', syscall: 'bind', address: '::1', port: 8443 }],
    ['bind EADDRINUSE null:8080', { code: 'EADDRINUSE', syscall: 'bind', port: 8080 }],
    ['bind EADDRNOTAVAIL 10.9.9.9', { code: 'EADDRNOTAVAIL', syscall: 'bind', address: '10.9.9.9' }],
    ['bind EADDRNOTAVAIL fe80::1', { code: 'EADDRNOTAVAIL', syscall: 'bind', address: 'fe80::1' }],
    ['getaddrinfo ENOTFOUND no.such.host', { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: 'no.such.host' }],
    ['gateway is closed', {}],
  ])('reads %j back as Node would have thrown it', (reason, fields) => {
    const err = workerListenError(reason) as Error & Fields;
    expect(err.message).toBe(reason);
    const { code, syscall, address, port, hostname } = err;
    expect(JSON.parse(JSON.stringify({ code, syscall, address, port, hostname }))).toEqual(fields);
  });
});
