import { createHash } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import { ConfigError } from '../domain/errors.js';
import type { Clock } from '../domain/clock.js';
import { DEFAULT_ALGORITHMS, type WorkloadConfig, type WorkloadIssuerConfig } from './config.js';
import { claimAttributes, matchWorkload, workloadBinding } from './workload-match.js';

/** Why a workload token was refused (safe to show and to audit). */
export class WorkloadAuthError extends Error {
  override name = 'WorkloadAuthError';
  constructor(message: string, readonly issuer?: string | undefined) {
    super(message);
  }
}

export interface VerifiedWorkload {
  readonly workload: string;
  readonly issuer: string;
  readonly subject: string | undefined;
  readonly attributes: Record<string, string>;
  readonly expiresAt: number;
  /** The job this token speaks for (workloadBinding): its requests and grants are bound to it. */
  readonly binding: string;
  /** sha256 of the token, to audit its first use once. */
  readonly tokenHash: string;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
/** Tokens from CI providers live minutes; refuse anything claiming to live longer than this. */
const MAX_LIFETIME_S = 24 * 3600;
/**
 * Cached JWKS lifetime: a key the issuer removed stops working at the next fetch, which is when a
 * token with an unknown key id arrives (at most once per cooldown) or, at the latest, this long
 * after the last fetch. Tokens with a known key id never cause a fetch before then.
 */
const JWKS_MAX_AGE_MS = 10 * 60_000;

export function looksLikeJwt(token: string): boolean {
  return token.length < 16_384 && JWT_SHAPE.test(token);
}

/**
 * Verifies OIDC JWTs from configured issuers (signature by the issuer's JWKS, fetched and cached
 * by jose, refetched when an unknown key id appears: key rotation), then finds the configured
 * workload whose claim conditions the token meets. `alg: none` and HMAC algorithms are never
 * accepted: the allow-list holds asymmetric algorithms only.
 */
export class WorkloadVerifier {
  readonly #issuers = new Map<string, { config: WorkloadIssuerConfig; algorithms: string[]; jwks?: ReturnType<typeof createRemoteJWKSet> }>();

  constructor(issuers: readonly WorkloadIssuerConfig[], private readonly workloads: readonly WorkloadConfig[], private readonly clock: Clock,
    private readonly fetchOptions: { cooldownMs?: number | undefined; cacheMaxAgeMs?: number | undefined } = {}) {
    for (const i of issuers) {
      const algorithms = [...(i.algorithms ?? DEFAULT_ALGORITHMS)];
      const bad = algorithms.find((a) => a === 'none' || /^HS/i.test(a));
      if (bad) throw new ConfigError(`workload issuer ${i.issuer}: algorithm ${bad} is not allowed (use an asymmetric algorithm)`);
      this.#issuers.set(i.issuer, { config: i, algorithms });
    }
    for (const w of workloads) {
      if (!this.#issuers.has(w.issuer)) throw new ConfigError(`workload ${w.name}: issuer ${w.issuer} is not among identity.workloadIssuers`);
      if (Object.keys(w.claims).length === 0) throw new ConfigError(`workload ${w.name}: give at least one claim condition (e.g. repository)`);
    }
  }

  get enabled(): boolean {
    return this.#issuers.size > 0;
  }

  async verify(token: string): Promise<VerifiedWorkload> {
    let iss: string | undefined;
    try {
      decodeProtectedHeader(token);
      iss = decodeJwt(token).iss;
    } catch {
      throw new WorkloadAuthError('not a JWT');
    }
    const issuer = iss === undefined ? undefined : this.#issuers.get(iss);
    if (!issuer || iss === undefined) throw new WorkloadAuthError('token issuer is not trusted', iss?.slice(0, 200));
    issuer.jwks ??= createRemoteJWKSet(await this.#jwksUri(issuer.config), {
      cooldownDuration: this.fetchOptions.cooldownMs ?? 30_000, cacheMaxAge: this.fetchOptions.cacheMaxAgeMs ?? JWKS_MAX_AGE_MS, timeoutDuration: 5000,
    });
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, issuer.jwks, {
        issuer: iss,
        audience: typeof issuer.config.audience === 'string' ? issuer.config.audience : [...issuer.config.audience],
        algorithms: issuer.algorithms,
        currentDate: this.clock.now(),
        clockTolerance: 5,
        requiredClaims: ['exp', 'iat'],
      }));
    } catch (e) {
      throw new WorkloadAuthError(describeJoseError(e), iss);
    }
    if (payload.exp! - payload.iat! > MAX_LIFETIME_S) throw new WorkloadAuthError('token lifetime is longer than 24h', iss);
    const match = matchWorkload(this.workloads, iss, payload);
    if (!match) throw new WorkloadAuthError('token claims match no configured workload', iss);
    const attributes = claimAttributes(payload);
    return {
      workload: match.name, issuer: iss, subject: payload.sub, attributes, expiresAt: payload.exp! * 1000,
      binding: workloadBinding(iss, payload.sub, payload),
      tokenHash: createHash('sha256').update(token).digest('hex'),
    };
  }

  async #jwksUri(config: WorkloadIssuerConfig): Promise<URL> {
    if (config.jwksUri) return new URL(config.jwksUri);
    const res = await fetch(`${config.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new WorkloadAuthError(`issuer discovery failed (HTTP ${res.status})`, config.issuer);
    const doc = (await res.json()) as { jwks_uri?: unknown; issuer?: unknown };
    if (doc.issuer !== config.issuer || typeof doc.jwks_uri !== 'string') throw new WorkloadAuthError('issuer discovery document is invalid', config.issuer);
    return new URL(doc.jwks_uri);
  }
}

function describeJoseError(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return 'token has expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) return `token claim ${e.claim} is invalid (${e.reason})`;
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'token algorithm is not allowed';
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'token was not signed by a key of its issuer';
  if (e instanceof joseErrors.JOSEError) return `token refused (${e.code})`;
  return 'token could not be verified';
}
