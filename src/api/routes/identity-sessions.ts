import type { Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { inTx } from '../../access/context.js';
import type { Identity } from '../../auth/identity.js';
import { issueLoginTokens, revokeEverything, revokeRefreshFor, spendRefreshToken } from '../../auth/login-tokens.js';
import { csrfTokenFor, readCookie, revokeSession, SESSION_COOKIE, sessionCookie } from '../../auth/sessions.js';
import { AppError, badRequest } from '../../domain/errors.js';
import type { Principal } from '../../domain/principal.js';
import { getUserById } from '../../store/users.js';
import { principalOf } from '../auth.js';
import type { ApiContext } from '../context.js';
import { errors, iso, secure, tokensView } from './identity-http.js';
import { LoginTokensView, RefreshBody } from './identity-schemas.js';

/** Web session info, sign-out (this credential / everywhere), refresh-token rotation. */
export function sessionRoutes(app: FastifyInstance, ctx: ApiContext, id: Identity, user: (req: FastifyRequest) => Principal): void {
  const { deps } = ctx;
  const now = () => deps.clock.now().getTime();
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
}
