import type { RouteSpec, RoutingState } from '../vhost/index.js';
import type { CertificateSummary } from './certificate-catalog.js';
import type { MemberCounters, PlaneReport } from './plane-report.js';

/** Routes one `/status` answer lists unless `limit` says otherwise (the dashboard asks for fewer). */
export const DEFAULT_STATUS_LIMIT = 200;
/** The most routes one answer may list: past that the document is the whole table again. */
export const MAX_STATUS_LIMIT = 5_000;
/** Sessions one answer lists, and names listed per session; the counts say how many there are. */
const SESSIONS_SHOWN = 1_000;
const SESSION_FQDNS_SHOWN = 20;

/** Which routes a `/status` answer lists. */
export interface StatusQuery {
  /** At most this many, the first by fqdn. */
  readonly limit: number;
  /** Only fqdns containing this text, compared case-insensitively; null for all. */
  readonly q: string | null;
  /** Only the route of exactly this (normalised) fqdn; null for all. */
  readonly fqdn: string | null;
}

/** The query of a plain `GET /status`. */
export const DEFAULT_STATUS_QUERY: StatusQuery = Object.freeze({ limit: DEFAULT_STATUS_LIMIT, q: null, fqdn: null });

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

/** One route as `/status` lists it. */
export interface RouteStatus {
  fqdn: string;
  cluster: string;
  rewrite: string | null;
  requests: number;
  errors: number;
  members: MemberStatus[];
}

/** The `GET /status` document. */
export interface GatewayStatus {
  time: string;
  version: number;
  uptimeSeconds: number;
  inFlight: number;
  requests: number;
  errors: number;
  /** Distinct members in use, and how many of them are not healthy (ejected, failing or unhealthy), across every route. */
  membersTotal: number;
  membersUnhealthy: number;
  /** The first sessions (at most 1,000), each with its first 20 names and `fqdnCount`. */
  sessions: { rid: string; account: string; connected: boolean; since: string; ageSeconds: number; fqdns: readonly string[]; fqdnCount: number }[];
  sessionsTotal: number;
  /** The routes the query selects, by fqdn, at most `routesQuery.limit` of them. */
  routes: RouteStatus[];
  /** Routes in force; routes the query's filter selects; whether `routes` lists fewer than that. */
  routesTotal: number;
  routesMatched: number;
  routesTruncated: boolean;
  routesQuery: StatusQuery;
  certificates: { names: readonly string[]; source: string; origin: string; notAfter: string; expiresInDays: number }[];
}

/** The status of one moment: its counters, sessions and certificates as they were; its routes listed per query. */
export interface StatusSnapshot {
  /** The `GET /status` document listing the routes `query` selects. Costs one pass over the route names, no more. */
  document(query?: StatusQuery): GatewayStatus;
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

/**
 * Takes the status of this moment from the routing state, the data planes' counters and the
 * sessions. What does not grow with the route table is read here; the route list is left to
 * {@link StatusSnapshot.document}, which lists a bounded page of it, so an answer stays small and
 * quick at a hundred thousand routes.
 */
export function buildStatus(inputs: StatusInputs): StatusSnapshot {
  const now = inputs.now();
  const report = inputs.report;
  let requests = 0;
  let errors = 0;
  for (const t of Object.values(report.routeTotals)) {
    requests += t.requests;
    errors += t.errors;
  }
  let membersTotal = 0;
  let membersUnhealthy = 0;
  for (const [address, counters] of Object.entries(report.members)) {
    membersTotal++;
    if (memberStatus(address, counters, now).state !== 'healthy') membersUnhealthy++;
  }
  const sessions = inputs.sessions();
  const head = {
    time: new Date(now).toISOString(),
    version: inputs.state.version,
    uptimeSeconds: Math.floor((now - inputs.startedAt) / 1000),
    inFlight: report.inFlight,
    requests,
    errors,
    membersTotal,
    membersUnhealthy,
    sessions: sessions.slice(0, SESSIONS_SHOWN).map((session) => ({
      rid: session.rid,
      account: session.account,
      connected: session.connected,
      since: new Date(session.since).toISOString(),
      ageSeconds: Math.max(0, Math.floor((now - session.since) / 1000)),
      fqdns: session.fqdns.length > SESSION_FQDNS_SHOWN ? session.fqdns.slice(0, SESSION_FQDNS_SHOWN) : session.fqdns,
      fqdnCount: session.fqdns.length,
    })),
    sessionsTotal: sessions.length,
  };
  const certificates = inputs.certificates.map((certificate) => ({
    names: certificate.names,
    source: certificate.source,
    origin: certificate.origin,
    notAfter: certificate.notAfter.toISOString(),
    expiresInDays: Math.floor((certificate.notAfter.getTime() - now) / 86_400_000),
  }));
  return {
    document(query = DEFAULT_STATUS_QUERY): GatewayStatus {
      const page = selectRoutes(inputs.state.routes, query);
      const routes = page.routes.map((spec) => {
        const totals = ownValue(report.routeTotals, spec.fqdn);
        return {
          fqdn: spec.fqdn,
          cluster: spec.cluster,
          rewrite: spec.rewrite,
          requests: totals?.requests ?? 0,
          errors: totals?.errors ?? 0,
          members: spec.members.map((address) => memberStatus(address, ownValue(report.members, address), now)),
        };
      });
      return {
        ...head,
        routes,
        routesTotal: page.total,
        routesMatched: page.matched,
        routesTruncated: page.matched > routes.length,
        routesQuery: { limit: query.limit, q: query.q, fqdn: query.fqdn },
        certificates,
      };
    },
  };
}

/**
 * The first `query.limit` routes (by fqdn, in code-unit order) among those the query selects, and
 * how many there are. One pass over the names (a record's keys come out faster than its values)
 * keeping a sorted page: no copy or sort of the whole table, and specs read for the page only.
 */
function selectRoutes(routes: Readonly<Record<string, RouteSpec>>, query: StatusQuery): { routes: RouteSpec[]; total: number; matched: number } {
  const fqdns = Object.keys(routes);
  const q = query.q === null ? null : query.q.toLowerCase();
  if (query.fqdn !== null) {
    const spec = ownValue(routes, query.fqdn);
    const matched = spec !== undefined && (q === null || spec.fqdn.includes(q)) ? 1 : 0;
    return { routes: matched && query.limit > 0 ? [spec!] : [], total: fqdns.length, matched };
  }
  const page: string[] = [];
  let matched = 0;
  for (const fqdn of fqdns) {
    if (q !== null && !fqdn.includes(q)) continue;
    matched++;
    if (page.length === query.limit && (query.limit === 0 || fqdn >= page[page.length - 1]!)) continue;
    let lo = 0;
    let hi = page.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (page[mid]! < fqdn) lo = mid + 1;
      else hi = mid;
    }
    page.splice(lo, 0, fqdn);
    if (page.length > query.limit) page.pop();
  }
  return { routes: page.map((fqdn) => routes[fqdn]!), total: fqdns.length, matched };
}

/**
 * `record[key]` when the record holds it as its own: a route named after an Object.prototype member
 * (`constructor`, `__proto__`) must not read what the prototype has under that name.
 */
function ownValue<T>(record: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
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
