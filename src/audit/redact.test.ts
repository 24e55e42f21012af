import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { auditSealKey } from '../secrets/derive.js';
import { prepareEdgeEvent } from './append.js';
import { REDACTED, isSecretKey, redactedCanonicalJSON } from './redact.js';
import { revealSealed, setAuditSealKey } from './seal.js';

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

  it('masks a token in an over-long claimed user name before cutting it (a cut token no longer looks like one: review 2026-12-02)', () => {
    const token = `hp_tok_${'A1b2C3d4E5'.repeat(4)}xyz`; // an API token's shape: 43 characters
    const actor = `${'x'.repeat(180)} ${token}`;
    const p = prepareEdgeEvent({ type: 'gateway.refused', actor, at: 1, data: {} });
    expect(p.actor).not.toContain('A1b2C3d4E5');
    expect(p.data).not.toContain('A1b2C3d4E5');
  });

  it('does not change the caller object', () => {
    const input = { token: 't', nested: { secret: 's' } };
    redact(input);
    expect(input).toEqual({ token: 't', nested: { secret: 's' } });
  });

  it('masks secrets inside any value where they stand, whatever the key', () => {
    const gw = 'hpgm_grt_899f971306f647d2.1796250727459.u0PGrWYwlTUy2toUOl57sIfP.moZlCFuqzsC4NAR-7Fg5WeHvvt6l3QxKTYOU_-MKk80';
    const mac = 'moZlCFuqzsC4NAR-7Fg5WeHvvt6l3QxKTYOU_-MKk80';
    const tok = `hp_tok_${'aZ09'.repeat(10)}abc`;
    const ref = `hp_ref_${'x-Y_'.repeat(10)}abc`;
    const ses = `hp_ses_${'Zm9v'.repeat(10)}Zm9`;
    expect(redact({
      target: 'postgres://admin:pw@db:5432/x',
      percent: 'psql "postgresql://app:p%27w%3B@db/x" -c 1',
      note: `used ${tok} and ${ref}, cookie ${ses}`,
      gateway: `PGPASSWORD=${gw} psql; also hpg_grt_1.2.3456789012345678.${mac}`,
      url: 'https://example.com/a',
      two: 'mysql://u:a@h and redis://:b@h',
    })).toEqual({
      target: `postgres://admin:${REDACTED}@db:5432/x`,
      percent: `psql "postgresql://app:${REDACTED}@db/x" -c 1`,
      note: `used ${REDACTED} and ${REDACTED}, cookie ${REDACTED}`,
      gateway: `PGPASSWORD=${REDACTED} psql; also ${REDACTED}`,
      url: 'https://example.com/a',
      two: `mysql://u:${REDACTED}@h and redis://:${REDACTED}@h`,
    });
  });

  it('seals the secrets of SQL text and parameters (recoverable), and stores them as sent without a key', () => {
    const sql = "ALTER ROLE ann PASSWORD 'hunter2'; -- x://a:b@h";
    const params = ['postgres://app:pw@db/x', 'plain'];
    expect(redact({ sql, params })).toEqual({ sql, params }); // no seal key in this process
    const key = auditSealKey(randomBytes(32));
    const tok43 = `hp_tok_${'b'.repeat(43)}`;
    setAuditSealKey(key);
    try {
      const stored = redact({ sql, params, note: 'x://a:b@h' }) as { sql: string; params: string[]; note: string };
      expect(stored.sql).toMatch(/^ALTER ROLE ann PASSWORD '\[sealed:v1\.[^\]]+\]'; -- x:\/\/a:\[sealed:v1\.[^\]]+\]@h$/);
      expect(stored.params[0]).toMatch(/^postgres:\/\/app:\[sealed:v1\.[^\]]+\]@db\/x$/);
      expect(stored.note).toBe(`x://a:${REDACTED}@h`); // not SQL: masked for good, as before
      expect(JSON.stringify(stored)).not.toMatch(/hunter2|:pw@/);
      // The master key's holder gets every byte back; another key opens nothing.
      expect(revealSealed(stored, key)).toEqual({ value: { sql, params, note: stored.note }, opened: 3, failed: 0 });
      expect(revealSealed(stored, auditSealKey(randomBytes(32))).failed).toBe(3);
      // A marker copied from the log into a statement is sealed with it: a reveal shows what was sent.
      const copied = `SELECT 1 /* ${stored.sql.slice(stored.sql.indexOf('[sealed:'), stored.sql.indexOf(']') + 1)} */`;
      const again = redact({ sql: copied, name: copied }) as { sql: string; name: string };
      expect(revealSealed(again, key)).toEqual({ value: { sql: copied, name: copied }, opened: 2, failed: 0 });
      // Values a session can read back (login settings, statement and portal names): sealed, not blanked.
      const readable = redact({ settings: ['application_name=postgres://app:s3cret@db/x', 'search_path=public'], name: 'x://u:DELETE%20FROM%20t@h', portal: tok43 }) as Record<string, unknown>;
      expect(JSON.stringify(readable)).not.toMatch(/s3cret|DELETE|\[redacted\]/);
      expect(revealSealed(readable, key)).toMatchObject({ value: { settings: ['application_name=postgres://app:s3cret@db/x', 'search_path=public'], name: 'x://u:DELETE%20FROM%20t@h', portal: tok43 }, opened: 3 });
      // A statement is never lost to masking: text that cannot be lexed safely is stored as sent.
      for (const odd of ["SELECT 1 FROM (VALUES (1)) AS __proto__(a) -- passw", "ALTER ROLE a PASSWORD 'x\\y'", "ALTER ROLE ann PASSWORD 'pw' -- é"]) {
        expect((redact({ sql: odd }) as { sql: string }).sql).toBe(odd);
      }
    } finally {
      setAuditSealKey(undefined);
    }
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
      `{"a":"1970-01-01T00:00:00.000Z","b":[1,{"token":"${REDACTED}","z":null}],"leaky":"postgres://u:${REDACTED}@h/db"}`,
    );
  });
});
