import type { FastifyReply, FastifyRequest } from 'fastify';
import { inTx, type AccessDeps } from '../../access/context.js';
import type { Identity } from '../../auth/identity.js';
import { revokeRefreshFor, type LoginTokens } from '../../auth/login-tokens.js';
import { revokeSession, sessionCookie } from '../../auth/sessions.js';
import { principalOf } from '../auth.js';
import type { ApiContext } from '../context.js';
import { ErrorBody } from '../schemas.js';

export const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 429: ErrorBody };
export const iso = (ms: number) => new Date(ms).toISOString();

export function tokensView(t: LoginTokens, user: string) {
  return { token: t.access.token, expiresAt: iso(t.access.expiresAt ?? 0), refreshToken: t.refreshToken, refreshExpiresAt: iso(t.refreshExpiresAt), user };
}

/** Secure cookies whenever the API is reached over TLS (directly, or per its public https:// URL). */
export function secure(req: FastifyRequest, ctx: ApiContext): boolean {
  return req.protocol === 'https' || (ctx.identity?.baseUrl().startsWith('https:') ?? false);
}

/**
 * Ends the credential this request came with: its API token (and the refresh token issued with
 * it) or its web session (and clears the cookie). `/auth/signout` and the older `/auth/logout`
 * both do this; the latter once revoked only a bearer token and answered a cookie caller ok with
 * the session still alive (review 2026-12-02).
 */
export async function signOutHere(req: FastifyRequest, reply: FastifyReply, ctx: ApiContext): Promise<{ ok: true }> {
  const p = principalOf(req);
  const at = ctx.deps.clock.now().getTime();
  await inTx(ctx.deps, async (tx, audit) => {
    if (req.tokenId) {
      await tx.updateTable('api_tokens').set({ revoked_at: at }).where('id', '=', req.tokenId).where('revoked_at', 'is', null).execute();
      await revokeRefreshFor(tx, req.tokenId, at);
    }
    if (req.sessionId) await revokeSession(tx, req.sessionId, at);
    audit({ type: 'auth.logout', actor: p.name, at, data: { via: req.sessionId ? 'web_session' : req.tokenId ? 'api_token' : 'none', clientAddress: req.ip } });
  });
  if (req.sessionId) void reply.header('set-cookie', sessionCookie('', 0, secure(req, ctx)));
  return { ok: true };
}

/**
 * An anonymous sign-in failure on the record, with the client's address; throttled per address
 * like the other anonymous failures (Identity.anonymousFailures), so a flood is a count.
 */
export async function auditAnonymousFailure(deps: AccessDeps, id: Identity, ip: string, at: number, data: { method: string; why: string }): Promise<void> {
  const { audit: audited, suppressed } = id.anonymousFailures.failed(ip, at);
  if (!audited) return;
  await inTx(deps, async (_tx, audit) => {
    audit({ type: 'auth.login_failed', actor: 'anonymous', at, data: { ...data, clientAddress: ip, ...(suppressed > 0 ? { suppressed } : {}) } });
  });
}
