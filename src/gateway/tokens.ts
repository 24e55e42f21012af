import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConfigError } from '../domain/errors.js';

/**
 * Gateway tokens: short-lived passwords for one grant, `hpg_<grantId>.<expiresAtMs>.<nonce>.<mac>`
 * where mac = base64url(HMAC-SHA256(key, "hpg1|<kind>|<grantId>|<expiresAtMs>|<nonce>")). Pure
 * functions; the key is derived by the core (HKDF from the master key). Single use is enforced by
 * the authority, which records the nonce on first use.
 *
 * A *reusable* token (`hpgm_` prefix, kind "m") is for clients that open several connections
 * with one password (pgbench -c/-C, connection pools): the authority does not record its nonce,
 * so it works for every connection until it expires (same short TTL, never past the grant).
 */

export const GATEWAY_TOKEN_TTL_MS = 5 * 60_000;
const GRANT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const TOKEN = /^(hpgm?)_([A-Za-z0-9_-]{1,64})\.([0-9]{1,15})\.([A-Za-z0-9_-]{16,64})\.([A-Za-z0-9_-]{43})$/;

export interface MintedToken {
  readonly token: string;
  readonly grantId: string;
  readonly nonce: string;
  readonly expiresAt: Date;
  readonly reusable: boolean;
}

export function mintGatewayToken(
  key: Uint8Array,
  input: { grantId: string; now: Date; ttlMs?: number; notAfter?: Date; reusable?: boolean },
): MintedToken {
  if (key.length < 32) throw new ConfigError('gateway token key must be at least 32 bytes');
  if (!GRANT_ID.test(input.grantId)) throw new ConfigError(`invalid grant id for a gateway token: ${input.grantId}`);
  let exp = input.now.getTime() + (input.ttlMs ?? GATEWAY_TOKEN_TTL_MS);
  // A token never outlives its grant.
  if (input.notAfter && input.notAfter.getTime() < exp) exp = input.notAfter.getTime();
  const nonce = randomBytes(18).toString('base64url');
  const reusable = input.reusable ?? false;
  const mac = sign(key, reusable, input.grantId, exp, nonce);
  const prefix = reusable ? 'hpgm' : 'hpg';
  return { token: `${prefix}_${input.grantId}.${exp}.${nonce}.${mac}`, grantId: input.grantId, nonce, expiresAt: new Date(exp), reusable };
}

export type VerifiedToken =
  | { readonly ok: true; readonly grantId: string; readonly nonce: string; readonly expiresAt: Date; readonly reusable: boolean }
  | { readonly ok: false; readonly code: 'malformed' | 'bad_mac' }
  /** Authentic (the MAC holds), so the grant it names is known; past its lifetime. */
  | { readonly ok: false; readonly code: 'expired'; readonly grantId: string };

/** Checks shape, MAC (constant time) and expiry. Does not check single use. */
export function verifyGatewayToken(key: Uint8Array, token: string, now: Date): VerifiedToken {
  const m = TOKEN.exec(token);
  if (!m) return { ok: false, code: 'malformed' };
  const [, prefix, grantId = '', expStr = '', nonce = '', mac = ''] = m;
  const reusable = prefix === 'hpgm';
  const exp = Number(expStr);
  const expected = Buffer.from(sign(key, reusable, grantId, exp, nonce), 'utf8');
  const given = Buffer.from(mac, 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, code: 'bad_mac' };
  if (now.getTime() >= exp) return { ok: false, code: 'expired', grantId };
  return { ok: true, grantId, nonce, expiresAt: new Date(exp), reusable };
}

function sign(key: Uint8Array, reusable: boolean, grantId: string, exp: number, nonce: string): string {
  return createHmac('sha256', key).update(`hpg1|${reusable ? 'm' : 's'}|${grantId}|${exp}|${nonce}`).digest('base64url');
}
