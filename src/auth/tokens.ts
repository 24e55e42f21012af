import { createHash, randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Executor } from '../store/db.js';
import type { UsersTable } from '../store/schema.js';

/** `hp_tok_` + 43 base62 characters: 32 random bytes (256 bits). */
export const TOKEN_PREFIX = 'hp_tok_';
const BODY_LEN = 43;
const TOKEN_PATTERN = /^hp_tok_[0-9A-Za-z]{43}$/;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** last_used_at is written at most this often per token, so authentication is mostly a read. */
export const LAST_USED_RESOLUTION_MS = 60_000;
export const MAX_TOKEN_NAME = 100;

export type UserRow = Selectable<UsersTable>;

export interface IssuedToken {
  /** The token itself: shown once to its owner, never stored. */
  readonly token: string;
  readonly id: string;
  readonly expiresAt: number | null;
}

export interface IssueTokenInput {
  readonly userId: string;
  readonly name: string;
  /** Lifetime; omitted = until revoked. */
  readonly ttlSeconds?: number;
  readonly now: Date | number;
}

/** Creates an API token for a user; only sha256(token) is stored. */
export async function issueToken(db: Executor, input: IssueTokenInput): Promise<IssuedToken> {
  const now = ms(input.now);
  const name = input.name.trim();
  if (name.length === 0 || name.length > MAX_TOKEN_NAME) throw new RangeError(`token name must be 1 to ${MAX_TOKEN_NAME} characters`);
  if (input.ttlSeconds !== undefined && (!Number.isSafeInteger(input.ttlSeconds) || input.ttlSeconds <= 0)) {
    throw new RangeError('ttlSeconds must be a positive whole number of seconds');
  }
  const token = generateToken();
  const id = `tok_${randomBytes(10).toString('hex')}`;
  const expiresAt = input.ttlSeconds === undefined ? null : now + input.ttlSeconds * 1000;
  await db
    .insertInto('api_tokens')
    .values({ id, user_id: input.userId, token_hash: hashToken(token), name, created_at: now, expires_at: expiresAt, last_used_at: null, revoked_at: null })
    .execute();
  return { token, id, expiresAt };
}

/**
 * The user a token belongs to, or undefined when the token is malformed, unknown, expired,
 * revoked, or its user is disabled. Looks the token up by its hash (so no secret is compared),
 * and records last use at most once a minute (a conditional UPDATE: concurrent requests write once).
 */
export async function authenticateToken(db: Executor, token: string, now: Date | number): Promise<UserRow | undefined> {
  return (await authenticateTokenWithId(db, token, now))?.user;
}

/** Like authenticateToken, and also says which token it was (for logout and MFA step-up stamps). */
export async function authenticateTokenWithId(db: Executor, token: string, now: Date | number): Promise<{ user: UserRow; tokenId: string } | undefined> {
  if (!TOKEN_PATTERN.test(token)) return undefined;
  const at = ms(now);
  const row = await db
    .selectFrom('api_tokens as t')
    .innerJoin('users as u', 'u.id', 't.user_id')
    .selectAll('u')
    .select(['t.id as token_id', 't.expires_at as token_expires_at', 't.revoked_at as token_revoked_at', 't.last_used_at as token_last_used_at'])
    .where('t.token_hash', '=', hashToken(token))
    .executeTakeFirst();
  if (!row || row.token_revoked_at !== null || row.disabled !== 0) return undefined;
  if (row.token_expires_at !== null && row.token_expires_at <= at) return undefined;
  if (row.token_last_used_at === null || row.token_last_used_at <= at - LAST_USED_RESOLUTION_MS) {
    await db
      .updateTable('api_tokens')
      .set({ last_used_at: at })
      .where('id', '=', row.token_id)
      .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', at - LAST_USED_RESOLUTION_MS)]))
      .execute();
  }
  const { token_id: tokenId, token_expires_at: _exp, token_revoked_at: _rev, token_last_used_at: _used, ...user } = row;
  return { user, tokenId };
}

/** Revokes one token by id; true if it was live. Pass `userId` to revoke only a token of that user. */
export async function revokeToken(db: Executor, tokenId: string, now: Date | number, userId?: string): Promise<boolean> {
  let q = db.updateTable('api_tokens').set({ revoked_at: ms(now) }).where('id', '=', tokenId).where('revoked_at', 'is', null);
  if (userId !== undefined) q = q.where('user_id', '=', userId);
  const res = await q.executeTakeFirst();
  return Number(res.numUpdatedRows) > 0;
}

/** Revokes every live token of a user (on disable, password reset, "log out everywhere"); returns how many. */
export async function revokeAllForUser(db: Executor, userId: string, now: Date | number): Promise<number> {
  const res = await db.updateTable('api_tokens').set({ revoked_at: ms(now) }).where('user_id', '=', userId).where('revoked_at', 'is', null).executeTakeFirst();
  return Number(res.numUpdatedRows);
}

/** The stored form of a token: hex sha256. A 256-bit random token needs no salt or slow hash. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** True when the string has the shape of a hallpass API token (used to reject junk early). */
export function isTokenShaped(token: string): boolean {
  return TOKEN_PATTERN.test(token);
}

function generateToken(): string {
  let n = BigInt(`0x${randomBytes(32).toString('hex')}`);
  let body = '';
  for (let i = 0; i < BODY_LEN; i++) {
    body = BASE62[Number(n % 62n)] + body;
    n /= 62n;
  }
  return TOKEN_PREFIX + body;
}

function ms(t: Date | number): number {
  return t instanceof Date ? t.getTime() : t;
}
