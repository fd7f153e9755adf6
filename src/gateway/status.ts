import type { RoutingState } from '../vhost/index.js';
import type { CertificateSummary } from './certificate-catalog.js';
import type { MemberCounters, PlaneReport } from './plane-report.js';

/** A control session as the status page shows it (the shape of control's SessionInfo, without importing control). */
export interface StatusSessionInput {
  readonly rid: string;
  readonly account: string;
  readonly connected: boolean;
  /** When the session began, ms since the epoch. */
  readonly since: number;
  readonly fqdns: readonly string[];
}

/** One member's health and load. */
export interface MemberStatus {
  address: string;
  /** `unhealthy` (failing its active health checks), `ejected` (out after a failed request), `failing` (back in after an ejection, no success since), or `healthy`. */
  state: 'healthy' | 'unhealthy' | 'ejected' | 'failing';
  healthy: boolean;
  /** ISO time until which the member is ejected, when it is. */
  ejectedUntil: string | null;
  consecutiveFailures: number;
  inFlight: number;
  requests: number;
}

/** The `GET /status` document. */
export interface GatewayStatus {
  time: string;
  version: number;
  uptimeSeconds: number;
  inFlight: number;
  requests: number;
  errors: number;
  sessions: { rid: string; account: string; connected: boolean; since: string; ageSeconds: number; fqdns: readonly string[] }[];
  routes: { fqdn: string; cluster: string; rewrite: string | null; requests: number; errors: number; members: MemberStatus[] }[];
  certificates: { names: readonly string[]; source: string; origin: string; notAfter: string; expiresInDays: number }[];
}

/** What {@link buildStatus} reads; main.ts supplies it (sessions come from the control plane). */
export interface StatusInputs {
  /** The routing state in force in the data planes: routes, clusters and members to list. */
  readonly state: RoutingState;
  /** Its certificates, parsed (see CertificateCatalog). */
  readonly certificates: readonly CertificateSummary[];
  /** Traffic counters of the data plane processes, merged. */
  readonly report: PlaneReport;
  readonly sessions: () => readonly StatusSessionInput[];
  readonly startedAt: number;
  readonly now: () => number;
}

/** Builds the plain JSON status from the routing state, the data planes' counters and the sessions. */
export function buildStatus(inputs: StatusInputs): GatewayStatus {
  const now = inputs.now();
  const report = inputs.report;
  const totals = report.routeTotals;
  let requests = 0;
  let errors = 0;
  for (const t of Object.values(totals)) {
    requests += t.requests;
    errors += t.errors;
  }
  const routes = Object.values(inputs.state.routes)
    .map((spec) => ({
      fqdn: spec.fqdn,
      cluster: spec.cluster,
      rewrite: spec.rewrite,
      requests: totals[spec.fqdn]?.requests ?? 0,
      errors: totals[spec.fqdn]?.errors ?? 0,
      members: spec.members.map((address) => memberStatus(address, report.members[address], now)),
    }))
    .sort((a, b) => a.fqdn.localeCompare(b.fqdn));
  const certificates = inputs.certificates.map((certificate) => ({
    names: certificate.names,
    source: certificate.source,
    origin: certificate.origin,
    notAfter: certificate.notAfter.toISOString(),
    expiresInDays: Math.floor((certificate.notAfter.getTime() - now) / 86_400_000),
  }));
  return {
    time: new Date(now).toISOString(),
    version: inputs.state.version,
    uptimeSeconds: Math.floor((now - inputs.startedAt) / 1000),
    inFlight: report.inFlight,
    requests,
    errors,
    sessions: inputs.sessions().map((session) => ({
      rid: session.rid,
      account: session.account,
      connected: session.connected,
      since: new Date(session.since).toISOString(),
      ageSeconds: Math.max(0, Math.floor((now - session.since) / 1000)),
      fqdns: session.fqdns,
    })),
    routes,
    certificates,
  };
}

const NO_TRAFFIC: MemberCounters = { inFlight: 0, requests: 0, ejectedUntil: 0, consecutiveFailures: 0, healthy: true };

function memberStatus(address: string, member: MemberCounters = NO_TRAFFIC, now: number): MemberStatus {
  const available = member.ejectedUntil <= now;
  const state = !member.healthy ? 'unhealthy' : !available ? 'ejected' : member.consecutiveFailures > 0 ? 'failing' : 'healthy';
  return {
    address,
    state,
    healthy: state === 'healthy',
    ejectedUntil: member.ejectedUntil > now ? new Date(member.ejectedUntil).toISOString() : null,
    consecutiveFailures: member.consecutiveFailures,
    inFlight: member.inFlight,
    requests: member.requests,
  };
}
