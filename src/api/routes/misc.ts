import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { inTx } from '../../access/context.js';
import { closeReview } from '../../access/grants.js';
import { sessionSettings } from '../../auth/config.js';
import { issueLoginTokens } from '../../auth/login-tokens.js';
import { dummyVerify, verifyPassword } from '../../auth/password.js';
import { stampMfa } from '../../auth/stamps.js';
import { refusalMessage } from '../../auth/throttle.js';
import { AppError } from '../../domain/errors.js';
import { getUserByName } from '../../store/users.js';
import { principalOf, requireAdmin } from '../auth.js';
import type { ApiContext } from '../context.js';
import { CloseReviewBody, ErrorBody, IdParams, LoginBody, MeView, ResourceView, ReviewView } from '../schemas.js';
import { Type } from '@sinclair/typebox';
import type { LoginLimiter } from '../rate-limit.js';
import { signOutHere, tokensView } from './identity-http.js';
import { LoginTokensView } from './identity-schemas.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

export function miscRoutes(app: FastifyInstance, ctx: ApiContext, limiter: LoginLimiter): void {
  const { deps } = ctx;
  const db = deps.store.db;
  // Password logins get the same short-lived access token + rotating refresh token as SSO logins.
  const lifetimes = ctx.identity?.settings ?? sessionSettings(undefined);

  app.get('/healthz', { schema: { tags: ['ops'] } }, async (_req, reply) => {
    try {
      await sql`select 1`.execute(db);
      return { status: 'ok', store: deps.store.dialect, policyVersion: deps.policy().version };
    } catch {
      return reply.status(503).send({ status: 'unavailable', store: deps.store.dialect });
    }
  });

  app.get('/metrics', { schema: { tags: ['ops'], hide: true } }, async (_req, reply) => {
    const count = async (table: 'requests' | 'grants') => {
      const rows = await db.selectFrom(table).select(['status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy('status').execute();
      return new Map(rows.map((r) => [String(r.status), Number(r.n)]));
    };
    ctx.metrics.setCounts(await count('requests'), await count('grants'));
    return reply.header('content-type', ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
  });

  app.get('/api/v1/me', { schema: { tags: ['identity'], response: { 200: MeView } } }, async (req) => {
    const p = principalOf(req);
    return { id: p.id, name: p.name, kind: p.kind, email: p.email ?? null, groups: [...p.groups], isAdmin: p.isAdmin };
  });

  app.get('/api/v1/resources', { schema: { tags: ['resources'], response: { 200: Type.Object({ resources: Type.Array(ResourceView) }) } } }, async (req) => {
    principalOf(req);
    return {
      resources: [...deps.policy().resources.values()].map((r) => ({
        name: r.name, kind: r.kind, description: r.description ?? null, labels: { ...r.labels },
        roles: [...r.roles.values()].map((role) => ({ name: role.name, description: role.description ?? null, readOnly: role.readOnly })),
      })),
    };
  });

  app.post('/api/v1/auth/login', {
    schema: { tags: ['identity'], body: LoginBody, response: { 200: LoginTokensView, 401: ErrorBody, 429: ErrorBody } },
  }, async (req) => {
    const body = req.body as Static<typeof LoginBody>;
    const now = deps.clock.now().getTime();
    const attempt = limiter.begin(body.username, req.ip, now);
    if (attempt.refused) throw new AppError('rate_limited', refusalMessage(attempt, 'login'));
    let user: Awaited<ReturnType<typeof getUserByName>>;
    let ok = false;
    try {
      user = await getUserByName(db, body.username);
      ok = Boolean(user && user.disabled === 0 && user.password_hash
        ? await verifyPassword(body.password, user.password_hash)
        : await dummyVerify(body.password)) && user !== undefined;
      attempt.done(ok);
    } catch (e) {
      attempt.done(undefined);
      throw e;
    }
    if (!ok || !user) {
      await inTx(deps, async (_tx, audit) => {
        audit({ type: 'auth.login_failed', actor: body.username.slice(0, 64), at: now, data: { method: 'password', clientAddress: req.ip } });
      });
      throw new AppError('unauthenticated', 'wrong username or password');
    }
    // Users enrolled in MFA also give a TOTP code; the token issued starts MFA-fresh.
    const mfaAt = await ctx.identity?.loginSecondFactor(user, body.totp, req.ip);
    const issued = await inTx(deps, async (tx, audit) => {
      const t = await issueLoginTokens(tx, user.id, 'login', now, lifetimes.accessTokenSeconds, lifetimes.refreshTokenMs);
      if (mfaAt !== undefined) await stampMfa(tx, { tokenId: t.access.id }, mfaAt);
      audit({ type: 'auth.login', actor: user.name, at: now, data: { method: 'password', clientAddress: req.ip, handle: t.access.id } });
      return t;
    });
    return tokensView(issued, user.name);
  });

  app.post('/api/v1/auth/logout', { schema: { tags: ['identity'], summary: 'The same as /auth/signout' } }, async (req, reply) => signOutHere(req, reply, ctx));

  app.get('/api/v1/reviews', { schema: { tags: ['reviews'], response: { 200: Type.Object({ reviews: Type.Array(ReviewView) }) } } }, async (req) => {
    requireAdmin(req);
    const rows = await db.selectFrom('reviews').leftJoin('users', 'users.id', 'reviews.closed_by')
      .selectAll('reviews').select('users.name as closed_by_name').orderBy('opened_at', 'desc').limit(500).execute();
    return {
      reviews: rows.map((r) => ({
        id: r.id, kind: r.kind, requestId: r.request_id, grantId: r.grant_id, status: r.status, openedAt: new Date(r.opened_at).toISOString(),
        closedAt: iso(r.closed_at), closedBy: r.closed_by_name ?? r.closed_by, note: r.note,
      })),
    };
  });

  app.post('/api/v1/reviews/:id/close', { schema: { tags: ['reviews'], params: IdParams('rev'), body: CloseReviewBody } }, async (req) => {
    const { id } = req.params as { id: string };
    await closeReview(deps, requireAdmin(req), id, (req.body as Static<typeof CloseReviewBody>).note);
    return { ok: true };
  });
}
