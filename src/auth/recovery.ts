import { createHash, randomBytes } from 'node:crypto';

/** Crockford-style alphabet without look-alikes (no 0/O, 1/I/L). */
const ALPHABET = '23456789ABCDEFGHJKMNPQRSTUVWXYZ';

/** A recovery code: `XXXXX-XXXXX` (10 symbols of 31, about 49.5 bits), shown once. */
export function newRecoveryCode(): string {
  let out = '';
  while (out.length < 10) {
    for (const b of randomBytes(16)) {
      if (b < 248 && out.length < 10) out += ALPHABET[b % 31]; // 248 = 8 * 31: no modulo bias
    }
  }
  return `${out.slice(0, 5)}-${out.slice(5)}`;
}

/** What is stored: sha256 of the code with case, spaces and dashes removed. */
export function hashRecoveryCode(code: string): string {
  return createHash('sha256').update(normalizeRecoveryCode(code), 'utf8').digest('hex');
}

export function normalizeRecoveryCode(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '');
}

/** True when the input has the shape of a recovery code (so a typo is not counted as a TOTP failure twice). */
export function isRecoveryCodeShaped(code: string): boolean {
  return /^[2-9A-HJKMNP-Z]{10}$/.test(normalizeRecoveryCode(code));
}
