import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** Random lowercase base36 string of `length` characters (about 5.17 bits each, no modulo bias). */
export function randomId(length = 16): string {
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < 252 && out.length < length) out += ALPHABET[b % 36]; // 252 = 7 * 36
    }
  }
  return out;
}

export const newRequestId = () => `req_${randomId(16)}`;
export const newGrantId = () => `grt_${randomId(16)}`;
export const newUserId = () => `usr_${randomId(16)}`;
export const newReviewId = () => `rev_${randomId(16)}`;
/** Target principal names: `hp_` + 20 base36 chars (~103 bits); only [a-z0-9_], so always a safe identifier. */
export const newPrincipalName = () => `hp_${randomId(20)}`;
/** A target password: 32 random bytes, base64url (no quoting hazards). */
export const newSecret = () => randomBytes(32).toString('base64url');

export const ID_PATTERN = /^(req|grt|usr|rev)_[0-9a-z]{16}$/;
