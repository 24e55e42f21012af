import type { Static } from '@sinclair/typebox';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { inTx } from '../../access/context.js';
import type { Identity } from '../../auth/identity.js';
import { cliChallengeOf, hashCode, issueLoginTokens, revokeEverything, revokeRefreshFor, spendRefreshToken, type LoginTokens } from '../../auth/login-tokens.js';
import { newCliCode } from '../../auth/oidc.js';
import { SsoRefused } from '../../auth/oidc-claims.js';
import { createSession, csrfTokenFor, readCookie, revokeSession, SESSION_COOKIE, sessionCookie } from '../../auth/sessions.js';
import { stampMfa } from '../../auth/stamps.js';
import { AppError, badRequest, notFound } from '../../domain/errors.js';
import { getUserById, getUserByName } from '../../store/users.js';
import { principalOf, requireAdmin } from '../auth.js';
import type { ApiContext } from '../context.js';
import { ErrorBody } from '../schemas.js';
import {
  CodeBody, LoginTokensView, MfaStatusView, OidcCliBody, OidcExchangeBody, RefreshBody, ResetMfaBody, UserNameParams,
} from './identity-schemas.js';

/** Routes that need no credentials (the auth hook lets them through). */
export const IDENTITY_PUBLIC_PATHS = [
  '/api/v1/auth/oidc/start', '/api/v1/auth/oidc/cli', '/api/v1/auth/oidc/callback', '/api/v1/auth/oidc/exchange', '/api/v1/auth/refresh',
] as const;

const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 429: ErrorBody };
const iso = (ms: number) => new Date(ms).toISOString();
const LOOPBACK = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}(\/[A-Za-z0-9/_-]*)?$/;
const CLI_CODE_TTL_MS = 5 * 60_000;
/** Recovery-code regeneration needs an MFA check this recent. */
const FRESH_MS = 5 * 60_000;

export function identityRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const id = ctx.identity;
  if (!id) return;
  const { deps } = ctx;
  const db = deps.store.db;
  const now = () => deps.clock.now().getTime();
  const user = (req: FastifyRequest) => {
    const p = principalOf(req);
    if (p.kind !== 'user') throw new AppError('forbidden', 'only people have MFA and sessions, not workloads');
    return p;
  };

  // A policy MFA challenge (request/approve/connect without a fresh check) is on the record too.
  app.addHook('onError', async (req, _reply, err) => {
    if (!(err instanceof AppError) || err.code !== 'mfa_required' || err.details?.freshnessSeconds === undefined || !req.principal) return;
    const who = req.principal.name;
    await inTx(deps, async (_tx, audit) => {
      audit({ type: 'mfa.challenged', actor: who, at: now(), data: { method: req.method, route: req.routeOptions.url ?? null, why: err.message, clientAddress: req.ip } });
    });
  });

  // --- TOTP MFA ---
  app.get('/api/v1/auth/mfa', { schema: { tags: ['identity'], summary: 'Your MFA status', response: { 200: MfaStatusView, ...errors } } },
    async (req) => id.mfa.status(user(req).id));

  app.post('/api/v1/auth/mfa/enroll', {
    schema: { tags: ['identity'], summary: 'Start TOTP enrolment (returns the secret and otpauth:// URI once)', response: { ...errors } },
  }, async (req) => id.mfa.enroll(user(req), req.ip));

  app.post('/api/v1/auth/mfa/confirm', {
    schema: { tags: ['identity'], summary: 'Confirm enrolment with a first code; returns recovery codes once', body: CodeBody, response: { ...errors } },
  }, async (req) => ({ recoveryCodes: await id.mfa.confirm(user(req), (req.body as Static<typeof CodeBody>).code, req.ip) }));

  app.post('/api/v1/auth/mfa/verify', {
    schema: { tags: ['identity'], summary: 'Step up: a code stamps this token or session as MFA-fresh', body: CodeBody, response: { ...errors } },
  }, async (req) => {
    const at = await id.mfa.verify(user(req), (req.body as Static<typeof CodeBody>).code.trim(), req.ip, 'step-up');
    await stampMfa(db, { tokenId: req.tokenId, sessionId: req.sessionId }, at);
    return { mfaAt: iso(at) };
  });

  app.post('/api/v1/auth/mfa/recovery-codes', {
    schema: { tags: ['identity'], summary: 'New recovery codes (needs a fresh MFA check)', response: { ...errors } },
  }, async (req) => {
    const p = user(req);
    if (p.mfaAt === undefined || now() - p.mfaAt > FRESH_MS) throw new AppError('mfa_required', 'send a fresh MFA code (X-Hallpass-MFA) to get new recovery codes', { freshnessSeconds: FRESH_MS / 1000 });
    return { recoveryCodes: await id.mfa.regenerateRecoveryCodes(p, req.ip) };
  });

  app.post('/api/v1/users/:name/mfa/reset', {
    schema: { tags: ['identity'], summary: "Admin: remove a user's MFA (lost device)", params: UserNameParams, body: ResetMfaBody, response: { ...errors } },
  }, async (req) => {
    const admin = requireAdmin(req);
    const target = await getUserByName(db, (req.params as Static<typeof UserNameParams>).name);
    if (!target) throw notFound('no such user');
    return { reset: await id.mfa.reset(admin, target.id, target.name, (req.body as Static<typeof ResetMfaBody>).reason) };
  });

  // --- sessions and tokens ---
  app.get('/api/v1/auth/session', { schema: { tags: ['identity'], summary: 'The web session: who, and its CSRF token', response: { ...errors } } }, async (req) => {
    const p = user(req);
    const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (!req.sessionId || !cookie) throw badRequest('this call is for web sessions (cookie), not API tokens');
    return { user: p.name, csrfToken: csrfTokenFor(cookie, id.csrfKey), mfaAt: p.mfaAt === undefined ? null : iso(p.mfaAt) };
  });

  app.post('/api/v1/auth/signout', { schema: { tags: ['identity'], summary: 'End this token (and its refresh token) or web session', response: { ...errors } } }, async (req, reply) => {
    const p = principalOf(req);
    const at = now();
    await inTx(deps, async (tx, audit) => {
      if (req.tokenId) {
        await tx.updateTable('api_tokens').set({ revoked_at: at }).where('id', '=', req.tokenId).where('revoked_at', 'is', null).execute();
        await revokeRefreshFor(tx, req.tokenId, at);
      }
      if (req.sessionId) await revokeSession(tx, req.sessionId, at);
      audit({ type: 'auth.logout', actor: p.name, at, data: { via: req.sessionId ? 'web_session' : 'api_token', clientAddress: req.ip } });
    });
    if (req.sessionId) void reply.header('set-cookie', sessionCookie('', 0, secure(req, ctx)));
    return { ok: true };
  });

  app.post('/api/v1/auth/signout-everywhere', { schema: { tags: ['identity'], summary: 'Revoke every token, refresh token and web session of yours', response: { ...errors } } }, async (req, reply) => {
    const p = user(req);
    const at = now();
    const n = await inTx(deps, async (tx, audit) => {
      const r = await revokeEverything(tx, p.id, at);
      audit({ type: 'auth.logout_everywhere', actor: p.name, at, data: { apiTokensRevoked: r.tokens, sessionsEnded: r.sessions, clientAddress: req.ip } });
      return r;
    });
    if (req.sessionId) void reply.header('set-cookie', sessionCookie('', 0, secure(req, ctx)));
    return { apiTokensRevoked: n.tokens, sessionsEnded: n.sessions };
  });

  app.post('/api/v1/auth/refresh', {
    schema: { tags: ['identity'], summary: 'Trade a refresh token for a new access + refresh token (each refresh token works once)', body: RefreshBody, response: { 200: LoginTokensView, ...errors } },
  }, async (req) => {
    const at = now();
    const out = await inTx(deps, async (tx, audit) => {
      const spent = await spendRefreshToken(tx, (req.body as Static<typeof RefreshBody>).refreshToken, at);
      if (!spent) return undefined;
      const u = await getUserById(tx, spent.userId);
      if (spent.reuse || !u) {
        await revokeEverything(tx, spent.userId, at);
        audit({ type: 'auth.refresh_reused', actor: u?.name ?? 'unknown', at, data: { action: 'revoked every token and session', clientAddress: req.ip } });
        return 'reuse' as const;
      }
      const t = await issueLoginTokens(tx, u.id, 'refresh', at, id.settings.accessTokenSeconds, id.settings.refreshTokenMs);
      audit({ type: 'token.issued', actor: u.name, at, data: { via: 'refresh', handle: t.access.id, clientAddress: req.ip } });
      return { t, name: u.name };
    });
    if (!out || out === 'reuse') throw new AppError('unauthenticated', 'refresh token is invalid, expired or already used (run: hallpass login)');
    return tokensView(out.t, out.name);
  });

  // --- OIDC single sign-on ---
  const oidc = id.oidc;
  app.get('/api/v1/auth/oidc/start', { schema: { tags: ['identity'], summary: 'Web SSO: redirects to the identity provider', response: { ...errors } } }, async (req, reply) => {
    if (!oidc) throw notFound('single sign-on is not configured');
    // Binds the login to this browser: the callback must come back with the same cookie.
    const binding = randomBytes(32).toString('base64url');
    const url = await oidc.begin('web', { challenge: cliChallengeOf(binding) });
    void reply.header('set-cookie', bindingCookie(binding, 600, secure(req, ctx)));
    return reply.redirect(url.href, 302);
  });

  app.post('/api/v1/auth/oidc/cli', {
    schema: { tags: ['identity'], summary: 'CLI SSO: the provider URL to open; the result comes back to the loopback redirect (or as a code to paste)', body: OidcCliBody, response: { ...errors } },
  }, async (req) => {
    if (!oidc) throw notFound('single sign-on is not configured');
    const body = req.body as Static<typeof OidcCliBody>;
    if (body.redirect !== undefined && !LOOPBACK.test(body.redirect)) throw badRequest('redirect must be a loopback URL such as http://127.0.0.1:PORT/callback');
    return { authorizationUrl: (await oidc.begin('cli', { redirect: body.redirect, challenge: body.challenge })).href };
  });

  app.get('/api/v1/auth/oidc/callback', { schema: { tags: ['identity'], summary: 'The identity provider returns here', response: { ...errors } } }, async (req, reply) => {
    if (!oidc) throw notFound('single sign-on is not configured');
    const at = now();
    let done;
    try {
      done = await oidc.finish(new URL(req.url, `http://${req.headers.host ?? 'localhost'}`), req.ip, readCookie(req.headers.cookie, BINDING_COOKIE));
    } catch (e) {
      if (!(e instanceof SsoRefused)) throw e;
      await inTx(deps, async (_tx, audit) => {
        audit({ type: 'auth.login_failed', actor: 'anonymous', at, data: { method: 'oidc', why: e.message, clientAddress: req.ip } });
      });
      throw new AppError('unauthenticated', `single sign-on failed: ${e.message}`);
    }
    if (done.mode === 'web') {
      void reply.header('set-cookie', bindingCookie('', 0, secure(req, ctx)));
      return startWebSession(id, req, reply, done.user.id, done.user.name, ctx);
    }
    const code = newCliCode();
    await inTx(deps, async (tx) => {
      await tx.deleteFrom('cli_login_codes').where('expires_at', '<', at).execute();
      await tx.insertInto('cli_login_codes').values({ code_hash: hashCode(code), user_id: done.user.id, challenge: done.cliChallenge ?? '', expires_at: at + CLI_CODE_TTL_MS, used_at: null }).execute();
    });
    if (done.cliRedirect) return reply.redirect(`${done.cliRedirect}?code=${code}`, 302);
    return reply.type('text/plain; charset=utf-8').send(`Signed in as ${done.user.name}. Paste this code into the hallpass CLI:\n\n${code}\n`);
  });

  app.post('/api/v1/auth/oidc/exchange', {
    schema: { tags: ['identity'], summary: 'CLI SSO: redeem the one-time code with the verifier for tokens', body: OidcExchangeBody, response: { 200: LoginTokensView, ...errors } },
  }, async (req) => {
    const body = req.body as Static<typeof OidcExchangeBody>;
    const at = now();
    const out = await inTx(deps, async (tx, audit) => {
      // Race-safe: the code is spent by one conditional UPDATE, and only with the matching verifier.
      const row = await tx.updateTable('cli_login_codes').set({ used_at: at })
        .where('code_hash', '=', hashCode(body.code)).where('used_at', 'is', null).where('expires_at', '>', at)
        .where('challenge', '=', cliChallengeOf(body.verifier)).returningAll().executeTakeFirst();
      if (!row) return undefined;
      const u = await getUserById(tx, row.user_id);
      if (!u || u.disabled !== 0) return undefined;
      const t = await issueLoginTokens(tx, u.id, 'sso-cli', at, id.settings.accessTokenSeconds, id.settings.refreshTokenMs);
      audit({ type: 'token.issued', actor: u.name, at, data: { via: 'oidc', handle: t.access.id, clientAddress: req.ip } });
      return { t, name: u.name };
    });
    if (!out) throw new AppError('unauthenticated', 'login code is invalid, expired, already used, or not yours');
    return tokensView(out.t, out.name);
  });

  app.get('/api/v1/auth/workload', { schema: { tags: ['identity'], summary: 'Who a workload token authenticates as (for pipelines to check)', response: { ...errors } } }, async (req) => {
    const p = principalOf(req);
    if (p.kind !== 'workload') throw badRequest('call this with a workload OIDC token');
    return { workload: p.name, attributes: p.attributes };
  });
}

function tokensView(t: LoginTokens, user: string) {
  return { token: t.access.token, expiresAt: iso(t.access.expiresAt ?? 0), refreshToken: t.refreshToken, refreshExpiresAt: iso(t.refreshExpiresAt), user };
}

const BINDING_COOKIE = 'hallpass_oidc';
function bindingCookie(value: string, maxAge: number, secureFlag: boolean): string {
  return [`${BINDING_COOKIE}=${value}`, 'Path=/api/v1/auth/oidc', 'HttpOnly', 'SameSite=Lax', `Max-Age=${maxAge}`, ...(secureFlag ? ['Secure'] : [])].join('; ');
}

/** Secure cookies whenever the API is reached over TLS (directly, or per its public https:// URL). */
function secure(req: FastifyRequest, ctx: ApiContext): boolean {
  return req.protocol === 'https' || (ctx.identity?.baseUrl().startsWith('https:') ?? false);
}

async function startWebSession(id: Identity, req: FastifyRequest, reply: FastifyReply, userId: string, name: string, ctx: ApiContext) {
  const at = id.deps.clock.now().getTime();
  const s = await inTx(id.deps, async (tx, audit) => {
    const created = await createSession(tx, userId, at, id.settings);
    audit({ type: 'session.created', actor: name, at, data: { handle: created.id, clientAddress: req.ip } });
    return created;
  });
  void reply.header('set-cookie', sessionCookie(s.cookie, Math.floor(id.settings.absoluteMs / 1000), secure(req, ctx)));
  return reply.redirect('/', 302);
}
