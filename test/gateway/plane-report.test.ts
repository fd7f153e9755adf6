import { describe, expect, it } from 'vitest';
import type { DataPlane } from '../../src/gateway/data-plane.js';
import { PlaneMetrics } from '../../src/gateway/index.js';
import type { PlaneReport } from '../../src/gateway/index.js';
import { mergeReports, reportOf } from '../../src/gateway/plane-report.js';

/** A worker's report as it arrives over IPC: own keys only, `__proto__` included (a null-prototype record). */
function workerReport(requests: number): PlaneReport {
  return JSON.parse(
    `{"version":3,"inFlight":1,"members":{"10.0.0.1:80":{"inFlight":1,"requests":${requests},"ejectedUntil":0,"consecutiveFailures":0,"healthy":true}},` +
      `"routeTotals":{"constructor":{"requests":${requests},"errors":1},"__proto__":{"requests":${requests},"errors":0},"toString":{"requests":1,"errors":0},"ok.test":{"requests":2,"errors":0}}}`,
  ) as PlaneReport;
}

describe('mergeReports', () => {
  it('adds up routes named after Object.prototype members like any other, and pollutes nothing', () => {
    let merged: PlaneReport | undefined;
    const polluted: string[] = [];
    try {
      merged = mergeReports([workerReport(3), workerReport(4)]);
    } finally {
      // Undo whatever a merge into `{}` wrote through `__proto__` and `constructor` (it breaks the test runner too).
      for (const [name, target] of [['Object.prototype', Object.prototype], ['Object', Object]] as const) {
        for (const key of ['requests', 'errors']) {
          if (Object.hasOwn(target, key)) {
            polluted.push(`${name}.${key}`);
            delete (target as Record<string, unknown>)[key];
          }
        }
      }
    }
    expect(polluted).toEqual([]);
    expect(Object.entries(merged.routeTotals)).toEqual([
      ['constructor', { requests: 7, errors: 2 }],
      ['__proto__', { requests: 7, errors: 0 }],
      ['toString', { requests: 2, errors: 0 }],
      ['ok.test', { requests: 4, errors: 0 }],
    ]);
    // What /status and IPC see of it: every route, as plain JSON.
    expect(JSON.parse(JSON.stringify(merged.routeTotals))).toEqual({
      constructor: { requests: 7, errors: 2 },
      ['__proto__']: { requests: 7, errors: 0 },
      toString: { requests: 2, errors: 0 },
      'ok.test': { requests: 4, errors: 0 },
    });
    expect(merged).toMatchObject({ version: 3, inFlight: 2 });
    expect(merged.members['10.0.0.1:80']).toEqual({ inFlight: 2, requests: 7, ejectedUntil: 0, consecutiveFailures: 0, healthy: true });
  });

  it('keeps the worst view of a member and the lowest version', () => {
    const a: PlaneReport = { version: 5, inFlight: 0, members: { 'm:1': { inFlight: 1, requests: 2, ejectedUntil: 100, consecutiveFailures: 0, healthy: true } }, routeTotals: {} };
    const b: PlaneReport = { version: 4, inFlight: 3, members: { 'm:1': { inFlight: 2, requests: 3, ejectedUntil: 50, consecutiveFailures: 2, healthy: false } }, routeTotals: {} };
    const merged = mergeReports([a, b]);
    expect(merged).toMatchObject({ version: 4, inFlight: 3 });
    expect(merged.members['m:1']).toEqual({ inFlight: 3, requests: 5, ejectedUntil: 100, consecutiveFailures: 2, healthy: false });
    expect(mergeReports([]).version).toBe(0);
  });
});

describe('reportOf', () => {
  it('reports a route named __proto__ as a key, from the metrics to what crosses IPC', () => {
    const metrics = new PlaneMetrics({ membersEjected: () => 0 });
    metrics.request('__proto__', 200, 1);
    metrics.request('__proto__', 502, 1);
    metrics.request('constructor', 200, 1);
    const plane = { version: 4, registry: { all: () => [][Symbol.iterator]() } } as unknown as DataPlane;
    const report = reportOf(plane, 0, metrics.routeTotals());
    // As the primary receives it over IPC, which copies own keys only.
    const sent = structuredClone(report.routeTotals);
    expect(Object.keys(sent).sort()).toEqual(['__proto__', 'constructor']);
    expect(Object.getOwnPropertyDescriptor(sent, '__proto__')?.value).toEqual({ requests: 2, errors: 1 });
    expect(sent['constructor']).toEqual({ requests: 1, errors: 0 });
  });
});
