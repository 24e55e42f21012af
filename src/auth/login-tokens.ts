import { createHash, randomBytes } from 'node:crypto';
import type { Tx } from '../store/db.js';
import { issueToken, type IssuedToken } from './tokens.js';

export const REFRESH_PREFIX = 'hp_ref_';
const REFRESH_PATTERN = /^hp_ref_[A-Za-z0-9_-]{43}$/;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

export interface LoginTokens {
  readonly access: IssuedToken;
  readonly refreshToken: string;
  readonly refreshExpiresAt: number;
}

/** A short-lived access token plus a refresh token (both stored as hashes). */
export async function issueLoginTokens(tx: Tx, userId: string, name: string, now: number, accessSeconds: number, refreshMs: number): Promise<LoginTokens> {
  const access = await issueToken(tx, { userId, name, ttlSeconds: accessSeconds, now });
  const refreshToken = `${REFRESH_PREFIX}${randomBytes(32).toString('base64url')}`;
  await tx.insertInto('refresh_tokens').values({
    id: `rtk_${randomBytes(10).toString('hex')}`, user_id: userId, token_hash: sha256(refreshToken), access_token_id: access.id,
    created_at: now, expires_at: now + refreshMs, used_at: null, revoked_at: null,
  }).execute();
  return { access, refreshToken, refreshExpiresAt: now + refreshMs };
}

/**
 * Spends a refresh token (rotation: each works once). Returns its user, or undefined when unknown,
 * expired, revoked or already used. A second use of a spent token is treated as theft: every
 * token of that user is revoked (`reuse: true`).
 */
export async function spendRefreshToken(tx: Tx, token: string, now: number): Promise<{ userId: string; reuse: boolean } | undefined> {
  if (!REFRESH_PATTERN.test(token)) return undefined;
  const row = await tx.selectFrom('refresh_tokens as r').innerJoin('users as u', 'u.id', 'r.user_id')
    .select(['r.id', 'r.user_id', 'r.expires_at', 'r.used_at', 'r.revoked_at', 'r.access_token_id', 'u.disabled'])
    .where('r.token_hash', '=', sha256(token)).executeTakeFirst();
  if (!row || row.revoked_at !== null || row.expires_at <= now || row.disabled !== 0) return undefined;
  const res = await tx.updateTable('refresh_tokens').set({ used_at: now }).where('id', '=', row.id).where('used_at', 'is', null).executeTakeFirst();
  if (Number(res.numUpdatedRows) !== 1) return { userId: row.user_id, reuse: true };
  await tx.updateTable('api_tokens').set({ revoked_at: now }).where('id', '=', row.access_token_id).where('revoked_at', 'is', null).execute();
  return { userId: row.user_id, reuse: false };
}

/** Revokes the refresh token issued with an access token (logout). */
export async function revokeRefreshFor(tx: Tx, accessTokenId: string, now: number): Promise<void> {
  await tx.updateTable('refresh_tokens').set({ revoked_at: now }).where('access_token_id', '=', accessTokenId).where('revoked_at', 'is', null).execute();
}

/** Logout everywhere: every API token, refresh token and web session of the user. Returns counts. */
export async function revokeEverything(tx: Tx, userId: string, now: number): Promise<{ tokens: number; sessions: number }> {
  const t = await tx.updateTable('api_tokens').set({ revoked_at: now }).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
  await tx.updateTable('refresh_tokens').set({ revoked_at: now }).where('user_id', '=', userId).where('revoked_at', 'is', null).execute();
  const s = await tx.updateTable('web_sessions').set({ revoked_at: now }).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
  return { tokens: Number(t.numUpdatedRows), sessions: Number(s.numUpdatedRows) };
}

/** base64url(sha256(verifier)): the CLI's proof that it started the login it redeems. */
export function cliChallengeOf(verifier: string): string {
  return createHash('sha256').update(verifier, 'utf8').digest('base64url');
}
export const hashCode = sha256;
