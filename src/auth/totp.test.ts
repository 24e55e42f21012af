import { describe, expect, it } from 'vitest';
import { newTotpSecret, totpAt, totpUri, TOTP_PERIOD, verifyTotp } from './totp.js';

describe('TOTP (RFC 6238)', () => {
  const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);

  it('matches the RFC 6238 SHA-1 test vector', async () => {
    // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s -> 94287082 (8 digits); 6 digits -> 287082.
    const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';
    expect(await totpAt(secret, 59_000)).toBe('287082');
  });

  it('accepts the current code and one step of drift, and returns its step', async () => {
    const s = newTotpSecret();
    const step = Math.floor(t0 / 1000 / TOTP_PERIOD);
    expect(await verifyTotp(s, await totpAt(s, t0), t0, null)).toBe(step);
    expect(await verifyTotp(s, await totpAt(s, t0 - 30_000), t0, null)).toBe(step - 1);
    expect(await verifyTotp(s, await totpAt(s, t0 - 90_000), t0, null)).toBeUndefined();
  });

  it('refuses a code at or before the last accepted step (replay)', async () => {
    const s = newTotpSecret();
    const code = await totpAt(s, t0);
    const step = await verifyTotp(s, code, t0, null);
    expect(step).toBeDefined();
    expect(await verifyTotp(s, code, t0, step!)).toBeUndefined();
    expect(await verifyTotp(s, await totpAt(s, t0 - 30_000), t0, step!)).toBeUndefined();
    expect(await verifyTotp(s, await totpAt(s, t0 + 30_000), t0 + 30_000, step!)).toBe(step! + 1);
  });

  it('refuses malformed codes and builds an otpauth URI', async () => {
    const s = newTotpSecret();
    expect(await verifyTotp(s, '12345', t0, null)).toBeUndefined();
    expect(await verifyTotp(s, 'abcdef', t0, null)).toBeUndefined();
    const uri = totpUri('hallpass', 'alice', s);
    expect(uri).toMatch(/^otpauth:\/\/totp\/hallpass:alice\?/);
    expect(uri).toContain(`secret=${s}`);
  });
});
