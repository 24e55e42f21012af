/**
 * What the gateway needs from the rest of hallpass. The core implements GatewayAuthority and
 * GatewayAuditSink; the gateway never touches the store, the policy or the providers directly.
 */

import type { AuditSink } from '../audit/sink.js';
import type { AuditEventInput } from '../audit/types.js';

export type RefusalCode = 'bad_token' | 'replayed' | 'expired' | 'revoked' | 'wrong_resource' | 'not_owner' | 'not_active';

export interface AuthorizeInput {
  /** The password the client presented: a gateway token (see tokens.ts). */
  readonly token: string;
  /** The startup `user`: the hallpass user name the client claims to be. */
  readonly user: string;
  /** The startup `database`: the resource name. */
  readonly resource: string;
  /** "ip:port" of the client. */
  readonly clientAddress: string;
  readonly tls: boolean;
}

export type AuthorizeResult =
  | { readonly ok: true; readonly session: AuthorizedSession }
  | {
      readonly ok: false;
      readonly code: RefusalCode;
      readonly message: string;
      /** The grant the (authentic) token names, when it got that far: for the audit event only. */
      readonly grantId?: string;
    };

export interface GatewayAuthority {
  /**
   * Verify a gateway token presented as the password for `resource`. Tokens are single-use:
   * a second use is 'replayed'. Never throws for a "no"; a thrown error is refused as an
   * internal fault (the client sees no detail).
   */
  authorize(input: AuthorizeInput): Promise<AuthorizeResult>;
}

export interface UpstreamTls {
  /** PEM CA bundle to verify the target with; omitted = system CAs. */
  readonly ca?: string;
  /** Default true. */
  readonly rejectUnauthorized?: boolean;
  /** Check the certificate names the target host (or `servername`); default true. false = libpq's verify-ca. */
  readonly verifyHostname?: boolean;
  /** The name to verify and send as SNI; default the target host (an IP address is verified, not sent as SNI). */
  readonly servername?: string;
}

export interface AuthorizedSession {
  readonly grantId: string;
  readonly userId: string;
  readonly userName: string;
  readonly resource: string;
  readonly role: string;
  /** The grant's end: the session is cut at this instant at the latest. */
  readonly expiresAt: Date;
  /** The grant's injected target credential. Never sent to the client, never audited. */
  readonly upstream: {
    readonly host: string;
    readonly port: number;
    readonly database: string;
    readonly user: string;
    readonly password: string;
    readonly ssl?: UpstreamTls | false;
  };
  /** Statement classes denied for this role (see guardrails.ts GUARDRAILS). */
  readonly guardrails: readonly string[];
  /** Sets default_transaction_read_only upstream and denies ways out of it. */
  readonly readOnly: boolean;
  /** Store Bind parameter values in statement audit events (off by default: they may hold PII). */
  readonly storeParameters: boolean;
}

/** An audit event as the gateway records it: an AuditEventInput that always has data and a Date. */
export interface GatewayAuditEvent extends AuditEventInput {
  /** gateway.session.start | gateway.session.end | gateway.refused | gateway.query | gateway.statement | gateway.execute | gateway.function_call */
  readonly type: string;
  /** The hallpass user name, or the claimed user for refused attempts. */
  readonly actor: string;
  readonly grantId?: string;
  readonly data: Record<string, unknown>;
  readonly at: Date;
}

/** Appends gateway events durably, in order, in batches (the core passes storeSink). */
export type GatewayAuditSink = AuditSink<GatewayAuditEvent>;
