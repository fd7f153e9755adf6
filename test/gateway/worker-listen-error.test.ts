import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { systemErrorFields, workerListenError } from '../../src/gateway/workers.js';

describe('a worker start-up failure, as it crosses IPC to the primary', () => {
  it('keeps the code, syscall and address of a listener that could not bind', async () => {
    const holder = createServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    onTestFinished(() => void holder.close());
    const port = (holder.address() as AddressInfo).port;
    const second = createServer();
    second.listen(port, '127.0.0.1');
    const [err] = (await once(second, 'error')) as [Error];
    // IPC serialises messages as JSON: what the worker sends is what the primary gets.
    const sent = JSON.parse(JSON.stringify({ reason: err.message, error: systemErrorFields(err) })) as { reason: string; error: object };
    const rebuilt = workerListenError(sent.reason, sent.error) as Error & Record<string, unknown>;
    expect(rebuilt.message).toBe(err.message);
    expect({ code: rebuilt['code'], syscall: rebuilt['syscall'], address: rebuilt['address'], port: rebuilt['port'] }).toEqual({ code: 'EADDRINUSE', syscall: 'listen', address: '127.0.0.1', port });
  });

  it('sends no fields for an error that is not a system error', () => {
    expect(systemErrorFields(new Error('gateway is closed'))).toBeUndefined();
    expect(systemErrorFields('a string')).toBeUndefined();
    expect(Object.keys(workerListenError('gateway is closed'))).toEqual([]);
  });
});
