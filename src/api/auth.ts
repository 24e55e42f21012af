import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authenticateToken } from '../auth/tokens.js';
import { AppError } from '../domain/errors.js';
import type { Principal } from '../domain/principal.js';
import { toPrincipal } from '../store/users.js';
import type { ApiContext } from './context.js';
import { IDENTITY_PUBLIC_PATHS } from './routes/identity.js';

const PUBLIC = new Set(['/api/v1/auth/login', ...IDENTITY_PUBLIC_PATHS]);
const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

const isPublic = (path: string) => !path.startsWith('/api/v1/') || PUBLIC.has(path);

/**
 * The path a request is for, as routed: the matched route's pattern, or (no route matched) the
 * request target's path. Not the raw target alone: an absolute-form target
 * (`GET http://host/api/v1/audit`) reaches the /api/v1 routes without starting with /api/v1/, and
 * once passed the authentication hook as if it were public (review; every route still refused it
 * for want of a principal).
 */
const routedPath = (req: FastifyRequest): string => req.routeOptions.url ?? req.url.split('?')[0] ?? '';

/**
 * Authentication for everything under /api/v1 (but the public sign-in routes), in onRequest; an
 * `X-Hallpass-MFA` code in preHandler, after the body, query and params are validated, so a call
 * with bad input (400) or to no route (404) does not spend the code.
 */
export function installAuth(app: FastifyInstance, ctx: ApiContext): void {
  app.addHook('onRequest', async (req) => {
    if (isPublic(routedPath(req))) return;
    if (ctx.identity) {
      // Tokens, workload JWTs, session cookies (+CSRF).
      const r = await ctx.identity.authenticate({
        authorization: req.headers.authorization, cookie: req.headers.cookie, csrf: one(req.headers['x-hallpass-csrf']), method: req.method, ip: req.ip,
      });
      req.principal = r.principal;
      if (r.tokenId) req.tokenId = r.tokenId;
      if (r.sessionId) req.sessionId = r.sessionId;
      return;
    }
    const header = req.headers.authorization;
    const m = header ? /^Bearer ([^\s]+)$/i.exec(header) : null;
    if (!m) throw new AppError('unauthenticated', 'missing bearer token (run: hallpass login)');
    const user = await authenticateToken(ctx.deps.store.db, m[1]!, ctx.deps.clock.now());
    if (!user) throw new AppError('unauthenticated', 'invalid, expired or revoked token (run: hallpass login)');
    req.principal = toPrincipal(user);
  });

  app.addHook('preHandler', async (req) => {
    const code = one(req.headers['x-hallpass-mfa']);
    if (code === undefined || !ctx.identity || !req.principal || req.is404) return; // public routes have no principal
    const purpose = `${req.method} ${req.url.split('?')[0] ?? ''}`;
    const r = await ctx.identity.stepUp({ principal: req.principal, tokenId: req.tokenId, sessionId: req.sessionId }, code, req.ip, purpose);
    req.principal = r.principal;
  });
}

export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new AppError('unauthenticated', 'not authenticated');
  return req.principal;
}

export function requireAdmin(req: FastifyRequest): Principal {
  const p = principalOf(req);
  if (!p.isAdmin) throw new AppError('forbidden', 'admins only');
  return p;
}
