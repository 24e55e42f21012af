import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authenticateToken } from '../auth/tokens.js';
import { AppError } from '../domain/errors.js';
import type { Principal } from '../domain/principal.js';
import { toPrincipal } from '../store/users.js';
import type { ApiContext } from './context.js';
import { IDENTITY_PUBLIC_PATHS } from './routes/identity.js';

const PUBLIC = new Set(['/api/v1/auth/login', ...IDENTITY_PUBLIC_PATHS]);
const one = (v: string | string[] | undefined) => (Array.isArray(v) ? v[0] : v);

/** Bearer-token authentication for everything under /api/v1 (but login). */
export function installAuth(app: FastifyInstance, ctx: ApiContext): void {
  app.addHook('onRequest', async (req) => {
    const path = req.url.split('?')[0] ?? '';
    if (!path.startsWith('/api/v1/') || PUBLIC.has(path)) return;
    if (ctx.identity) {
      // Tokens, workload JWTs, session cookies (+CSRF), and an optional X-Hallpass-MFA code.
      const r = await ctx.identity.authenticate({
        authorization: req.headers.authorization, cookie: req.headers.cookie, csrf: one(req.headers['x-hallpass-csrf']),
        mfaCode: one(req.headers['x-hallpass-mfa']), method: req.method, route: path, ip: req.ip,
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
