import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import { describe, expect, it, onTestFinished } from 'vitest';
import { GatewayMetrics } from '../../src/gateway/index.js';
import type { MetricSources } from '../../src/gateway/index.js';
import { makeCertificate } from '../helpers/certs.js';

const NO_SOURCES: MetricSources = { sessions: () => 0, routes: () => 0, membersEjected: () => 0, certificates: () => [] };

function lines(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('GatewayMetrics', () => {
  it('bounds the route label: past maxRouteLabels names, requests count under "other"', async () => {
    const metrics = new GatewayMetrics(NO_SOURCES, { maxRouteLabels: 3 });
    for (const route of ['a.test', 'b.test', 'c.test', 'd.test', 'e.test', 'a.test']) metrics.request(route, 200, 1);
    metrics.request(undefined, 404, undefined);
    const text = await metrics.text();
    expect(lines(text, 'tfgate_http_requests_total').sort()).toEqual([
      'tfgate_http_requests_total{status_class="2xx",route="a.test"} 2',
      'tfgate_http_requests_total{status_class="2xx",route="b.test"} 1',
      'tfgate_http_requests_total{status_class="2xx",route="c.test"} 1',
      'tfgate_http_requests_total{status_class="2xx",route="other"} 2',
      'tfgate_http_requests_total{status_class="4xx",route="none"} 1',
    ]);
    expect(metrics.routeTotals()).toEqual({
      'a.test': { requests: 2, errors: 0 },
      'b.test': { requests: 1, errors: 0 },
      'c.test': { requests: 1, errors: 0 },
      other: { requests: 2, errors: 0 },
      none: { requests: 1, errors: 0 },
    });
  });

  it('counts 5xx as errors, and control commands by a fixed set of names', async () => {
    const metrics = new GatewayMetrics(NO_SOURCES);
    metrics.request('a.test', 502, undefined);
    metrics.request('a.test', 200, 3);
    metrics.controlMessage('publish_web', 'ok');
    metrics.controlMessage('made-up-command-' + 'x'.repeat(10), 'refused');
    expect(metrics.routeTotals()['a.test']).toEqual({ requests: 2, errors: 1 });
    const text = await metrics.text();
    expect(lines(text, 'tfgate_control_messages_total').sort()).toEqual([
      'tfgate_control_messages_total{command="publish_web",result="ok"} 1',
      'tfgate_control_messages_total{command="unknown",result="refused"} 1',
    ]);
  });

  it('reads gauges from its sources at scrape time, certificate expiry included', async () => {
    const notAfter = new Date('2030-01-02T03:04:05Z');
    const metrics = new GatewayMetrics({
      sessions: () => 2,
      routes: () => 5,
      membersEjected: () => 1,
      certificates: () => [{ name: 'www.example.com', source: 'operator', notAfter }],
    });
    const text = await metrics.text();
    expect(lines(text, 'tfgate_sessions')).toEqual(['tfgate_sessions 2']);
    expect(lines(text, 'tfgate_routes')).toEqual(['tfgate_routes 5']);
    expect(lines(text, 'tfgate_members_ejected')).toEqual(['tfgate_members_ejected 1']);
    expect(lines(text, 'tfgate_certificate_expiry_timestamp_seconds')).toEqual([
      `tfgate_certificate_expiry_timestamp_seconds{name="www.example.com",source="operator"} ${notAfter.getTime() / 1000}`,
    ]);
  });

  it('counts a TLS listener\'s connections and its handshakes, good and failed', async () => {
    const metrics = new GatewayMetrics(NO_SOURCES);
    const cert = makeCertificate({ names: ['localhost'] });
    const server = createTlsServer({ cert: cert.certPem, key: cert.keyPem }, (socket) => socket.on('error', () => {}));
    server.on('tlsClientError', () => {});
    metrics.trackListener(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;

    // With TLS 1.3 the client is done before the server: wait for the server's side of the handshake.
    const accepted = once(server, 'secureConnection');
    const good = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false });
    good.on('error', () => {});
    await Promise.all([once(good, 'secureConnect'), accepted]);
    const openText = await metrics.text();
    expect(lines(openText, 'tfgate_active_connections')).toEqual(['tfgate_active_connections{listener="http"} 0', 'tfgate_active_connections{listener="https"} 1']);
    good.destroy();

    const bad = netConnect(port, '127.0.0.1');
    bad.on('error', () => {});
    await once(bad, 'connect');
    bad.end('this is not a TLS client hello\r\n\r\n');
    await once(bad, 'close');

    const deadline = Date.now() + 5_000;
    let text = await metrics.text();
    while (!text.includes('tfgate_tls_handshakes_total{result="failed"} 1') && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      text = await metrics.text();
    }
    expect(lines(text, 'tfgate_tls_handshakes_total').sort()).toEqual(['tfgate_tls_handshakes_total{result="failed"} 1', 'tfgate_tls_handshakes_total{result="ok"} 1']);
  });
});
