import { describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { Cluster, ControlPlane, Location, RemoteError, openStore } from '../../src/control/index.js';
import { Gateway } from '../../src/gateway/index.js';
import { httpGet } from '../helpers/http.js';
import { startUpstream } from '../helpers/upstream.js';
import { eventually, startTestControlPlane } from '../helpers/control-client.js';
import type { TestControlPlane, TestKeys } from '../helpers/control-client.js';

async function withGateway(gw: TestControlPlane): Promise<number> {
  const gateway = new Gateway({ limits: loadConfig([], {}).limits, routes: gw.dataPlane.routes, log: createLogger('silent'), accessLog: false });
  onTestFinished(() => gateway.close(100));
  return gateway.listenHttp({ host: '127.0.0.1', port: 0 });
}

async function connect(gw: TestControlPlane, keys: TestKeys = gw.addAccount(), extra: Partial<Parameters<typeof Location.connect>[0]> = {}): Promise<Location> {
  const location = await Location.connect({ host: '127.0.0.1', port: gw.control.port, serverKey: gw.control.publicKey, keys, ...extra });
  onTestFinished(() => location.close());
  return location;
}

describe('SDK and HTTP through the gateway', () => {
  it('publish → HTTP reaches the members; add/remove change where requests go; unpublish → 404', async () => {
    const gw = await startTestControlPlane();
    const http = await withGateway(gw);
    const one = await startUpstream();
    const two = await startUpstream();
    onTestFinished(async () => {
      await one.close();
      await two.close();
    });
    const location = await connect(gw);
    expect(location.domains).toEqual(['test']);
    const cluster = new Cluster([one.address]);
    const endpoint = location.endpointFor('App.Test');
    await endpoint.publish(cluster, 'app.test');
    expect((await httpGet(http, 'app.test')).body).toBe(`hello from ${one.port}`);

    await cluster.add(two.address);
    const bodies = new Set<string>();
    for (let i = 0; i < 10; i++) bodies.add((await httpGet(http, 'app.test')).body);
    expect(bodies).toEqual(new Set([`hello from ${one.port}`, `hello from ${two.port}`]));

    await cluster.remove(one.address);
    for (let i = 0; i < 5; i++) expect((await httpGet(http, 'app.test')).body).toBe(`hello from ${two.port}`);

    await endpoint.unpublish(cluster);
    expect((await httpGet(http, 'app.test')).status).toBe(404);
  });

  it('rewrite replaces the Host header sent to the members', async () => {
    const gw = await startTestControlPlane();
    const http = await withGateway(gw);
    const member = await startUpstream((req, res) => res.end(req.headers.host));
    onTestFinished(() => member.close());
    const location = await connect(gw);
    await location.endpointFor('r.test').publish(new Cluster([member.address]), 'r.test', { rewrite: 'inside.example' });
    expect((await httpGet(http, 'r.test')).body).toBe('inside.example');
  });

  it('gateway refusals reject with the reason; names outside the offer are refused locally', async () => {
    const gw = await startTestControlPlane();
    const a = await connect(gw);
    const b = await connect(gw);
    await a.endpointFor('taken.test').publish(new Cluster(['10.0.0.1:80']), 'taken.test');
    const refused = b.endpointFor('taken.test').publish(new Cluster(['10.0.0.2:80']), 'taken.test');
    await expect(refused).rejects.toBeInstanceOf(RemoteError);
    await expect(refused).rejects.toThrow('taken.test is published by another session');
    expect(() => a.endpointFor('example.com')).toThrow(/not under a domain this gateway offers/);
  });

  it('fails clearly with an unknown key or a wrong server key', async () => {
    const gw = await startTestControlPlane();
    const { newKeys } = await import('../helpers/control-client.js');
    await expect(Location.connect({ host: '127.0.0.1', port: gw.control.port, serverKey: gw.control.publicKey, keys: newKeys() })).rejects.toThrow(/Authentication failed/);
    await expect(
      Location.connect({ host: '127.0.0.1', port: gw.control.port, serverKey: Buffer.from(newKeys().publicKey).toString('base64'), keys: gw.addAccount() }),
    ).rejects.toThrow(/server key does not match/);
  });

  it('publishes its clusters again when the gateway restarts and has forgotten the session', async () => {
    const gw = await startTestControlPlane();
    const events: string[] = [];
    const location = await connect(gw, gw.addAccount(), { onConnection: (event) => events.push(event) });
    const cluster = new Cluster(['10.0.0.1:80']);
    await location.endpointFor('back.test').publish(cluster, 'back.test');
    const port = gw.control.port;
    await gw.control.close();
    expect(gw.membersOf('back.test')).toBeUndefined();
    // The store would bring the session back (restart.test.ts): make this gateway forget it.
    const store = openStore(gw.stateDir);
    store.saveClusters(store.listClusters().map((c) => ({ rid: c.rid, id: c.id, cluster: null })));
    store.close();
    const restarted = new ControlPlane({
      listen: { host: '127.0.0.1', port },
      stateDir: gw.stateDir,
      globalDomains: ['test'],
      sessionGraceMs: 60_000,
      maxFrameBytes: 1 << 20,
      messagesPerSecond: 100,
      routing: gw.routing,
      applyRouting: async (state) => gw.dataPlane.apply(state),
      log: createLogger('silent'),
    });
    await restarted.start();
    onTestFinished(() => restarted.close());
    await eventually(() => gw.membersOf('back.test')?.[0] === '10.0.0.1:80', 10_000, 'the cluster to be published again');
    expect(events).toEqual(['lost', 'renewed']);
    await cluster.add('10.0.0.2:80');
    expect(gw.membersOf('back.test')).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });
});

describe('SDK reconnect', () => {
  it('resumes its session through a broken connection, keeping its clusters (no republish)', async () => {
    const { startTcpProxy } = await import('../helpers/control-client.js');
    const gw = await startTestControlPlane();
    const proxy = await startTcpProxy(gw.control.port);
    const events: string[] = [];
    const location = await Location.connect({
      host: '127.0.0.1',
      port: proxy.port,
      serverKey: gw.control.publicKey,
      keys: gw.addAccount(),
      onConnection: (event) => events.push(event),
    });
    onTestFinished(() => location.close());
    const cluster = new Cluster(['10.0.0.1:80']);
    await location.endpointFor('kept.test').publish(cluster, 'kept.test');
    const rid = location.rid;
    const version = gw.routing.snapshot().version;
    proxy.cut();
    await eventually(() => events.includes('resumed'), 10_000, 'the session to resume');
    expect(events).toEqual(['lost', 'resumed']);
    expect(location.rid).toBe(rid);
    expect(gw.routing.snapshot().version).toBe(version); // nothing was published again
    await cluster.add('10.0.0.2:80');
    expect(gw.membersOf('kept.test')).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  });
});
