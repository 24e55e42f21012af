/** Identity settings (the `identity:` section of the server config). Every part is optional. */
export interface IdentityConfig {
  readonly oidc?: OidcConfig | undefined;
  readonly workloadIssuers?: readonly WorkloadIssuerConfig[] | undefined;
  readonly workloads?: readonly WorkloadConfig[] | undefined;
  readonly mfa?: MfaConfig | undefined;
  readonly sessions?: SessionConfig | undefined;
  /** Minimum time between JWKS refetches on an unknown key id (default 30 s; tests use 0). */
  readonly jwksCooldownMs?: number | undefined;
}

export interface OidcConfig {
  /** e.g. https://login.example.com (its /.well-known/openid-configuration is read at start). */
  readonly issuer: string;
  readonly clientId: string;
  /** Client secret (for confidential clients); omit for public clients using PKCE only. */
  readonly clientSecret?: string | undefined;
  /** Default ['openid', 'email', 'profile']; add e.g. 'groups' if the provider needs it. */
  readonly scopes?: readonly string[] | undefined;
  /** Claim holding the user's groups (default 'groups'). */
  readonly groupsClaim?: string | undefined;
  /** IdP group -> hallpass group(s). Groups not listed are dropped; omit to keep them as they are. */
  readonly groupMap?: Readonly<Record<string, string | readonly string[]>> | undefined;
  /** hallpass groups whose members are admins. */
  readonly adminGroups?: readonly string[] | undefined;
  /** Only emails in these domains may sign in (lowercase, e.g. ['example.com']); omit to allow any verified email. */
  readonly allowedEmailDomains?: readonly string[] | undefined;
  /** Claim used as the hallpass user name (default 'email'; its local part is not used, the full value is). */
  readonly usernameClaim?: string | undefined;
  /** Allow http:// issuers (local development and tests only). */
  readonly allowInsecureHttp?: boolean | undefined;
}

export interface WorkloadIssuerConfig {
  /** Exact `iss` value, e.g. https://token.actions.githubusercontent.com */
  readonly issuer: string;
  /** Default: discovered from `${issuer}/.well-known/openid-configuration`. */
  readonly jwksUri?: string | undefined;
  /** Required `aud` value(s). */
  readonly audience: string | readonly string[];
  /** Allowed algorithms (default RS256, ES256, PS256, EdDSA; `none` and HMAC are never accepted). */
  readonly algorithms?: readonly string[] | undefined;
  /** Allow http:// issuer/JWKS URLs (local testing only; the config file refuses them otherwise). */
  readonly allowInsecureHttp?: boolean | undefined;
}

export interface WorkloadConfig {
  /** The workload's name, as policy rules list it under `who.workloads`. */
  readonly name: string;
  readonly issuer: string;
  /**
   * Claim conditions, all of which must hold: exact string, or a glob with `*` (e.g.
   * `ref: refs/heads/*`). A list means any of its values. Arrays in the token match when any element does.
   */
  readonly claims: Readonly<Record<string, string | readonly string[]>>;
}

export interface MfaConfig {
  /** Issuer label shown in authenticator apps (default 'hallpass'). */
  readonly issuerLabel?: string | undefined;
  /** How many recovery codes enrolment hands out (default 10). */
  readonly recoveryCodes?: number | undefined;
}

export interface SessionConfig {
  /** Web session idle timeout (default 30 minutes). */
  readonly idleSeconds?: number | undefined;
  /** Web session absolute lifetime (default 12 hours). */
  readonly absoluteSeconds?: number | undefined;
  /** Access token lifetime for SSO/CLI logins (default 1 hour). */
  readonly accessTokenSeconds?: number | undefined;
  /**
   * Refresh token lifetime (default 12 hours). Refreshing does not ask the IdP again, so this bounds
   * how long someone removed at the IdP keeps access: keep it short.
   */
  readonly refreshTokenSeconds?: number | undefined;
}

export const DEFAULT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;

export function sessionSettings(c: SessionConfig | undefined) {
  return {
    idleMs: (c?.idleSeconds ?? 30 * 60) * 1000,
    absoluteMs: (c?.absoluteSeconds ?? 12 * 3600) * 1000,
    accessTokenSeconds: c?.accessTokenSeconds ?? 3600,
    refreshTokenMs: (c?.refreshTokenSeconds ?? 12 * 3600) * 1000,
  };
}
