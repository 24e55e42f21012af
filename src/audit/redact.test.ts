import { describe, expect, it } from 'vitest';
import { REDACTED, isSecretKey, redact } from './redact.js';

describe('redact', () => {
  it('replaces secret-looking keys at any depth, case-insensitively', () => {
    const input = {
      user: 'ann',
      Password: 'hunter2',
      db: { DSN: 'host=x', conn: { client_secret: 's', 'x-auth-token': 't' } },
      list: [{ apiKey: 'k' }, { credentials: { user: 'u' } }, 'plain'],
      PRIVATE_KEY: 'pem',
    };
    expect(redact(input)).toEqual({
      user: 'ann',
      Password: REDACTED,
      db: { DSN: REDACTED, conn: { client_secret: REDACTED, 'x-auth-token': REDACTED } },
      list: [{ apiKey: REDACTED }, { credentials: REDACTED }, 'plain'],
      PRIVATE_KEY: REDACTED,
    });
  });

  it('does not change the caller object', () => {
    const input = { token: 't', nested: { secret: 's' } };
    redact(input);
    expect(input).toEqual({ token: 't', nested: { secret: 's' } });
  });

  it('redacts secret-looking values whatever their key', () => {
    expect(redact({ target: 'postgres://admin:pw@db:5432/x', note: 'used hp_tok_abc123', url: 'https://example.com/a' })).toEqual({
      target: REDACTED,
      note: REDACTED,
      url: 'https://example.com/a',
    });
  });

  it('keeps null values of secret keys (nothing to hide) and ordinary keys', () => {
    expect(redact({ password: null, resource: 'db1', role: 'read' })).toEqual({ password: null, resource: 'db1', role: 'read' });
  });

  it('names secret keys', () => {
    expect(['password', 'dbPasswd', 'SECRET', 'refresh_token', 'Credential', 'dsn', 'sshKey', 'Authorization'].every(isSecretKey)).toBe(true);
    expect(['user', 'resource', 'role', 'reason', 'ticket'].some(isSecretKey)).toBe(false);
  });

  it('refuses cyclic data', () => {
    const data: Record<string, unknown> = {};
    data.me = data;
    expect(() => redact(data)).toThrow('cyclic');
  });
});
