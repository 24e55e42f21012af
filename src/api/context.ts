import type { AccessDeps } from '../access/context.js';
import type { Identity } from '../auth/identity.js';
import type { Principal } from '../domain/principal.js';
import type { GrantRow } from '../store/grants.js';
import type { Metrics } from '../server/metrics.js';
import type { ConnectionInfo } from '../providers/provider.js';

/** A connection through the gateway, with what the client needs to verify it (verify-full). */
export interface GatewayConnectionInfo extends ConnectionInfo {
  /** PEM: the CA that issued the gateway's certificate, or the self-signed certificate itself. */
  readonly caPem: string;
}

/** What the gateway offers the API: a connection through it for one grant. */
export interface GatewayAccess {
  connectionFor(grant: GrantRow, user: Principal, opts?: { reusable?: boolean }): GatewayConnectionInfo;
}

export interface ApiContext {
  readonly deps: AccessDeps;
  readonly metrics: Metrics;
  readonly gateway?: GatewayAccess | undefined;
  readonly log: (line: string) => void;
  /** MFA, web sessions, SSO and workload identity (src/auth/identity.ts). */
  readonly identity?: Identity | undefined;
  /** Reverse proxies whose X-Forwarded-For gives the client address (config trustedProxies). */
  readonly trustedProxies?: readonly string[] | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
    tokenId?: string;
    sessionId?: string;
  }
}
