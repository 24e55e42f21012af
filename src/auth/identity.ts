import type { AccessDeps } from '../access/context.js';
import { AnonymousFailures } from './throttle.js';
import { inTx } from '../access/context.js';
import { AppError } from '../domain/errors.js';
import type { Principal } from '../domain/principal.js';
import { newUserId } from '../domain/ids.js';
import { getUserById, getUserByName, toPrincipal } from '../store/users.js';
import { sessionSettings, type IdentityConfig } from './config.js';
import { MfaService } from './mfa.js';
import { OidcLogin } from './oidc.js';
import { authenticateSession, csrfMatches, readCookie, SESSION_COOKIE } from './sessions.js';
import { stampMfa, tokenMfaAt } from './stamps.js';
import { authenticateTokenWithId } from './tokens.js';
import { looksLikeJwt, WorkloadAuthError, WorkloadVerifier, type VerifiedWorkload } from './workload.js';

export interface AuthInput {
  readonly authorization?: string | undefined;
  readonly cookie?: string | undefined;
  readonly csrf?: string | undefined;
  readonly method: string;
  readonly ip: string;
}

export interface AuthResult {
  readonly principal: Principal;
  readonly tokenId?: string | undefined;
  readonly sessionId?: string | undefined;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Who is calling: an API token (`Authorization: Bearer hp_tok_...`), a workload's OIDC JWT
 * (`Authorization: Bearer eyJ...`), or a web session cookie (state-changing calls must carry the
 * CSRF header). An `X-Hallpass-MFA` code is checked separately (`stepUp`), once the request is
 * known to be valid, so a call refused for its input does not spend the code.
 */
export class Identity {
  readonly mfa: MfaService;
  readonly workloads: WorkloadVerifier;
  readonly oidc: OidcLogin | undefined;
  readonly settings: ReturnType<typeof sessionSettings>;
  /** Workload-token and SSO-callback failures per client address (audited up to a budget). */
  readonly anonymousFailures = new AnonymousFailures();

  constructor(readonly deps: AccessDeps, readonly config: IdentityConfig, readonly csrfKey: Buffer, readonly baseUrl: () => string,
    opts: { jwksCooldownMs?: number } = {}) {
    this.mfa = new MfaService(deps, config.mfa);
    this.workloads = new WorkloadVerifier(config.workloadIssuers ?? [], config.workloads ?? [], deps.clock, { cooldownMs: opts.jwksCooldownMs });
    this.oidc = config.oidc ? new OidcLogin(deps, config.oidc, () => `${baseUrl()}/api/v1/auth/oidc/callback`) : undefined;
    this.settings = sessionSettings(config.sessions);
  }

  async authenticate(input: AuthInput): Promise<AuthResult> {
    return this.#identify(input, this.deps.clock.now().getTime());
  }

  /**
   * An MFA code sent with a call (`X-Hallpass-MFA`): checks it (a TOTP code is spent, a recovery
   * code used up) and stamps the caller's token or session. Workloads have no MFA: unchanged.
   */
  async stepUp(caller: AuthResult, code: string, ip: string, purpose: string): Promise<AuthResult> {
    if (caller.principal.kind !== 'user') return caller;
    const at = await this.mfa.verify(caller.principal, code.trim(), ip, purpose);
    await stampMfa(this.deps.store.db, caller, at);
    return { ...caller, principal: { ...caller.principal, mfaAt: at } };
  }

  async #identify(input: AuthInput, now: number): Promise<AuthResult> {
    const m = input.authorization ? /^Bearer ([^\s]+)$/i.exec(input.authorization) : null;
    if (m) {
      const bearer = m[1]!;
      if (this.workloads.enabled && looksLikeJwt(bearer)) return { principal: await this.#workload(bearer, input.ip, now) };
      const auth = await authenticateTokenWithId(this.deps.store.db, bearer, now);
      if (!auth) throw new AppError('unauthenticated', 'invalid, expired or revoked token (run: hallpass login)');
      return { principal: toPrincipal(auth.user, await tokenMfaAt(this.deps.store.db, auth.tokenId)), tokenId: auth.tokenId };
    }
    const cookie = readCookie(input.cookie, SESSION_COOKIE);
    if (cookie === undefined) throw new AppError('unauthenticated', 'missing bearer token (run: hallpass login)');
    const session = await authenticateSession(this.deps.store.db, cookie, now, this.settings);
    if (!session) throw new AppError('unauthenticated', 'your session has ended: sign in again');
    if (!SAFE_METHODS.has(input.method) && !csrfMatches(cookie, input.csrf, this.csrfKey)) {
      throw new AppError('forbidden', 'missing or wrong CSRF token (send the X-Hallpass-CSRF header from GET /api/v1/auth/session)');
    }
    const user = await getUserById(this.deps.store.db, session.userId);
    if (!user) throw new AppError('unauthenticated', 'your session has ended: sign in again');
    return { principal: toPrincipal(user, session.mfaAt), sessionId: session.id };
  }

  async #workload(jwt: string, ip: string, now: number): Promise<Principal> {
    let v: VerifiedWorkload;
    try {
      v = await this.workloads.verify(jwt);
    } catch (e) {
      const why = e instanceof WorkloadAuthError ? e.message : 'token could not be verified';
      const { audit: audited, suppressed } = this.anonymousFailures.failed(ip, now);
      if (audited) await inTx(this.deps, async (_tx, audit) => {
        audit({ type: 'auth.workload_failed', actor: 'anonymous', at: now, data: {
          why, issuer: e instanceof WorkloadAuthError ? e.issuer ?? null : null, clientAddress: ip, ...(suppressed > 0 ? { suppressed } : {}),
        } });
      });
      throw new AppError('unauthenticated', `workload token refused: ${why}`);
    }
    const row = await inTx(this.deps, async (tx, audit) => {
      const existing = await getUserByName(tx, v.workload);
      if (existing && existing.source !== 'workload') throw new AppError('forbidden', `workload name ${v.workload} is taken by a ${existing.source} user`);
      if (existing?.disabled) throw new AppError('forbidden', `workload ${v.workload} is disabled`);
      let r = existing;
      if (!r) {
        // Two first calls of a new workload may race: insert-if-absent, then read whichever row won.
        const made = await tx.insertInto('users').values({
          id: newUserId(), name: v.workload, kind: 'workload', email: null, password_hash: null, groups: '[]', attributes: '{}',
          is_admin: 0, source: 'workload', disabled: 0, created_at: now, updated_at: now,
        }).onConflict((oc) => oc.column('name').doNothing()).executeTakeFirst();
        if (Number(made.numInsertedOrUpdatedRows ?? 0n) > 0) audit({ type: 'user.created', actor: 'system', at: now, data: { user: v.workload, source: 'workload', issuer: v.issuer } });
        r = await getUserByName(tx, v.workload);
        if (!r || r.source !== 'workload') throw new AppError('forbidden', `workload name ${v.workload} is taken`);
      }
      const seen = await tx.insertInto('workload_tokens_seen').values({ token_hash: v.tokenHash, expires_at: v.expiresAt })
        .onConflict((oc) => oc.column('token_hash').doNothing()).executeTakeFirst();
      if (Number(seen.numInsertedOrUpdatedRows ?? 0n) > 0) {
        await tx.deleteFrom('workload_tokens_seen').where('expires_at', '<', now - 3600_000).execute();
        audit({ type: 'auth.workload', actor: v.workload, at: now, data: {
          workload: v.workload, issuer: v.issuer, subject: v.subject ?? null, repository: v.attributes.repository ?? null,
          ref: v.attributes.ref ?? null, environment: v.attributes.environment ?? null, expiresAt: v.expiresAt, clientAddress: ip,
        } });
      }
      return r;
    });
    // Attributes come from this token, not the stored row: concurrent jobs of one workload never see each other's claims,
    // and the binding ties the requests and grants this job makes to this job alone.
    return { ...toPrincipal(row), attributes: v.attributes, holderBinding: v.binding };
  }

  /**
   * Password login's second step: nothing for users without MFA; otherwise a TOTP (or recovery)
   * code is required and checked. Returns when MFA passed, to stamp the token issued.
   */
  async loginSecondFactor(user: { id: string; name: string; kind: 'user' | 'workload' }, code: string | undefined, ip: string): Promise<number | undefined> {
    if (!(await this.mfa.isEnrolled(user.id))) return undefined;
    if (!code) throw new AppError('mfa_required', 'this account uses MFA: give your TOTP code (or a recovery code) too', { reason: 'login' });
    return this.mfa.verify(user, code, ip, 'login');
  }
}
