import { LayeredMap } from '../vhost/index.js';
import type { CertificateSpec, RouteSpec, RoutingState } from '../vhost/index.js';

/**
 * The control plane's truth about what is published, as plain data: the operator's static routes
 * and certificates, and the routes (and certificates) sessions publish. The only writer; each change
 * yields a new frozen {@link RoutingState} with the next version. A static route and a session route
 * never share an fqdn (sessions are refused names the operator's file holds).
 */
export class RoutingStateBuilder {
  #version = 0;
  #static = new Map<string, RouteSpec>();
  readonly #session = new Map<string, RouteSpec>();
  /** Every route, static and session, as of the last snapshot (immutable: snapshots share it). */
  #routes = LayeredMap.of<string, RouteSpec>();
  /** Changes since the last snapshot. */
  readonly #upserts = new Map<string, RouteSpec>();
  readonly #removals = new Set<string>();
  #snapshotVersion = 0;
  /** Session certificates by the fqdn they were published with. */
  readonly #sessionCertificates = new Map<string, CertificateSpec>();
  /** Default, operator and ACME certificates by key. */
  #gatewayCertificates = new Map<string, CertificateSpec>();
  #snapshot: RoutingState | undefined;
  #certificates: Readonly<Record<string, CertificateSpec>> | undefined;

  /** Replaces every static route. */
  setStatic(specs: readonly RouteSpec[]): void {
    const next = new Map(specs.map((spec) => [spec.fqdn, spec]));
    for (const fqdn of this.#static.keys()) if (!next.has(fqdn)) this.#record(fqdn, this.#session.get(fqdn));
    for (const [fqdn, spec] of next) if (this.#static.get(fqdn) !== spec) this.#record(fqdn, spec);
    this.#static = next;
    this.#changed(false);
  }

  /** Replaces the gateway's own certificates (default, operator files, ACME), keyed as in {@link RoutingState.certificates}. */
  setGatewayCertificates(certificates: ReadonlyMap<string, CertificateSpec>): void {
    this.#gatewayCertificates = new Map(certificates);
    this.#changed(true);
  }

  /** True when the operator's routes file holds this fqdn. */
  isStatic(fqdn: string): boolean {
    return this.#static.has(fqdn);
  }

  /** The session route published at this fqdn, if any. */
  sessionRoute(fqdn: string): RouteSpec | undefined {
    return this.#session.get(fqdn);
  }

  /** The certificate a session published with this fqdn, if any. */
  sessionCertificate(fqdn: string): CertificateSpec | undefined {
    return this.#sessionCertificates.get(fqdn);
  }

  /**
   * Publishes (or replaces) a session route with its certificate (`null`: none, so a certificate
   * published earlier for the fqdn stops being served; `undefined`: leave it as it is).
   */
  putSession(spec: RouteSpec, certificate?: CertificateSpec | null): void {
    // Spelled out, not `{ ...spec, members }`: V8 gives each object made that way and then frozen a
    // hidden class of its own (~200 bytes a route, 20 MB at 100k routes); this literal shares one.
    const frozen: RouteSpec = Object.freeze({
      fqdn: spec.fqdn,
      cluster: spec.cluster,
      // Published clusters' member lists are frozen already: shared, not copied.
      members: Object.isFrozen(spec.members) ? spec.members : Object.freeze([...spec.members]),
      rewrite: spec.rewrite,
      source: spec.source,
    });
    this.#session.set(spec.fqdn, frozen);
    if (!this.#static.has(spec.fqdn)) this.#record(spec.fqdn, frozen);
    let certificatesChanged = false;
    if (certificate === null) certificatesChanged = this.#sessionCertificates.delete(spec.fqdn);
    else if (certificate !== undefined) {
      const held = this.#sessionCertificates.get(spec.fqdn);
      if (held?.certPem !== certificate.certPem || held.keyPem !== certificate.keyPem) {
        const { source, certPem, keyPem, origin } = certificate;
        this.#sessionCertificates.set(spec.fqdn, Object.freeze({ source, certPem, keyPem, origin, servedFor: Object.freeze([spec.fqdn]) }));
        certificatesChanged = true;
      }
    }
    this.#changed(certificatesChanged);
  }

  /** Removes a session route and its certificate; returns false when there was none. */
  removeSession(fqdn: string): boolean {
    const removed = this.#session.delete(fqdn);
    if (removed && !this.#static.has(fqdn)) this.#record(fqdn, undefined);
    const hadCertificate = this.#sessionCertificates.delete(fqdn);
    if (removed || hadCertificate) this.#changed(hadCertificate);
    return removed;
  }

  /**
   * The current state, built once per change: the changes since the previous snapshot, and the whole
   * table as `routes`, made into a record only when someone reads it. Certificates keep their identity
   * while unchanged.
   */
  snapshot(): RoutingState {
    if (!this.#snapshot) {
      if (!this.#certificates) {
        const certificates: Record<string, CertificateSpec> = Object.create(null) as Record<string, CertificateSpec>;
        for (const [key, spec] of this.#gatewayCertificates) certificates[key] = spec;
        for (const [fqdn, spec] of this.#sessionCertificates) certificates[`session:${fqdn}`] = spec;
        this.#certificates = Object.freeze(certificates);
      }
      const changes = Object.freeze({
        base: this.#snapshotVersion,
        upserts: Object.freeze([...this.#upserts.values()]),
        removals: Object.freeze([...this.#removals]),
      });
      this.#routes = this.#routes.with(this.#upserts, this.#removals);
      this.#upserts.clear();
      this.#removals.clear();
      this.#snapshotVersion = this.#version;
      // An immutable map: the record can be made later, lazily, and still show this version.
      const routes = this.#routes;
      let record: Readonly<Record<string, RouteSpec>> | undefined;
      this.#snapshot = Object.freeze({
        version: this.#version,
        get routes(): Readonly<Record<string, RouteSpec>> {
          if (!record) {
            const built: Record<string, RouteSpec> = Object.create(null) as Record<string, RouteSpec>;
            for (const [fqdn, spec] of routes.entries()) built[fqdn] = spec;
            record = Object.freeze(built);
          }
          return record;
        },
        certificates: this.#certificates,
        changes,
      });
    }
    return this.#snapshot;
  }

  /** How many routes the last snapshot holds (counted without making its record). */
  get snapshotSize(): number {
    return this.#routes.size;
  }

  /** Sets (or, with undefined, removes) the route in force for `fqdn`, and notes the change. */
  #record(fqdn: string, spec: RouteSpec | undefined): void {
    if (spec) {
      this.#upserts.set(fqdn, spec);
      this.#removals.delete(fqdn);
    } else {
      this.#upserts.delete(fqdn);
      this.#removals.add(fqdn);
    }
  }

  #changed(certificates: boolean): void {
    this.#version++;
    this.#snapshot = undefined;
    if (certificates) this.#certificates = undefined;
  }
}
