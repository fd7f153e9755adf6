import type { DataPlane } from './data-plane.js';
import type { RouteTotals } from './metrics.js';

/** One member's live counters in one data plane process. */
export interface MemberCounters {
  inFlight: number;
  requests: number;
  /** ms since the epoch; 0 when never ejected. */
  ejectedUntil: number;
  consecutiveFailures: number;
  /** False while the member fails its active health checks. */
  healthy: boolean;
}

/**
 * What a data plane process reports about its traffic: plain data, so worker processes can send it
 * over IPC and the primary can merge theirs into one ({@link mergeReports}).
 */
export interface PlaneReport {
  /** The routing state version in force (the lowest, once merged). */
  version: number;
  inFlight: number;
  members: Record<string, MemberCounters>;
  routeTotals: Record<string, RouteTotals>;
}

/** The report of one process's data plane. */
export function reportOf(dataPlane: DataPlane, inFlight: number, routeTotals: Record<string, RouteTotals>): PlaneReport {
  const members = record<MemberCounters>();
  for (const member of dataPlane.registry.all()) {
    members[member.address] = {
      inFlight: member.inFlight,
      requests: member.requests,
      ejectedUntil: member.ejectedUntil,
      consecutiveFailures: member.consecutiveFailures,
      healthy: member.healthy,
    };
  }
  return { version: dataPlane.version, inFlight, members, routeTotals: ownRecord(routeTotals) };
}

/**
 * Several processes' reports as one: counts add up; a member is as ejected, failing or unhealthy
 * as the worst process sees it (each process judges its own connections to it). The records it
 * returns have no prototype: route names come from clients, and one named `constructor` or
 * `__proto__` is a key like any other, not a door into Object.prototype.
 */
export function mergeReports(reports: readonly PlaneReport[]): PlaneReport {
  const merged: PlaneReport = { version: Number.POSITIVE_INFINITY, inFlight: 0, members: record(), routeTotals: record() };
  for (const report of reports) {
    merged.version = Math.min(merged.version, report.version);
    merged.inFlight += report.inFlight;
    for (const [address, counters] of Object.entries(report.members)) {
      const into = merged.members[address];
      if (!into) {
        merged.members[address] = { ...counters };
        continue;
      }
      into.inFlight += counters.inFlight;
      into.requests += counters.requests;
      into.ejectedUntil = Math.max(into.ejectedUntil, counters.ejectedUntil);
      into.consecutiveFailures = Math.max(into.consecutiveFailures, counters.consecutiveFailures);
      into.healthy &&= counters.healthy;
    }
    for (const [route, totals] of Object.entries(report.routeTotals)) {
      const into = merged.routeTotals[route];
      if (into) {
        into.requests += totals.requests;
        into.errors += totals.errors;
      } else merged.routeTotals[route] = { ...totals };
    }
  }
  if (merged.version === Number.POSITIVE_INFINITY) merged.version = 0;
  return merged;
}

/** `totals` as a record without a prototype (IPC delivers plain objects, where `__proto__` would not be a key). */
function ownRecord(totals: Record<string, RouteTotals>): Record<string, RouteTotals> {
  const out = record<RouteTotals>();
  for (const [route, counts] of Object.entries(totals)) out[route] = counts;
  return out;
}

/** An empty record without a prototype, so any string is an ordinary key (`__proto__` included). */
function record<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}
