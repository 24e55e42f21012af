import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { GATEWAY_TOKEN_TTL_MS, mintGatewayToken, verifyGatewayToken } from './tokens.js';

const key = randomBytes(32);
const now = new Date('2026-01-01T12:00:00Z');

describe('gateway tokens', () => {
  it('mints a token that verifies for its grant until it expires (5 minutes by default)', () => {
    const t = mintGatewayToken(key, { grantId: 'grt_abc', now });
    expect(t.token).toMatch(/^hpg_grt_abc\.\d+\.[\w-]+\.[\w-]{43}$/);
    expect(t.expiresAt.getTime() - now.getTime()).toBe(GATEWAY_TOKEN_TTL_MS);
    const v = verifyGatewayToken(key, t.token, new Date(now.getTime() + 1000));
    expect(v).toEqual({ ok: true, grantId: 'grt_abc', nonce: t.nonce, expiresAt: t.expiresAt, reusable: false });
    expect(verifyGatewayToken(key, t.token, t.expiresAt)).toEqual({ ok: false, code: 'expired', grantId: 'grt_abc' });
  });

  it('marks reusable tokens (for pools and pgbench) so a prefix change breaks the MAC', () => {
    const t = mintGatewayToken(key, { grantId: 'grt_abc', now, reusable: true });
    expect(t.token.startsWith('hpgm_grt_abc.')).toBe(true);
    expect(verifyGatewayToken(key, t.token, now)).toMatchObject({ ok: true, reusable: true });
    expect(verifyGatewayToken(key, t.token.replace('hpgm_', 'hpg_'), now)).toEqual({ ok: false, code: 'bad_mac' });
  });

  it('never outlives the grant', () => {
    const notAfter = new Date(now.getTime() + 10_000);
    expect(mintGatewayToken(key, { grantId: 'grt_abc', now, notAfter }).expiresAt).toEqual(notAfter);
  });

  it('rejects a token signed with another key, a changed grant or expiry, and garbage', () => {
    const t = mintGatewayToken(key, { grantId: 'grt_abc', now }).token;
    expect(verifyGatewayToken(randomBytes(32), t, now)).toEqual({ ok: false, code: 'bad_mac' });
    expect(verifyGatewayToken(key, t.replace('grt_abc', 'grt_abd'), now)).toEqual({ ok: false, code: 'bad_mac' });
    const [head, exp, ...rest] = t.split('.');
    expect(verifyGatewayToken(key, [head, String(Number(exp) + 1), ...rest].join('.'), now)).toEqual({ ok: false, code: 'bad_mac' });
    for (const bad of ['', 'hpg_', 'x'.repeat(10_000), `${t}x`, t.replace('hpg_', 'hpx_')]) {
      expect(verifyGatewayToken(key, bad, now).ok).toBe(false);
    }
  });

  it('refuses weak keys and unsafe grant ids at mint time', () => {
    expect(() => mintGatewayToken(randomBytes(8), { grantId: 'grt_abc', now })).toThrow(/32 bytes/);
    expect(() => mintGatewayToken(key, { grantId: 'a.b', now })).toThrow(/invalid grant id/);
  });
});
