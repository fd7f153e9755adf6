import { afterEach, describe, expect, it } from 'vitest';
import { DealerTransport, RouterTransport } from '../../src/control/server.js';

const OPTIONS = { maxMessageBytes: 1 << 20, heartbeatIntervalMs: 5000, heartbeatTimeoutMs: 15_000 };

describe('RouterTransport', () => {
  const open: { close(): void }[] = [];
  afterEach(() => {
    for (const socket of open.splice(0)) socket.close();
  });

  it('copies received messages out of libzmq decoder buffers, so a publish burst does not pin them', () => {
    const router = new RouterTransport(OPTIONS);
    open.push(router);
    expect(router.receivesByCopy).toBe(true);
  });

  it('still delivers small, zero-copy-sized and large frames intact, and answers the peer', async () => {
    const router = new RouterTransport(OPTIONS);
    open.push(router);
    const port = await router.bind({ host: '127.0.0.1', port: 0 });
    const dealer = new DealerTransport();
    open.push(dealer);
    // 100 bytes is copied by zeromq.js anyway; 129 bytes and up were zero-copy; 64 KB spans decoder buffers.
    const frames = [100, 129, 8192, 65_536].map((size, i) => Buffer.alloc(size, i + 1));
    const received: Buffer[] = [];
    const answered: Buffer[] = [];
    const allReceived = new Promise<void>((resolve) => {
      void router.receive((peer, parts) => {
        received.push(Buffer.from(parts[0]!));
        void router.send(peer, parts[0]!.subarray(0, 4));
        if (received.length === frames.length) resolve();
      });
    });
    const allAnswered = new Promise<void>((resolve) => {
      void dealer.receive((frame) => {
        answered.push(Buffer.from(frame));
        if (answered.length === frames.length) resolve();
      });
    });
    dealer.connect('127.0.0.1', port);
    for (const frame of frames) await dealer.send(frame);
    await allReceived;
    await allAnswered;
    expect(received.map((b) => [b.length, b[0], b[b.length - 1]])).toEqual(frames.map((f) => [f.length, f[0], f[f.length - 1]]));
    expect(received.every((b, i) => b.equals(frames[i]!))).toBe(true);
    expect(answered.map((b) => b.toString('hex'))).toEqual(frames.map((f) => f.subarray(0, 4).toString('hex')));
  }, 15_000);
});
