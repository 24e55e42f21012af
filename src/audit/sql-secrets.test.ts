import { describe, expect, it } from 'vitest';
import { loadModule, scanSync } from 'libpg-query';
import { maskSqlPasswords, sqlPasswordSpans } from './sql-secrets.js';

const M = '[redacted]';
const mask = (sql: string): string => maskSqlPasswords(sql, M);

describe('maskSqlPasswords', () => {
  it('masks the password of role statements, in every spelling', () => {
    expect(mask("ALTER ROLE ann PASSWORD 'hunter2'")).toBe(`ALTER ROLE ann PASSWORD '${M}'`);
    expect(mask("create user bob with encrypted password 's3cret' valid until '2027-01-01'"))
      .toBe(`create user bob with encrypted password '${M}' valid until '2027-01-01'`);
    expect(mask("CREATE ROLE r LOGIN PASSWORD $$p'w$$")).toBe(`CREATE ROLE r LOGIN PASSWORD $$${M}$$`);
    expect(mask("CREATE ROLE r PASSWORD $x$p$$w$x$")).toBe(`CREATE ROLE r PASSWORD $x$${M}$x$`);
    expect(mask("ALTER GROUP g /* c */ PASSWORD -- c\n E'a\\'b'")).toBe(`ALTER GROUP g /* c */ PASSWORD -- c\n E'${M}'`);
    expect(mask("ALTER ROLE a PASSWORD 'it''s'")).toBe(`ALTER ROLE a PASSWORD '${M}'`);
    // psql's \password sends the SCRAM verifier: offline-crackable, so masked too.
    expect(mask(`ALTER USER "ann" PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b'`)).toBe(`ALTER USER "ann" PASSWORD '${M}'`);
    expect(mask("ALTER ROLE a PASSWORD NULL")).toBe('ALTER ROLE a PASSWORD NULL');
  });

  it('masks the password of user mappings and servers', () => {
    expect(mask("CREATE USER MAPPING FOR ann SERVER s OPTIONS (user 'ann', password 'pw1')"))
      .toBe(`CREATE USER MAPPING FOR ann SERVER s OPTIONS (user 'ann', password '${M}')`);
    expect(mask(`ALTER USER MAPPING FOR ann SERVER s OPTIONS (SET "password" 'pw2', ADD passfile '/x')`))
      .toBe(`ALTER USER MAPPING FOR ann SERVER s OPTIONS (SET "password" '${M}', ADD passfile '/x')`);
    expect(mask("ALTER SERVER s OPTIONS (ADD password 'pw3')")).toBe(`ALTER SERVER s OPTIONS (ADD password '${M}')`);
  });

  it('masks the password of a connection string literal', () => {
    expect(mask("SELECT dblink_connect('c', 'host=db dbname=x password=pw4 user=u')"))
      .toBe(`SELECT dblink_connect('c', 'host=db dbname=x password=${M} user=u')`);
    expect(mask("CREATE SUBSCRIPTION s CONNECTION 'host=db password = ''p w'' port=5' PUBLICATION p"))
      .toBe(`CREATE SUBSCRIPTION s CONNECTION 'host=db password = ''${M}'' port=5' PUBLICATION p`);
    expect(mask("SELECT dblink_connect(E'password=\\'a b\\' host=h')")).toBe(`SELECT dblink_connect(E'password=\\'${M}\\' host=h')`);
    expect(mask("select $$host=db PASSWORD='p w'$$")).toBe(`select $$host=db PASSWORD='${M}'$$`);
  });

  it('masks every statement of a multi-statement string, and only role statements by keyword', () => {
    expect(mask("SELECT 1; ALTER ROLE a PASSWORD 'x'; SELECT password 'y'; alter user b password 'z'"))
      .toBe(`SELECT 1; ALTER ROLE a PASSWORD '${M}'; SELECT password 'y'; alter user b password '${M}'`);
  });

  it('never hides SQL that runs', () => {
    // Each statement here runs something the audit must show; nothing in it may be masked.
    for (const sql of [
      "SELECT 1 /* PASSWORD ' */ ; DROP TABLE x; -- '",
      "ALTER ROLE a SET x = 1; /* password ' */ DELETE FROM t; -- '",
      "ALTER ROLE a -- password '\n; DELETE FROM t; SELECT '",
      "SELECT 'a PASSWORD '||secret_fn()||'b'",
      "UPDATE users SET password=newpass WHERE id = 1",
      "DO $$ BEGIN UPDATE u SET password=crypt_col; END $$",
      "SELECT dblink_exec('c', 'UPDATE u SET password=x WHERE true')",
      "CREATE TABLE t AS SELECT query_to_xml(password 'DELETE FROM t RETURNING 1', true, false, '')",
      'SELECT "password" FROM t',
      "ALTER ROLE a PASSWORD",
    ]) expect(mask(sql), sql).toBe(sql);
  });

  it('masks nothing where the bounds of a literal would depend on standard_conforming_strings', () => {
    // With standard_conforming_strings off, \' does not end the first literal.
    const sql = "ALTER ROLE a PASSWORD 'x\\'; DROP TABLE t; ALTER ROLE b PASSWORD '"
    expect(mask(sql)).toBe(sql);
  });

  it('masks to the end an unterminated password literal (a clipped statement)', () => {
    expect(mask("ALTER ROLE a PASSWORD 'abc")).toBe(`ALTER ROLE a PASSWORD '${M}`);
  });

  it('leaves text without a password alone, as the same string', () => {
    const s = "SELECT 'x', $1, $$y$$ FROM t";
    expect(mask(s)).toBe(s);
  });
});

describe('maskSqlPasswords against PostgreSQL\'s own scanner', () => {
  it('masks only inside string constants, for random statements built of tricky pieces', async () => {
    await loadModule();
    const pieces = [
      'ALTER ROLE a ', 'CREATE USER MAPPING FOR u SERVER s OPTIONS (', 'alter server s options(set ', 'PASSWORD ', 'password ',
      '"password" ', 'password=', 'host=h ', "'", "''", "E'", "e'\\'", "U&'", "n'", '$$', '$q$', '$1', 'a$q$', '/*', '*/', '--', '\n',
      ';', '(', ')', ',', '"', 'é', '😀', ' ', 'x', 'DROP TABLE t', 'SELECT ', '\\', '=',
    ];
    let seed = 42;
    const rand = (k: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % k; };
    let checked = 0;
    let masked = 0;
    for (let round = 0; round < 30000; round++) {
      let sql = '';
      const len = 1 + rand(24);
      for (let k = 0; k < len; k++) sql += pieces[rand(pieces.length)];
      let tokens: Array<{ start: number; end: number; tokenName: string; text: string }>;
      try {
        tokens = scanSync(sql).tokens;
      } catch {
        continue; // PostgreSQL could not lex it (an unterminated literal or comment)
      }
      checked++;
      const spans = sqlPasswordSpans(sql);
      if (spans.length > 0) masked++;
      // scanSync counts UTF-8 bytes; spans count UTF-16 code units.
      const byteAt = (i: number): number => Buffer.byteLength(sql.slice(0, i));
      for (const [from, to] of spans) {
        const inside = tokens.some((t) => (['SCONST', 'BCONST', 'XCONST'].includes(t.tokenName) || /^u&'/i.test(t.text)) && t.start < byteAt(from) && byteAt(to) < t.end);
        expect(inside, `${JSON.stringify(sql)} masks [${from}, ${to})`).toBe(true);
      }
    }
    expect(checked).toBeGreaterThan(5000);
    expect(masked).toBeGreaterThan(50);
  });
});
