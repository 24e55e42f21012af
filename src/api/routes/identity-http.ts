import type { FastifyRequest } from 'fastify';
import type { LoginTokens } from '../../auth/login-tokens.js';
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
