import { describe, expect, it } from 'vitest';
import { REDACTED, isSecretKey, redactedCanonicalJSON } from './redact.js';

const redact = (data: Record<string, unknown>): unknown => JSON.parse(redactedCanonicalJSON(data));

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

  it('writes canonical JSON: sorted keys, dates as ISO text, toJSON results of other objects still inspected', () => {
    const leaky = { toJSON: () => 'postgres://u:pw@h/db' };
    expect(redactedCanonicalJSON({ b: [1, { token: 't', z: null }], a: new Date(0), leaky, c: undefined })).toBe(
      `{"a":"1970-01-01T00:00:00.000Z","b":[1,{"token":"${REDACTED}","z":null}],"leaky":"${REDACTED}"}`,
    );
  });
});
