import type { Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { inTx } from '../../access/context.js';
import type { Identity } from '../../auth/identity.js';
import { issueLoginTokens, revokeEverything, spendRefreshToken } from '../../auth/login-tokens.js';
import { dummyVerify, verifyPassword } from '../../auth/password.js';
import { createSession, csrfTokenFor, readCookie, SESSION_COOKIE, sessionCookie } from '../../auth/sessions.js';
import { stampMfa } from '../../auth/stamps.js';
import { refusalMessage } from '../../auth/throttle.js';
import { AppError, badRequest } from '../../domain/errors.js';
import type { Principal } from '../../domain/principal.js';
import { getUserById, getUserByName } from '../../store/users.js';
import type { ApiContext } from '../context.js';
import type { LoginLimiter } from '../rate-limit.js';
import { LoginBody } from '../schemas.js';
import { auditAnonymousFailure, errors, iso, secure, signOutHere, tokensView } from './identity-http.js';
import { LoginTokensView, RefreshBody } from './identity-schemas.js';

/** Web session login (local users) and info, sign-out (this credential / everywhere), refresh-token rotation. */
export function sessionRoutes(app: FastifyInstance, ctx: ApiContext, id: Identity, user: (req: FastifyRequest) => Principal, limiter: LoginLimiter): void {
  const { deps } = ctx;
  const now = () => deps.clock.now().getTime();

  app.post('/api/v1/auth/web-login', {
    schema: { tags: ['identity'], summary: 'Local user web sign-in: password (+ TOTP when enrolled) -> session cookie', body: LoginBody, response: { ...errors } },
  }, async (req, reply) => {
    const body = req.body as Static<typeof LoginBody>;
    const at = now();
    const attempt = limiter.begin(body.username, req.ip, at);
    if (attempt.refused) throw new AppError('rate_limited', refusalMessage(attempt, 'login'));
    let row: Awaited<ReturnType<typeof getUserByName>>;
    let ok = false;
    try {
      row = await getUserByName(deps.store.db, body.username);
      ok = Boolean(row && row.disabled === 0 && row.kind === 'user' && row.password_hash
        ? await verifyPassword(body.password, row.password_hash) : await dummyVerify(body.password)) && row !== undefined;
      attempt.done(ok);
    } catch (e) {
      attempt.done(undefined);
      throw e;
    }
    if (!ok || !row) {
      await inTx(deps, async (_tx, audit) => {
        audit({ type: 'auth.login_failed', actor: body.username.slice(0, 64), at, data: { method: 'password', via: 'web', clientAddress: req.ip } });
      });
      throw new AppError('unauthenticated', 'wrong username or password');
    }
    const mfaAt = await id.loginSecondFactor(row, body.totp, req.ip);
    const s = await inTx(deps, async (tx, audit) => {
      const created = await createSession(tx, row.id, at, id.settings);
      if (mfaAt !== undefined) await stampMfa(tx, { sessionId: created.id }, mfaAt);
      audit({ type: 'auth.login', actor: row.name, at, data: { method: 'password', via: 'web', mfa: mfaAt !== undefined, clientAddress: req.ip } });
      audit({ type: 'session.created', actor: row.name, at, data: { handle: created.id, clientAddress: req.ip } });
      return created;
    });
    void reply.header('set-cookie', sessionCookie(s.cookie, Math.floor(id.settings.absoluteMs / 1000), secure(req, ctx)));
    return { user: row.name, csrfToken: csrfTokenFor(s.cookie, id.csrfKey) };
  });
  app.get('/api/v1/auth/session', { schema: { tags: ['identity'], summary: 'The web session: who, and its CSRF token', response: { ...errors } } }, async (req) => {
    const p = user(req);
    const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (!req.sessionId || !cookie) throw badRequest('this call is for web sessions (cookie), not API tokens');
    return { user: p.name, csrfToken: csrfTokenFor(cookie, id.csrfKey), mfaAt: p.mfaAt === undefined ? null : iso(p.mfaAt) };
  });

  app.post('/api/v1/auth/signout', { schema: { tags: ['identity'], summary: 'End this token (and its refresh token) or web session', response: { ...errors } } }, async (req, reply) =>
    signOutHere(req, reply, ctx));

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
    if (!out) await auditAnonymousFailure(deps, id, req.ip, at, { method: 'refresh', why: 'refresh token invalid, expired or revoked' });
    if (!out || out === 'reuse') throw new AppError('unauthenticated', 'refresh token is invalid, expired or already used (run: hallpass login)');
    return tokensView(out.t, out.name);
  });
}
