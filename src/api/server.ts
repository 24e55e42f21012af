import { AjvCompiler } from '@fastify/ajv-compiler';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { installAuth } from './auth.js';
import type { ApiContext } from './context.js';
import { installErrorHandling } from './errors.js';
import { auditRoutes } from './routes/audit.js';
import { grantRoutes } from './routes/grants.js';
import { identityRoutes } from './routes/identity.js';
import { miscRoutes } from './routes/misc.js';
import { newLoginLimiter } from './rate-limit.js';
import { requestRoutes } from './routes/requests.js';
import { ErrorBody, GrantView, RequestView } from './schemas.js';

const AJV_OPTIONS = { removeAdditional: false, coerceTypes: 'array', allErrors: false, verbose: true } as const;
const validators = AjvCompiler();

/**
 * Query strings, path parameters and headers are text, so their values are coerced to the types
 * their schemas name ("limit=5" a number, a lone "type=x" a one-item list). A JSON body already
 * carries its types: it is validated as sent, so `"reason": ["a"]` or `"force": "true"` is refused
 * rather than read as "a" or true.
 */
const strictBodies: typeof validators = (externalSchemas, options) => {
  const coercing = validators(externalSchemas, options);
  const strict = validators(externalSchemas, { customOptions: { ...AJV_OPTIONS, coerceTypes: false } });
  return (route) => (route.httpPart === 'body' ? strict : coercing)(route);
};

/** Builds the HTTP API (not listening yet). */
export async function buildApi(ctx: ApiContext): Promise<FastifyInstance> {
  const app = Fastify({
    logger: false,
    bodyLimit: 64 * 1024,
    // The client address (throttles, audit) is the peer's, unless the peer is a configured proxy.
    trustProxy: ctx.trustedProxies !== undefined && ctx.trustedProxies.length > 0 ? [...ctx.trustedProxies] : false,
    ajv: { customOptions: AJV_OPTIONS },
    schemaController: { compilersFactory: { buildValidator: strictBodies } },
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'hallpass', version: '1', description: 'Just-in-time, time-boxed, audited access to production.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  app.addSchema(ErrorBody);
  app.addSchema(RequestView);
  app.addSchema(GrantView);
  installErrorHandling(app, ctx.log);
  installAuth(app, ctx);
  app.addHook('onResponse', async (req, reply) => {
    ctx.metrics.httpRequests.inc({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) });
  });
  // One password-guessing budget for both sign-in routes (CLI /auth/login and /auth/web-login).
  const logins = newLoginLimiter();
  miscRoutes(app, ctx, logins);
  requestRoutes(app, ctx);
  grantRoutes(app, ctx);
  auditRoutes(app, ctx);
  identityRoutes(app, ctx, logins);
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return app;
}
