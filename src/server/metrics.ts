import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AccessMetrics } from '../access/context.js';
import type { GrantStatusCol, RequestStatusCol } from '../store/schema.js';

const REQUEST_STATUSES: readonly RequestStatusCol[] = ['pending', 'approved', 'denied', 'cancelled', 'expired'];
const GRANT_STATUSES: readonly GrantStatusCol[] = ['scheduled', 'activating', 'active', 'revoking', 'revoke_failed', 'expired', 'revoked'];

/** Prometheus metrics for /metrics. One registry per server (tests run several). */
export class Metrics implements AccessMetrics {
  readonly registry = new Registry();
  readonly httpRequests = new Counter({
    name: 'hallpass_http_requests_total', help: 'HTTP API requests by route and status',
    labelNames: ['method', 'route', 'status'], registers: [this.registry],
  });
  readonly activeGrants = new Gauge({ name: 'hallpass_active_grants', help: 'Grants currently active', registers: [this.registry] });
  readonly accessRequests = new Gauge({
    name: 'hallpass_access_requests', help: 'Access requests by status, as stored', labelNames: ['status'], registers: [this.registry],
  });
  readonly grants = new Gauge({ name: 'hallpass_grants', help: 'Grants by status, as stored', labelNames: ['status'], registers: [this.registry] });
  readonly revokeFailures = new Counter({
    name: 'hallpass_revocation_failures_total', help: 'Failed revocation attempts by resource', labelNames: ['resource'], registers: [this.registry],
  });
  readonly expiryLag = new Histogram({
    name: 'hallpass_expiry_lag_seconds', help: 'Seconds from a grant\'s end to its access being gone on the target',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300], registers: [this.registry],
  });
  readonly activations = new Counter({ name: 'hallpass_grant_activations_total', help: 'Grants activated', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'hallpass_' });
  }

  /** Sets the by-status gauges from counts read at scrape time; a status with no rows reads 0. */
  setCounts(requests: ReadonlyMap<string, number>, grants: ReadonlyMap<string, number>): void {
    for (const status of REQUEST_STATUSES) this.accessRequests.set({ status }, requests.get(status) ?? 0);
    for (const status of GRANT_STATUSES) this.grants.set({ status }, grants.get(status) ?? 0);
    this.activeGrants.set(grants.get('active') ?? 0);
  }

  expiryLagSeconds(seconds: number): void {
    this.expiryLag.observe(seconds);
  }
  revokeFailure(resource: string): void {
    this.revokeFailures.inc({ resource });
  }
  grantActivated(): void {
    this.activations.inc();
  }
}
