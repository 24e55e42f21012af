import { describe, expect, it } from 'vitest';
import { hashRecoveryCode, isRecoveryCodeShaped, newRecoveryCode } from './recovery.js';

describe('recovery codes', () => {
  it('are XXXXX-XXXXX from an alphabet without look-alikes, and distinct', () => {
    const codes = Array.from({ length: 200 }, newRecoveryCode);
    for (const c of codes) expect(c).toMatch(/^[2-9A-HJKMNP-Z]{5}-[2-9A-HJKMNP-Z]{5}$/);
    expect(new Set(codes).size).toBe(codes.length);
  });

  it('hash the same whatever the case, spaces or dashes the user types', () => {
    const c = newRecoveryCode();
    const h = hashRecoveryCode(c);
    expect(hashRecoveryCode(c.toLowerCase().replace('-', ' '))).toBe(h);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(h).not.toContain(c);
    expect(isRecoveryCodeShaped(c.toLowerCase())).toBe(true);
    expect(isRecoveryCodeShaped('123456')).toBe(false);
  });
});
