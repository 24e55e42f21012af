import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixtureWithAdmin, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { countReady, rawLogin } from '../../../test/support/gateway-raw-client.js';
import { eventually } from '../../../test/support/target-checks.js';
import { GuardrailChecker } from './guardrails.js';
import * as ser from './serializer.js';
import { StatementTracker } from './tracker.js';

/**
 * The guardrails parse SQL as UTF-8 with standard conforming strings. A session in which the
 * target reads the same bytes differently (backslash escapes, a client encoding whose characters
 * can end in a quote or backslash byte) would run statements the gateway never saw: each bypass
 * below created a table through a role that denies DDL (found in review, 2026-12-01).
 */
let fx: GatewayFixture;
let admin: pg.Client;
let stop: (() => Promise<void>) | undefined;
beforeAll(async () => ({ fx, admin, stop } = await startGatewayFixtureWithAdmin()));
afterAll(() => stop?.());

const run = promisify(execFile);
const until = async (ok: () => boolean): Promise<void> => {
  while (!ok()) await new Promise((r) => setTimeout(r, 10));
};
const tableExists = async (name: string): Promise<boolean> => (await admin.query('select to_regclass($1) as t', [`public.${name}`])).rows[0].t !== null;

describe('gateway: a session never reads SQL differently from the guardrails', () => {
  it('denies turning standard_conforming_strings off, so a backslash cannot hide a statement', async () => {
    const c = fx.client(fx.grant({ role: 'write', guardrails: ['ddl'] }));
    await c.connect();
    await expect(c.query('set standard_conforming_strings = off')).rejects.toThrow(/hallpass: statement denied .*\(lexing\)/);
    await expect(c.query("select set_config('standard_conforming_strings', 'off', false)")).rejects.toThrow(/\(lexing\)/);
    await expect(c.query("update pg_settings set setting = 'off' where name = 'standard_conforming_strings'")).rejects.toThrow(/hallpass: statement denied/);
    // The same string the target would have split in two, under the session's real setting: one SELECT.
    expect((await c.query("select 'x\\' -- '; create table pwned_scs(id int); select 'ok'")).rows).toEqual([{ '?column?': 'x\\' }]);
    expect((await c.query('show standard_conforming_strings')).rows).toEqual([{ standard_conforming_strings: 'on' }]);
    await c.end();
    expect(await tableExists('pwned_scs')).toBe(false);
  });

  it('denies switching to a client encoding that hides quotes and backslashes in characters', async () => {
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ role: 'write', guardrails: ['ddl'] })));
    const answer = new Promise<string>((resolve) => {
      let got = '';
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('Z\0\0\0\x05')) resolve(got);
      });
    });
    s.write(ser.query("set client_encoding = 'SJIS'"));
    expect(await answer).toContain('(lexing)');
    s.end(ser.terminate());
  });

  it('refuses a session the target starts in such an encoding (asked for at startup)', async () => {
    const env = { ...fx.env(fx.grant({ role: 'write', guardrails: ['ddl'] })), PGCLIENTENCODING: 'SJIS' };
    const r = await run('psql', ['-X', '-c', 'select 1'], { env }).then(() => undefined, (e: { stderr: string }) => e);
    expect(r?.stderr).toContain('the gateway cannot check statements in this session: client encoding "SJIS" is not UTF8');
    for (let t = 0; !fx.sink.ofType('gateway.refused').some((e) => e.data.code === 'unsafe_settings') && t < 100; t++) await new Promise((res) => setTimeout(res, 10));
    expect(fx.sink.ofType('gateway.refused').find((e) => e.data.code === 'unsafe_settings')?.data).toMatchObject({ message: expect.stringContaining('client encoding "SJIS"') });
    // A role without guardrails has nothing to bypass: it may use any encoding.
    const free = await run('psql', ['-X', '-At', '-c', 'show client_encoding'], { env: { ...fx.env(fx.grant({ role: 'write' })), PGCLIENTENCODING: 'SJIS' } });
    expect(free.stdout.trim()).toBe('SJIS');
  });

  it('a LATIN1 session is refused, and bytes that are not UTF-8 cannot make two dollar-quote tags look alike (second review, 2026-12-02)', async () => {
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ role: 'write', guardrails: ['ddl'] })));
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const ready = async (n: number): Promise<void> => {
      for (let t = 0; got.split('Z\0\0\0\x05').length - 1 < n && t < 500; t++) await new Promise((r) => setTimeout(r, 10));
    };
    s.write(ser.query("set client_encoding = 'LATIN1'"));
    await ready(1);
    // Only UTF8 (and SQL_ASCII) now: LATIN1 was allowed until a review on 2026-12-02 found EUC_JP.
    expect(got).toMatch(/hallpass: statement denied on app for role write \(lexing\): SET client_encoding/);
    got = '';
    // Decoded as UTF-8, $é$ and $è$ both read $\uFFFD$: one SELECT of three strings. The target
    // reads a SELECT, a CREATE TABLE and a SELECT.
    const e = Buffer.from([0xe9]);
    const g = Buffer.from([0xe8]);
    const sql = Buffer.concat([
      Buffer.from('SELECT $'), e, Buffer.from('$ $'), g, Buffer.from('$, $'), e,
      Buffer.from('$; create table pwned_latin1(id int); SELECT $'), g, Buffer.from('$, $'), e, Buffer.from('$ $'), g, Buffer.from('$'),
    ]);
    const len = Buffer.alloc(4);
    len.writeInt32BE(4 + sql.length + 1);
    s.write(Buffer.concat([Buffer.from('Q'), len, sql, Buffer.from([0])]));
    await ready(2);
    expect(got).toContain('hallpass: statement denied');
    s.end(ser.terminate());
    expect(await tableExists('pwned_latin1')).toBe(false);
  });

  it('refuses a checked session on a database whose encoding is not UTF8, and starts a checked session in UTF8 (review 2026-12-02)', async () => {
    // EUC_JP reads two byte sequences as one character: statements are converted into it.
    await admin.query("create database enc_eucjp encoding 'EUC_JP' lc_collate 'C' lc_ctype 'C' template template0");
    await admin.query("create database enc_ascii encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C' template template0");
    const on = (database: string, rails: string[]) => fx.grant({ role: 'write', guardrails: rails, upstream: { database } });
    const checked = fx.client(on('enc_eucjp', ['ddl']));
    await expect(checked.connect()).rejects.toThrow(/the database's encoding "EUC_JP" is not UTF8/);
    // A role without guardrails has nothing the encoding could hide.
    const free = fx.client(on('enc_eucjp', []));
    await free.connect();
    await free.end();
    // With no client encoding of the client's own, a checked session starts in UTF8, so RESET
    // goes back to UTF8 (not to the database's SQL_ASCII); an unchecked one in the database's.
    const shown = async (grantId: string): Promise<string> => {
      const s = await rawLogin(fx.port, fx.authority.token(grantId));
      const answer = await new Promise<string>((r) => {
        let got = '';
        s.on('data', (d: Buffer) => {
          got += d.toString('latin1');
          if (got.includes('Z\0\0\0\x05')) r(got);
        });
        s.write(ser.query('reset client_encoding; show client_encoding'));
      });
      s.end(ser.terminate());
      // The DataRow: 'D', its length, one column, the value's length, the value.
      const row = Buffer.from(answer, 'latin1').subarray(answer.indexOf('D'));
      return row.subarray(11, 11 + row.readInt32BE(7)).toString('latin1');
    };
    expect(await shown(on('enc_ascii', ['ddl']))).toBe('UTF8');
    expect(await shown(on('enc_ascii', []))).toBe('SQL_ASCII');
  });

  it('tells statement names apart byte for byte in a SQL_ASCII session, so each execution is audited with its own text (third review)', async () => {
    await admin.query("create database names_ascii encoding 'SQL_ASCII' lc_collate 'C' lc_ctype 'C' template template0");
    const { default: pgClient } = await import('pg');
    const db = new pgClient.Client({ connectionString: fx.target.adminUrl('names_ascii') });
    await db.connect();
    try {
      await db.query(`create table items (id int primary key, name text); insert into items values (1, 'one'), (2, 'two'); grant all on items to ${fx.roles.rw.user}`);
      const g = fx.grant({ role: 'write', guardrails: ['ddl'], upstream: { database: 'names_ascii' } });
      const s = await rawLogin(fx.port, fx.authority.token(g));
      const msg = (t: string, body: Buffer): Buffer => {
        const h = Buffer.alloc(5);
        h.write(t, 0, 'latin1');
        h.writeInt32BE(body.length + 4, 1);
        return Buffer.concat([h, body]);
      };
      const z = Buffer.from([0]);
      const parse = (name: number, sql: string) => msg('P', Buffer.concat([Buffer.from([name]), z, Buffer.from(sql), z, Buffer.from([0, 0])]));
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.write(ser.query("set client_encoding = 'SQL_ASCII'"));
      await until(() => got.includes('Z\0\0\0\x05'));
      got = '';
      // Two names that are two different bytes, each invalid UTF-8 (both decoded to U+FFFD).
      s.write(Buffer.concat([
        parse(0x81, "update items set name = 'evil' where id = 1"), parse(0x80, "update items set name = 'harmless' where id = 2"),
        msg('B', Buffer.concat([z, Buffer.from([0x81]), z, Buffer.from([0, 0, 0, 0, 0, 0])])), msg('E', Buffer.concat([z, Buffer.from([0, 0, 0, 0])])), msg('S', Buffer.alloc(0)),
      ]));
      await until(() => got.includes('Z\0\0\0\x05'));
      s.end(ser.terminate());
      expect((await db.query('select id, name from items order by id')).rows).toEqual([{ id: 1, name: 'evil' }, { id: 2, name: 'two' }]);
      await expect.poll(() => fx.sink.ofType('gateway.execute').filter((e) => e.grantId === g).length).toBe(1);
      // It was audited with the other statement's text ('harmless', id = 2).
      expect(fx.sink.ofType('gateway.execute').find((e) => e.grantId === g)?.data.sql).toBe("update items set name = 'evil' where id = 1");
    } finally {
      await db.end();
    }
  });

  it('refuses a session the target starts with standard_conforming_strings off (a role default)', async () => {
    const principal = fx.roles.rw.user;
    await admin.query(`alter role ${principal} set standard_conforming_strings = off`);
    try {
      const c = fx.client(fx.grant({ role: 'write', guardrails: ['ddl'] }));
      await expect(c.connect()).rejects.toThrow(/standard_conforming_strings is off/);
    } finally {
      await admin.query(`alter role ${principal} reset standard_conforming_strings`);
    }
  });

  it('denies functions that run SQL given as text (a way around every check)', async () => {
    const c = fx.client(fx.grant({ role: 'read', guardrails: ['ddl', 'write', 'escape', 'set_role'] }));
    await c.connect();
    await expect(c.query("select count(*) from ts_stat($q$select to_tsvector(set_config('default_transaction_read_only','off',false))$q$)")).rejects.toThrow(/ts_stat\(\) runs SQL given as text/);
    expect((await c.query('show default_transaction_read_only')).rows).toEqual([{ default_transaction_read_only: 'on' }]);
    await c.end();
  });

  it('ends a session whose target reports such a setting mid-session, whatever changed it', () => {
    const t = new StatementTracker('gws_x', { resource: 'app', role: 'write', guardrails: ['ddl'], readOnly: false, storeParameters: false }, new GuardrailChecker(), () => {});
    expect(() => t.fromServer(0x53, ser.parameterStatus('standard_conforming_strings', 'off'))).toThrow(/standard_conforming_strings is off/);
    expect(() => t.fromServer(0x53, ser.parameterStatus('client_encoding', 'BIG5'))).toThrow(/client encoding "BIG5"/);
    expect(() => t.fromServer(0x53, ser.parameterStatus('client_encoding', 'EUC_JP'))).toThrow(/client encoding "EUC_JP"/);
    expect(t.fromServer(0x53, ser.parameterStatus('client_encoding', 'UTF8'))).toBeInstanceOf(Buffer);
    const unchecked = new StatementTracker('gws_y', { resource: 'app', role: 'write', guardrails: [], readOnly: false, storeParameters: false }, new GuardrailChecker(), () => {});
    expect(unchecked.fromServer(0x53, ser.parameterStatus('standard_conforming_strings', 'off'))).toBeInstanceOf(Buffer);
  });
});

describe('gateway: checking statements cannot stall or exhaust the gateway', () => {
  it('denies a statement too long to parse on the event loop, and the session stays usable', async () => {
    const c = fx.client(fx.grant({ role: 'write', guardrails: ['ddl'] }));
    await c.connect();
    const huge = `select length('${'x'.repeat(300 * 1024)}') as n`;
    expect(huge.length).toBeGreaterThan(256 * 1024);
    await expect(c.query(huge)).rejects.toThrow(/\(unparsable\).*statements over 256 KiB are not parsed/);
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    await c.end();
    // A role without guardrails parses nothing, so its long statements go through.
    const free = fx.client(fx.grant({ role: 'write' }));
    await free.connect();
    expect((await free.query(huge)).rows).toEqual([{ n: 300 * 1024 }]);
    await free.end();
  });

  it('holds a session that spends more than its share of the event loop on parsing', () => {
    let clock = 0;
    const costly = { parseMs: 0, needsParse: () => false, check(this: { parseMs: number }) { this.parseMs += 400; return { allowed: true } as const; } } as unknown as GuardrailChecker;
    const t = new StatementTracker('gws_p', { resource: 'app', role: 'write', guardrails: ['ddl'], readOnly: false, storeParameters: false }, costly, () => {}, () => clock);
    expect(t.parseBackoffMs()).toBe(0);
    t.fromClient(0x51, ser.query('select 1'));
    // 400 ms parsed against a 250 ms burst at a 10% share: 1.5 s before reading on.
    expect(t.parseBackoffMs()).toBeCloseTo(1500);
    clock += 1000;
    expect(t.parseBackoffMs()).toBeCloseTo(500);
    clock += 500;
    expect(t.parseBackoffMs()).toBe(0);
  });

  it('parses off the event loop: while a statement waits for its check, other sessions run and a revocation cuts it, unsent', async () => {
    const slow = fx.grant({ role: 'write', guardrails: ['truncate'] });
    const a = fx.client(slow);
    a.on('error', () => {});
    await a.connect();
    const parser = fx.gateway.parser;
    parser.pause(); // every check not yet started waits: a statement whose parse takes long
    try {
      const outcome = a.query('create table parsed_late(id int)').then(() => 'ran', (e: Error) => e.message);
      await until(() => parser.waiting === 1);
      // The event loop relays other sessions meanwhile, guarded ones included.
      const b = fx.client(fx.grant({ role: 'write', guardrails: ['truncate'] }));
      await b.connect();
      expect((await b.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
      await b.end();
      expect(await fx.gateway.endGrant(slow, 'revoked')).toBe(1);
      expect(await outcome).toMatch(/hallpass: access to app revoked/);
    } finally {
      parser.resume();
    }
    await until(() => parser.waiting === 0);
    // The statement never reached the target, and nothing says it ran.
    expect(await tableExists('parsed_late')).toBe(false);
    const sessionId = fx.sink.ofType('gateway.session.start').find((e) => e.grantId === slow)?.data.sessionId;
    await until(() => fx.sink.ofType('gateway.session.end').some((e) => e.data.sessionId === sessionId));
    expect(fx.sink.events.filter((e) => e.data.sessionId === sessionId).map((e) => e.type)).toEqual(['gateway.session.start', 'gateway.session.end']);
  });

  it('sends what the client pipelined behind a statement being checked once it is checked, in order, Terminate last', async () => {
    const grant = fx.grant({ role: 'write', guardrails: ['truncate'] });
    const s = await rawLogin(fx.port, fx.authority.token(grant));
    fx.gateway.parser.pause();
    try {
      // Sent in one write, and the client leaves at once: a direct connection runs all three.
      s.end(Buffer.concat([
        ser.query('create table parsed_order(id int)'),
        ser.query('insert into parsed_order values (1), (2)'),
        ser.query('truncate parsed_order'),
        ser.terminate(),
      ]));
      await until(() => fx.gateway.parser.waiting === 1);
    } finally {
      fx.gateway.parser.resume();
    }
    const sessionId = () => fx.sink.ofType('gateway.session.start').find((e) => e.grantId === grant)?.data.sessionId;
    await until(() => fx.sink.ofType('gateway.session.end').some((e) => e.data.sessionId === sessionId()));
    // The session's end is audited when the gateway has passed everything on; as on a direct
    // connection the target may still be running it then (CI, loaded host: the table was not there yet).
    const count = async (): Promise<number> => ((await tableExists('parsed_order')) ? (await admin.query('select count(*)::int as n from parsed_order')).rows[0].n : -1);
    expect(await eventually(async () => (await count()) === 2)).toBe(true);
    const statements = fx.sink.ofType('gateway.query').filter((e) => e.data.sessionId === sessionId());
    // In the order sent, each once; the client left before the answers came, so some may be in flight at the end.
    expect(statements.map((e) => [e.data.sql, (e.data.denied as { guardrail?: string } | undefined)?.guardrail ?? null])).toEqual([
      ['create table parsed_order(id int)', null],
      ['insert into parsed_order values (1), (2)', null],
      ['truncate parsed_order', 'truncate'],
    ]);
    expect(fx.sink.ofType('gateway.session.end').find((e) => e.data.sessionId === sessionId())?.data.reason).toBe('client_terminate');
    await admin.query('drop table parsed_order');
  });

  it('reads nothing more from a client while its statements wait for checks, however long its pipeline (second review: the session died past 1 MiB)', async () => {
    await admin.query('create table if not exists piped (id int)');
    await admin.query(`grant all on piped to ${fx.roles.rw.user}`);
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ role: 'write', guardrails: ['truncate'] })));
    const ready = countReady(s);
    // Every statement is new to the checker, so each waits for a parse, and all behind it wait too.
    // Reading on after each check let a chunk in per statement: past 1 MiB waiting, the session died.
    const pipeline = Buffer.concat(Array.from({ length: 32_000 }, (_, i) => ser.query(`insert into piped values (${i})`)));
    expect(pipeline.length).toBeGreaterThan(1024 * 1024);
    s.write(pipeline);
    await until(() => ready() >= 1000 || s.destroyed);
    expect(s.destroyed).toBe(false);
    s.destroy(); // the rest is never needed
    await admin.query('drop table piped');
  });

  it('a target that does not read stops the client, though each statement waits for its check (third review: the gateway buffered it all)', async () => {
    await admin.query('create table if not exists slowly (id int, v text)');
    await admin.query(`grant all on slowly to ${fx.roles.rw.user}`);
    // What the gateway holds in user space toward the target (the kernel's socket buffers aside).
    let peak = 0;
    const write = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, ...args: Parameters<typeof write>) {
      const r = write.apply(this, args);
      if (this.remotePort === fx.target.port) peak = Math.max(peak, this.writableLength);
      return r;
    } as typeof write;
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ role: 'write', guardrails: ['truncate'] })));
    try {
      s.write(ser.query('select pg_sleep(4)')); // the target reads nothing more meanwhile
      const pad = 'x'.repeat(60 * 1024);
      for (let i = 0; i < 500; i++) s.write(ser.query(`insert into slowly values (${i}, '${pad}')`)); // 30 MiB, each new to the checker
      await new Promise((r) => setTimeout(r, 2500));
      expect(peak).toBeLessThan(4 * 1024 * 1024);
      expect(s.writableLength).toBeGreaterThan(0); // the client was stopped, not drained into the gateway
    } finally {
      net.Socket.prototype.write = write;
      s.destroy();
    }
    await admin.query('drop table slowly');
  });

  it('keeps a bounded amount of prepared statement text per session, auditing what it lets go', () => {
    const events: Array<Record<string, unknown>> = [];
    const t = new StatementTracker('gws_m', { resource: 'app', role: 'write', guardrails: [], readOnly: false, storeParameters: false }, new GuardrailChecker(), (_type, data) => void events.push(data));
    const text = `select '${'x'.repeat(64 * 1024)}'`; // clipped to 64 KiB when kept
    for (let i = 0; i < 200; i++) {
      t.fromClient(0x50, ser.parse(`s${i}`, text));
      t.fromServer(0x31, Buffer.from([0x31, 0, 0, 0, 4])); // ParseComplete
    }
    // 200 × 64 KiB = 12.5 MiB sent; at most 8 MiB kept, the oldest audited as they were let go.
    expect(events.length).toBeGreaterThan(50);
    expect(events[0]).toMatchObject({ name: 's0', reason: 'memory' });
    expect((events[0]?.sql as string).length).toBe(64 * 1024 + 1);
  });
});
