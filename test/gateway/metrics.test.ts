import { describe, expect, it } from 'vitest';
import { PlaneMetrics, StateMetrics } from '../../src/gateway/index.js';
import type { PlaneSources } from '../../src/gateway/index.js';

const NO_SOURCES: PlaneSources = { membersEjected: () => 0 };

function lines(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('PlaneMetrics and StateMetrics', () => {
  it('bounds the route label: past maxRouteLabels names, requests count under "other"', async () => {
    const metrics = new PlaneMetrics(NO_SOURCES, { maxRouteLabels: 3 });
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
    const metrics = new PlaneMetrics(NO_SOURCES);
    metrics.request('a.test', 502, undefined);
    metrics.request('a.test', 200, 3);
    expect(metrics.routeTotals()['a.test']).toEqual({ requests: 2, errors: 1 });
    const state = new StateMetrics({ sessions: () => 0, routes: () => 0, certificates: () => [] });
    state.controlMessage('publish_web', 'ok');
    state.controlMessage('made-up-command-' + 'x'.repeat(10), 'refused');
    const text = await state.text();
    expect(lines(text, 'tfgate_control_messages_total').sort()).toEqual([
      'tfgate_control_messages_total{command="publish_web",result="ok"} 1',
      'tfgate_control_messages_total{command="unknown",result="refused"} 1',
    ]);
  });

  it('reads gauges from its sources at scrape time, certificate expiry included', async () => {
    const notAfter = new Date('2030-01-02T03:04:05Z');
    const metrics = new StateMetrics({
      sessions: () => 2,
      routes: () => 5,
      certificates: () => [{ name: 'www.example.com', source: 'operator', notAfter }],
    });
    const text = await metrics.text();
    expect(lines(text, 'tfgate_sessions')).toEqual(['tfgate_sessions 2']);
    expect(lines(text, 'tfgate_routes')).toEqual(['tfgate_routes 5']);
    // Traffic is the data planes' to export, not the primary's.
    expect(lines(text, 'tfgate_http_requests_total')).toEqual([]);
    expect(lines(await new PlaneMetrics({ membersEjected: () => 1 }).text(), 'tfgate_members_ejected')).toEqual(['tfgate_members_ejected 1']);
    expect(lines(text, 'tfgate_certificate_expiry_timestamp_seconds')).toEqual([
      `tfgate_certificate_expiry_timestamp_seconds{name="www.example.com",source="operator"} ${notAfter.getTime() / 1000}`,
    ]);
  });

  it('reads open and refused connections per listener from the gateway\'s counts, and counts handshakes by result', async () => {
    const metrics = new PlaneMetrics(NO_SOURCES);
    // Before a gateway gives its counts (the primary with workers): both listeners at 0.
    expect(lines(await metrics.text(), 'tfgate_active_connections')).toEqual(['tfgate_active_connections{listener="http"} 0', 'tfgate_active_connections{listener="https"} 0']);
    const open = { http: 2, https: 1 };
    const refused = { http: 0, https: 4 };
    metrics.countConnections({ openOn: (listener) => open[listener], refusedOn: (listener) => refused[listener] });
    expect(lines(await metrics.text(), 'tfgate_active_connections')).toEqual(['tfgate_active_connections{listener="http"} 2', 'tfgate_active_connections{listener="https"} 1']);
    open.https = 0;
    refused.https = 5;
    const text = await metrics.text();
    expect(lines(text, 'tfgate_active_connections')).toContain('tfgate_active_connections{listener="https"} 0');
    expect(lines(text, 'tfgate_connections_refused_total')).toEqual(['tfgate_connections_refused_total{listener="http"} 0', 'tfgate_connections_refused_total{listener="https"} 5']);

    metrics.handshake(true);
    metrics.handshake(false);
    metrics.handshake(true);
    expect(lines(await metrics.text(), 'tfgate_tls_handshakes_total').sort()).toEqual(['tfgate_tls_handshakes_total{result="failed"} 1', 'tfgate_tls_handshakes_total{result="ok"} 2']);
  });
});
