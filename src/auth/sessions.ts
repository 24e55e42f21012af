import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Executor } from '../store/db.js';

export const SESSION_COOKIE = 'hallpass_session';
const SESSION_PATTERN = /^hp_ses_[A-Za-z0-9_-]{43}$/;

export interface SessionTimeouts {
  readonly idleMs: number;
  readonly absoluteMs: number;
}

export interface LiveSession {
  readonly id: string;
  readonly userId: string;
  readonly mfaAt: number | undefined;
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** Starts a web session; returns the cookie value (never stored: only its hash is). */
export async function createSession(db: Executor, userId: string, now: number, t: SessionTimeouts): Promise<{ id: string; cookie: string }> {
  const cookie = `hp_ses_${randomBytes(32).toString('base64url')}`;
  const id = `ses_${randomBytes(10).toString('hex')}`;
  await db.insertInto('web_sessions').values({
    id, user_id: userId, session_hash: sha256(cookie), created_at: now, last_seen_at: now, expires_at: now + t.absoluteMs, revoked_at: null, mfa_at: null,
  }).execute();
  return { id, cookie };
}

/**
 * The live session a cookie names, or undefined when unknown, revoked, past its absolute end,
 * idle too long, or its user is disabled. Refreshes last_seen (sliding idle timeout).
 */
export async function authenticateSession(db: Executor, cookie: string, now: number, t: SessionTimeouts): Promise<LiveSession | undefined> {
  if (!SESSION_PATTERN.test(cookie)) return undefined;
  const row = await db.selectFrom('web_sessions as s').innerJoin('users as u', 'u.id', 's.user_id')
    .select(['s.id', 's.user_id', 's.last_seen_at', 's.expires_at', 's.revoked_at', 's.mfa_at', 'u.disabled'])
    .where('s.session_hash', '=', sha256(cookie)).executeTakeFirst();
  if (!row || row.revoked_at !== null || row.disabled !== 0) return undefined;
  if (row.expires_at <= now || row.last_seen_at + t.idleMs <= now) return undefined;
  if (now - row.last_seen_at >= 10_000) {
    await db.updateTable('web_sessions').set({ last_seen_at: now }).where('id', '=', row.id).where('last_seen_at', '<', now).execute();
  }
  return { id: row.id, userId: row.user_id, mfaAt: row.mfa_at ?? undefined };
}

/** The CSRF token for a session: an HMAC of the cookie, so nothing more is stored and it dies with the session. */
export function csrfTokenFor(cookie: string, key: Buffer): string {
  return createHmac('sha256', key).update(`csrf:${cookie}`).digest('base64url');
}

/** Constant-time check of a CSRF header against the session's token. */
export function csrfMatches(cookie: string, header: string | undefined, key: Buffer): boolean {
  if (!header) return false;
  const want = Buffer.from(csrfTokenFor(cookie, key));
  const got = Buffer.from(header);
  return got.length === want.length && timingSafeEqual(got, want);
}

export async function revokeSession(db: Executor, id: string, now: number): Promise<void> {
  await db.updateTable('web_sessions').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).execute();
}

/** Reads one cookie from a Cookie header (no dependency: the value is opaque to us). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Set-Cookie for a session: HttpOnly, SameSite=Lax (survives the IdP's redirect back), Secure over TLS. */
export function sessionCookie(value: string, maxAgeSeconds: number, secure: boolean): string {
  return [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Lax', `Max-Age=${maxAgeSeconds}`, ...(secure ? ['Secure'] : [])].join('; ');
}
