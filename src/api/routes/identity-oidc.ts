import type { Static } from '@sinclair/typebox';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { inTx } from '../../access/context.js';
import type { Identity } from '../../auth/identity.js';
import { cliChallengeOf, hashCode, issueLoginTokens } from '../../auth/login-tokens.js';
import { newCliCode } from '../../auth/oidc.js';
import { SsoRefused } from '../../auth/oidc-claims.js';
import { createSession, readCookie, sessionCookie } from '../../auth/sessions.js';
import { AppError, badRequest, notFound } from '../../domain/errors.js';
import { getUserById } from '../../store/users.js';
import type { ApiContext } from '../context.js';
import { auditAnonymousFailure, errors, secure, tokensView } from './identity-http.js';
import { LoginTokensView, OidcCliBody, OidcExchangeBody } from './identity-schemas.js';

const LOOPBACK = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}(\/[A-Za-z0-9/_-]*)?$/;
const CLI_CODE_TTL_MS = 5 * 60_000;

/** OIDC single sign-on: web (cookie session) and CLI (loopback or pasted one-time code). */
export function oidcRoutes(app: FastifyInstance, ctx: ApiContext, id: Identity): void {
  const { deps } = ctx;
  const now = () => deps.clock.now().getTime();
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
      await auditAnonymousFailure(deps, id, req.ip, at, { method: 'oidc', why: e.message });
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
    if (!out) {
      // A guessed, replayed or stolen code is a failed sign-in too (review 2026-12-02: not audited).
      await auditAnonymousFailure(deps, id, req.ip, at, { method: 'oidc-cli', why: 'login code invalid, expired, already used, or not redeemed with its verifier' });
      throw new AppError('unauthenticated', 'login code is invalid, expired, already used, or not yours');
    }
    return tokensView(out.t, out.name);
  });

}

const BINDING_COOKIE = 'hallpass_oidc';
function bindingCookie(value: string, maxAge: number, secureFlag: boolean): string {
  return [`${BINDING_COOKIE}=${value}`, 'Path=/api/v1/auth/oidc', 'HttpOnly', 'SameSite=Lax', `Max-Age=${maxAge}`, ...(secureFlag ? ['Secure'] : [])].join('; ');
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
