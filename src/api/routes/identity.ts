import type { Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { inTx } from '../../access/context.js';
import { stampMfa } from '../../auth/stamps.js';
import { AppError, badRequest, notFound } from '../../domain/errors.js';
import { getUserByName } from '../../store/users.js';
import { principalOf, requireAdmin } from '../auth.js';
import type { ApiContext } from '../context.js';
import type { LoginLimiter } from '../rate-limit.js';
import { errors, iso } from './identity-http.js';
import { oidcRoutes } from './identity-oidc.js';
import { CodeBody, MfaStatusView, ResetMfaBody, UserNameParams } from './identity-schemas.js';
import { sessionRoutes } from './identity-sessions.js';

/** Routes that need no credentials (the auth hook lets them through). */
export const IDENTITY_PUBLIC_PATHS = [
  '/api/v1/auth/web-login', '/api/v1/auth/oidc/start', '/api/v1/auth/oidc/cli', '/api/v1/auth/oidc/callback', '/api/v1/auth/oidc/exchange', '/api/v1/auth/refresh',
] as const;

/** Recovery-code regeneration needs an MFA check this recent. */
const FRESH_MS = 5 * 60_000;
/** How recent a sign-in must be to enrol in MFA. */
const SIGN_IN_FRESH_MS = 10 * 60_000;
/** API tokens that a sign-in issues (a refreshed token, an admin-made token are not sign-ins). */
const SIGN_IN_TOKENS = ['login', 'sso-cli'];

export function identityRoutes(app: FastifyInstance, ctx: ApiContext, logins: LoginLimiter): void {
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

  /** When the credential of `req` was issued by a sign-in (a web session, or a login's token); undefined otherwise. */
  const signedInAt = async (req: FastifyRequest): Promise<number | undefined> => {
    if (req.sessionId) {
      const s2 = await db.selectFrom('web_sessions').select('created_at').where('id', '=', req.sessionId).executeTakeFirst();
      return s2 === undefined ? undefined : Number(s2.created_at);
    }
    if (req.tokenId) {
      const t = await db.selectFrom('api_tokens').select(['name', 'created_at']).where('id', '=', req.tokenId).executeTakeFirst();
      return t !== undefined && SIGN_IN_TOKENS.includes(t.name) ? Number(t.created_at) : undefined;
    }
    return undefined;
  };

  // --- TOTP MFA ---
  app.get('/api/v1/auth/mfa', { schema: { tags: ['identity'], summary: 'Your MFA status', response: { 200: MfaStatusView, ...errors } } },
    async (req) => id.mfa.status(user(req).id));

  // Enrolling binds a second factor to the account for good, so holding a token is not enough: the
  // credential must come from a sign-in (password or SSO) in the last few minutes. Otherwise a
  // leaked token or refresh token enrolled its thief's authenticator, passed every MFA check the
  // policy asks for, and locked the real user out of enrolling (review 2026-12-02).
  app.post('/api/v1/auth/mfa/enroll', {
    schema: { tags: ['identity'], summary: 'Start TOTP enrolment (returns the secret and otpauth:// URI once); needs a sign-in from the last 10 minutes', response: { ...errors } },
  }, async (req) => {
    const p = user(req);
    const at = await signedInAt(req);
    if (at === undefined || now() - at > SIGN_IN_FRESH_MS) {
      throw new AppError('forbidden', `MFA enrolment needs a sign-in from the last ${SIGN_IN_FRESH_MS / 60_000} minutes: sign in again (hallpass login, or the web sign-in), then enrol`, { reason: 'sign_in_required' });
    }
    return id.mfa.enroll(p, req.ip);
  });

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

  sessionRoutes(app, ctx, id, user, logins);
  oidcRoutes(app, ctx, id);

  app.get('/api/v1/auth/workload', { schema: { tags: ['identity'], summary: 'Who a workload token authenticates as (for pipelines to check)', response: { ...errors } } }, async (req) => {
    const p = principalOf(req);
    if (p.kind !== 'workload') throw badRequest('call this with a workload OIDC token');
    return { workload: p.name, attributes: p.attributes };
  });
}
