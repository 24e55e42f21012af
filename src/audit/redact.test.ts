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

  it('never lets a secret-looking pattern hide the statement around it', () => {
    // Each was once stored as "[redacted]" whole: a client could keep any statement off the record.
    expect(redact({ sql: 'DROP TABLE customers; -- x://a:b@' })).toEqual({ sql: `DROP TABLE customers; -- x://a:${REDACTED}@` });
    expect(redact({ sql: 'SELECT * FROM cards /* hp_tok_x */' })).toEqual({ sql: 'SELECT * FROM cards /* hp_tok_x */' });
    // A mask up to the next "@" would swallow a statement written between two comments; a password
    // with SQL structure in it is not masked at all.
    for (const sql of [
      'SELECT 1;/*x://a:*/DROP/**/TABLE/**/customers/*@*/',
      "SELECT 'x://a:'; DELETE FROM t; --@'",
      'SELECT 1 -- x://a:b\nDROP TABLE t; --@',
      "SELECT dblink('x://a:'||(SELECT secret FROM t)||'@h')",
    ]) expect(redact({ sql })).toEqual({ sql });
    // A token's characters carry no SQL structure either: only the token goes.
    const tok = `hp_tok_${'a'.repeat(43)}`;
    expect(redact({ sql: `SELECT 1 WHERE '${tok}' = ''; DROP TABLE t` })).toEqual({ sql: `SELECT 1 WHERE '${REDACTED}' = ''; DROP TABLE t` });
    // Found in a second review: a dollar quote carried the URL's prefix and "@" around a change,
    // and aliases shaped like token prefixes swallowed the arithmetic after them.
    for (const sql of [
      'UPDATE acct SET note=$a$x://u:$a$,balance=balance+1000000,memo=$a$@$a$ WHERE id=1',
      'UPDATE acct hpg_a SET balance=hpg_a.balance-1000000 WHERE id=1',
      'SELECT hp_tok_x.ssn FROM customers hp_tok_x',
      `SELECT ${tok}x`, // longer than a token: an identifier
    ]) expect(redact({ sql })).toEqual({ sql });
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
