import { execFile } from 'node:child_process';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bind, closeStatement, copyData, copyDone, copyFail, cstr, execute, sync, typed } from '../../../test/support/frontend-messages.js';
import { startGatewayFixtureWithAdmin, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawStartup } from '../../../test/support/gateway-raw-client.js';
import * as ser from './serializer.js';

/**
 * Statements a client can get run on the target must be on the record, with their own text and
 * their own results, however it orders, pipelines or cuts its messages (cases found in review,
 * 2026-12-01: each ran a statement the audit log did not show, or showed with another's text).
 */
let fx: GatewayFixture;
let admin: pg.Client;
let stop: (() => Promise<void>) | undefined;
beforeAll(async () => ({ fx, admin, stop } = await startGatewayFixtureWithAdmin()));
afterAll(() => stop?.());

/** The table the COPY cases copy into, writable by the session's role. */
const copiedTable = async (): Promise<void> => {
  await admin.query('create table if not exists copied (a int)');
  await admin.query(`grant all on copied to ${fx.roles.rw.user}`);
};
const flush = () => typed('H', Buffer.alloc(0));

/** Bytes received, and a wait for the n-th ReadyForQuery (or the first ErrorResponse). */
function collect(s: TLSSocket) {
  let buf = Buffer.alloc(0);
  s.on('data', (d: Buffer) => (buf = Buffer.concat([buf, d])));
  const count = (type: number): number => {
    let n = 0;
    for (let i = 0; i + 5 <= buf.length; ) {
      if (buf[i] === type) n++;
      i += 1 + buf.readInt32BE(i + 1);
    }
    return n;
  };
  const until = async (type: number, n: number): Promise<string> => {
    for (let t = 0; count(type) < n; t++) {
      if (t > 500) throw new Error(`no '${String.fromCharCode(type)}' #${n} in ${buf.toString('latin1')}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const text = buf.toString('latin1');
    buf = Buffer.alloc(0);
    return text;
  };
  return { ready: (n = 1) => until(0x5a, n), error: () => until(0x45, 1), until };
}

async function session(guardrails: string[] = []): Promise<{ s: TLSSocket; sessionId: string; c: ReturnType<typeof collect> }> {
  const before = fx.sink.ofType('gateway.session.start').length;
  const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ role: 'write', guardrails })));
  for (let t = 0; fx.sink.ofType('gateway.session.start').length === before; t++) {
    if (t > 200) throw new Error('no session.start');
    await new Promise((r) => setTimeout(r, 10));
  }
  const sessionId = fx.sink.ofType('gateway.session.start').at(-1)?.data.sessionId as string;
  return { s, sessionId, c: collect(s) };
}

/** The session's statement events (type and the fields that matter here), once it has ended. */
async function statements(sessionId: string): Promise<Array<Record<string, unknown>>> {
  for (let t = 0; !fx.sink.ofType('gateway.session.end').some((e) => e.data.sessionId === sessionId); t++) {
    if (t > 300) throw new Error('session did not end');
    await new Promise((r) => setTimeout(r, 10));
  }
  return fx.sink.events
    .filter((e) => e.data.sessionId === sessionId && !e.type.startsWith('gateway.session'))
    .map((e) => {
      const { sessionId: _s, durationMs: _d, ...rest } = e.data as Record<string, unknown>;
      return { type: e.type, ...rest };
    });
}

const rowExists = async (id: number): Promise<boolean> => (await admin.query('select 1 from items where id = $1', [id])).rowCount === 1;

describe('gateway audit: every statement the target may run is on the record', () => {
  it('settings the target is asked to make at login are on the record (a session can read one back and run it)', async () => {
    const before = fx.sink.ofType('gateway.session.start').length;
    const env = { ...fx.env(fx.grant({ role: 'write' })), PGOPTIONS: '-c search_path=public,pg_temp -c work_mem=8MB -c role=postgres', PGAPPNAME: 'audit-test' };
    const r = await promisify(execFile)('psql', ['-X', '-At', '-c', "select current_setting('search_path')"], { env });
    expect(r.stdout.trim()).toBe('public,pg_temp');
    for (let t = 0; fx.sink.ofType('gateway.session.start').length === before && t < 200; t++) await new Promise((res) => setTimeout(res, 10));
    const start = fx.sink.ofType('gateway.session.start').slice(before).at(-1);
    // `role` is not forwarded (a client cannot pick its role at login), so it is not on the list.
    expect(start?.data).toMatchObject({ applicationName: 'audit-test', settings: ['search_path=public,pg_temp', 'work_mem=8MB', 'application_name=audit-test'] });
  });

  it('a statement sent together with Terminate is audited with its result, though the client has gone', async () => {
    const { s, sessionId } = await session();
    s.write(Buffer.concat([ser.query("insert into items values (5001, 'sent with X')"), ser.terminate()]));
    s.destroy();
    const events = await statements(sessionId);
    // The session ends once the target answered it (its outcome used to be "unknown").
    expect(events).toEqual([{ type: 'gateway.query', sql: "insert into items values (5001, 'sent with X')", tags: ['INSERT 0 1'], rows: 1 }]);
    expect(await rowExists(5001)).toBe(true);
  });

  it('after an extended-protocol error, what the target skips is audited as skipped and later statements keep their own results', async () => {
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([ser.parse('', 'selec'), flush()]));
    await c.error();
    // The target discards everything up to the Sync: this query does not run.
    s.write(Buffer.concat([ser.query('select 1 /* skipped */'), sync()]));
    await c.ready();
    s.write(ser.query('delete from items where id = 2'));
    expect(await c.ready()).toContain('DELETE 1');
    s.end(ser.terminate());
    expect(await statements(sessionId)).toEqual([
      { type: 'gateway.statement', statementId: 1, name: '', sql: 'selec', error: '42601' },
      { type: 'gateway.query', sql: 'select 1 /* skipped */', tags: [], rows: null, error: 'skipped' },
      { type: 'gateway.query', sql: 'delete from items where id = 2', tags: ['DELETE 1'], rows: 1 },
    ]);
  });

  it('a Close and Parse the target skipped leave the name on the statement the target still has', async () => {
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([ser.parse('s1', 'delete from items where id = 3'), sync()]));
    await c.ready();
    // A failing Parse first: the target skips the Close and the new Parse of s1.
    s.write(Buffer.concat([ser.parse('', 'selec'), closeStatement('s1'), ser.parse('s1', 'select 1'), sync()]));
    await c.ready();
    s.write(Buffer.concat([bind('', 's1'), execute(''), sync()]));
    expect(await c.ready()).toContain('DELETE 1');
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.find((e) => e.tag === 'DELETE 1')).toMatchObject({ type: 'gateway.execute', statementId: 1, sql: 'delete from items where id = 3' });
    expect(events.filter((e) => e.sql === 'select 1')).toEqual([{ type: 'gateway.statement', statementId: 3, name: 's1', sql: 'select 1', error: 'skipped' }]);
    expect(await rowExists(3)).toBe(false);
  });

  it('after SQL-level PREPARE or DEALLOCATE, an execution by name is not credited to the old text', async () => {
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([ser.parse('s2', 'select 1'), sync()]));
    await c.ready();
    s.write(ser.query('deallocate s2; prepare s2 as delete from items where id = 20'));
    await c.ready();
    s.write(Buffer.concat([bind('', 's2'), execute(''), sync()]));
    expect(await c.ready()).toContain('DELETE 1');
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.find((e) => e.tag === 'DELETE 1')).toEqual({ type: 'gateway.execute', statementId: null, statement: 's2', tag: 'DELETE 1', rows: 1 });
    expect(events).toContainEqual({ type: 'gateway.statement', statementId: 1, name: 's2', sql: 'select 1', reason: 'names_uncertain' });
    expect(events).toContainEqual(expect.objectContaining({ type: 'gateway.query', sql: 'deallocate s2; prepare s2 as delete from items where id = 20' }));
  });

  it('a name redefined where no text shows it (dynamic SQL in a DO block or a function) is not credited to the old text (review)', async () => {
    const { s, sessionId, c } = await session();
    // In a DO block: its EXECUTE is enough to stop trusting names.
    s.write(Buffer.concat([ser.parse('s3', 'select 3'), sync()]));
    await c.ready();
    s.write(ser.query("do $$ begin execute 'deall' || 'ocate s3'; execute 'prep' || 'are s3 as delete from items where id = 21'; end $$"));
    await c.ready();
    s.write(Buffer.concat([bind('', 's3'), execute(''), sync()]));
    expect(await c.ready()).toContain('DELETE 1');
    // In a function created earlier: its call shows nothing, the answer gives it away.
    s.write(ser.query("create function pg_temp.redefine() returns void language plpgsql as $$ begin execute 'deall' || 'ocate s4'; execute 'prep' || 'are s4 as delete from items where id = 22'; end $$"));
    await c.ready();
    s.write(Buffer.concat([ser.parse('s4', 'select 4'), bind('', 's4'), execute(''), sync()]));
    expect(await c.ready()).toContain('SELECT 1');
    s.write(ser.query('select pg_temp.redefine()'));
    await c.ready();
    s.write(Buffer.concat([bind('', 's4'), execute(''), sync()]));
    expect(await c.ready()).toContain('DELETE 1');
    s.write(Buffer.concat([bind('', 's4'), execute(''), sync()]));
    expect(await c.ready()).toContain('DELETE 0');
    s.end(ser.terminate());
    expect(await rowExists(21)).toBe(false);
    expect(await rowExists(22)).toBe(false);
    const events = await statements(sessionId);
    expect(events.find((e) => e.tag === 'DELETE 1' && e.statement === 's3')).toEqual({ type: 'gateway.execute', statementId: null, statement: 's3', tag: 'DELETE 1', rows: 1 });
    expect(events).toContainEqual({ type: 'gateway.statement', statementId: 1, name: 's3', sql: 'select 3', reason: 'names_uncertain' });
    const s4 = events.filter((e) => e.type === 'gateway.execute' && (e.statementId === 2 || e.statement === 's4'));
    expect(s4).toEqual([
      { type: 'gateway.execute', statementId: 2, sql: 'select 4', name: 's4', tag: 'SELECT 1', rows: 1 },
      { type: 'gateway.execute', statementId: 2, tag: 'DELETE 1', rows: 1, mismatch: 'the target answered DELETE to a SELECT statement: it was redefined on the target, so its text here is not what ran' },
      // after that no name is trusted
      { type: 'gateway.execute', statementId: null, statement: 's4', tag: 'DELETE 0', rows: 0 },
    ]);
  });

  it('ordinary traffic keeps its names: no false mismatch after a nested comment, no name loss for an executed_at column (second review)', async () => {
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([
      ser.parse('s6', '/* a /* nested */ select */ delete from items where id = -5'), bind('', 's6'), execute(''),
      ser.parse('s7', "select name as executed_at from items where id = 1"), bind('', 's7'), execute(''), sync(),
    ]));
    await c.ready();
    s.write(Buffer.concat([bind('', 's6'), execute(''), sync()]));
    expect(await c.ready()).toContain('DELETE 0');
    s.end(ser.terminate());
    const events = (await statements(sessionId)).filter((e) => e.type === 'gateway.execute');
    expect(events).toEqual([
      { type: 'gateway.execute', statementId: 1, sql: '/* a /* nested */ select */ delete from items where id = -5', name: 's6', tag: 'DELETE 0', rows: 0 },
      { type: 'gateway.execute', statementId: 2, sql: 'select name as executed_at from items where id = 1', name: 's7', tag: 'SELECT 1', rows: 1 },
      { type: 'gateway.execute', statementId: 1, tag: 'DELETE 0', rows: 0 },
    ]);
  });

  it('COPY FROM STDIN through the extended protocol (as libpq runs it): the Syncs the target ignores while copying do not desynchronise anything', async () => {
    await copiedTable();
    const { s, sessionId, c } = await session();
    // Execute and Sync together; the data, CopyDone and another Sync once CopyInResponse came.
    for (const end of [copyDone(), copyFail('client gave up')]) {
      s.write(Buffer.concat([ser.parse('', 'copy copied from stdin'), bind('', ''), execute(''), sync()]));
      await c.until(0x47, 1);
      s.write(Buffer.concat([copyData('1\n'), copyData('2\n'), end, sync()]));
      await c.ready();
      s.write(ser.query('select 41 + 1 as n'));
      expect(await c.ready()).toContain('42');
    }
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.execute').map((e) => [e.tag, e.error ?? null])).toEqual([['COPY 2', null], [null, '57014']]);
    expect(events.filter((e) => e.type === 'gateway.query').map((e) => e.tags)).toEqual([['SELECT 1'], ['SELECT 1']]);
    expect((await admin.query('select count(*)::int as n from copied')).rows).toEqual([{ n: 2 }]);
  });

  it('a statement whose name is let go while its Parse is in flight still has its text on the record', async () => {
    const { s, sessionId, c } = await session();
    // One packet: the second Parse mentions "prepare", so names stop being trusted before the first is answered.
    s.write(Buffer.concat([ser.parse('s1', "update items set name = 'hidden write' where id = 7"), ser.parse('s2', "select 'prepared'"), bind('', 's1'), execute(''), sync()]));
    expect(await c.ready()).toContain('UPDATE 1');
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events).toContainEqual({ type: 'gateway.statement', statementId: 1, name: 's1', sql: "update items set name = 'hidden write' where id = 7", reason: 'names_uncertain' });
    // Bound after the names were let go: audited by name, its text in the event above.
    expect(events.find((e) => e.tag === 'UPDATE 1')).toMatchObject({ type: 'gateway.execute', statementId: null, statement: 's1' });
  });

  it('executions with no Sync yet are on the record as rolled back when a simple Query after them fails, unless its own COMMIT settled them (review)', async () => {
    const { s, sessionId, c } = await session();
    const unsynced = (id: number) => [ser.parse('', `insert into items values (${id}, 'unsynced')`), bind('', ''), execute('')];
    s.write(Buffer.concat([...unsynced(9601), ser.query('select 1/0')]));
    await c.ready();
    s.write(Buffer.concat([...unsynced(9602), ser.query('commit; select 1/0')]));
    await c.ready();
    s.end(ser.terminate());
    const events = await statements(sessionId);
    const [first, second] = events.filter((e) => e.type === 'gateway.execute');
    expect([first?.tag, second?.tag]).toEqual(['INSERT 0 1', 'INSERT 0 1']);
    expect(events.filter((e) => e.type === 'gateway.rolled_back')).toEqual([{ type: 'gateway.rolled_back', cause: 'error', error: '22012', executions: [first?.statementId] }]);
    expect([await rowExists(9601), await rowExists(9602)]).toEqual([false, true]);
  });

  it('a ROLLBACK outside an explicit transaction undoes the executions of the batch before it, and says so (review: PostgreSQL only warns "no transaction in progress")', async () => {
    const { s, sessionId, c } = await session();
    const run = (sql: string) => [ser.parse('', sql), bind('', ''), execute('')];
    s.write(Buffer.concat([...run("insert into items values (9606, 'then a rollback query')"), ser.query('rollback')]));
    await c.ready();
    s.write(Buffer.concat([...run("insert into items values (9607, 'then a rollback execute')"), ...run('rollback'), sync()]));
    await c.ready();
    s.end(ser.terminate());
    const events = await statements(sessionId);
    const inserts = events.filter((e) => e.type === 'gateway.execute' && e.tag === 'INSERT 0 1').map((e) => e.statementId);
    expect(events.filter((e) => e.type === 'gateway.rolled_back')).toEqual(inserts.map((id) => ({ type: 'gateway.rolled_back', cause: 'rollback', executions: [id] })));
    expect(inserts).toHaveLength(2);
    expect([await rowExists(9606), await rowExists(9607)]).toEqual([false, false]);
  });

  it('claims no rollback where the tags do not say one happened: PREPARE TRANSACTION, ROLLBACK TO SAVEPOINT, a DO that commits (third review: each was audited as rolled back, and committed)', async () => {
    const run = (sql: string) => Buffer.concat([ser.parse('', sql), bind('', ''), execute('')]);
    const cases: Array<[string, Buffer[], number | undefined]> = [
      // Outside a transaction block PREPARE TRANSACTION answers ROLLBACK (and commits, with max_prepared_transactions = 0).
      ['prepare transaction, extended', [Buffer.concat([run("insert into items values (9611, 'x')"), run("prepare transaction 'hp_a'"), sync()])], undefined],
      ['prepare transaction, simple', [Buffer.concat([run("insert into items values (9612, 'x')"), ser.query("prepare transaction 'hp_b'")])], undefined],
      ['a DO that commits, then an error', [Buffer.concat([run("insert into items values (9613, 'x')"), run('do $$ begin commit; end $$'), run('select 1/0'), sync()])], 9613],
      ['rollback to savepoint, extended', [ser.query('begin'), Buffer.concat([run('savepoint s'), run('rollback to s'), run("insert into items values (9615, 'x')"), run('savepoint t'), run('select 1/0'), sync()]), ser.query('rollback to t; commit')], 9615],
    ];
    for (const [name, writes, committed] of cases) {
      const { s, sessionId, c } = await session();
      for (const w of writes) {
        s.write(w);
        await c.ready();
      }
      s.end(ser.terminate());
      const events = await statements(sessionId);
      expect(events.filter((e) => e.type === 'gateway.rolled_back'), name).toEqual([]);
      if (committed !== undefined) expect(await rowExists(committed), name).toBe(true);
    }
  });

  it('no rollback is audited for executions an explicit transaction still holds when an error comes: a BEGIN in the failing Query, a COMMIT AND CHAIN (review: audited as rolled back, then committed)', async () => {
    const { s, sessionId, c } = await session();
    const run = (sql: string) => [ser.parse('', sql), bind('', ''), execute('')];
    // The unsynced insert joins the transaction the Query's BEGIN opens; the savepoint keeps it.
    s.write(Buffer.concat([...run("insert into items values (9604, 'kept by a savepoint')"), ser.query('begin; savepoint s; select 1/0')]));
    await c.ready();
    s.write(ser.query('rollback to s; commit'));
    await c.ready();
    // COMMIT AND CHAIN opens the next transaction at once.
    s.write(Buffer.concat([...run('begin'), ...run('commit and chain'), ...run("insert into items values (9605, 'after a chain')"), ...run('savepoint s'), ser.query('select 1/0')]));
    await c.ready();
    s.write(ser.query('rollback to s; commit'));
    await c.ready();
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.rolled_back')).toEqual([]);
    expect([await rowExists(9604), await rowExists(9605)]).toEqual([true, true]);
  });

  it('an error at Sync (a deferred constraint at the implicit commit) is on the record with the executions it undid', async () => {
    await admin.query('create table if not exists parents (id int primary key)');
    await admin.query('create table if not exists children (id int, parent int references parents deferrable initially deferred)');
    await admin.query(`grant all on parents, children to ${fx.roles.rw.user}`);
    const client = fx.client(fx.grant({ role: 'write' }));
    const before = fx.sink.ofType('gateway.session.start').length;
    await client.connect();
    await expect(client.query({ text: 'insert into children values ($1, $2)', values: [1, 999] })).rejects.toMatchObject({ code: '23503' });
    await client.end();
    await expect.poll(() => fx.sink.ofType('gateway.session.start').length).toBeGreaterThan(before);
    const sessionId = fx.sink.ofType('gateway.session.start').at(-1)?.data.sessionId as string;
    const events = await statements(sessionId);
    const insert = events.find((e) => e.type === 'gateway.execute');
    expect(insert).toMatchObject({ tag: 'INSERT 0 1' });
    expect(events).toContainEqual({ type: 'gateway.rolled_back', cause: 'commit', error: '23503', executions: [insert?.statementId] });
    expect((await admin.query('select count(*)::int as n from children')).rows).toEqual([{ n: 0 }]);
  });

  it('a COPY FROM STDIN that fails as it starts (before the target reads the Sync sent with it) leaves the session usable', async () => {
    await admin.query('create or replace view copied_view as select 1 as a');
    await admin.query(`grant all on copied_view to ${fx.roles.rw.user}`);
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([ser.parse('', 'copy copied_view from stdin'), bind('', ''), execute(''), sync()]));
    await c.until(0x45, 1);
    s.write(Buffer.concat([copyData('1\n'), copyDone(), sync()]));
    s.write(ser.query('select 6 * 7 as n'));
    // (Two or three ReadyForQuery came, depending on when the target read the first Sync.)
    expect(await c.until(0x43, 1)).toContain('42');
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.map((e) => [e.type, e.error ?? e.tags])).toEqual([['gateway.execute', '42809'], ['gateway.query', ['SELECT 1']]]);
  });

  it('after a COPY that fails as it starts, what the client sends next runs and is audited as run (fourth review)', async () => {
    await admin.query('create table if not exists copied (a int)');
    await admin.query('create or replace view copied_view as select 1 as a');
    await admin.query(`grant all on copied, copied_view to ${fx.roles.rw.user}`);
    const { s, sessionId, c } = await session();
    // The next statement after the ReadyForQuery; then copy data, CopyDone and a statement right behind CopyInResponse.
    s.write(Buffer.concat([ser.parse('', 'copy copied_view from stdin'), bind('', ''), execute(''), sync()]));
    await c.until(0x5a, 1);
    s.write(ser.query("insert into items values (7001, 'after a failed copy')"));
    expect(await c.ready()).toContain('INSERT 0 1');
    // Pipelined without waiting for CopyInResponse, its data reaches the target after it failed
    // (before reading anything): the gateway cannot tell that from a failure on the data, forgets
    // the Sync sent with the Execute, and answers one ReadyForQuery fewer than a direct connection
    // (see tracker.ts #waitOrTrack). With the Sync behind CopyDone, what follows runs either way.
    s.write(Buffer.concat([ser.parse('', 'copy copied_view from stdin'), bind('', ''), execute(''), sync(), copyData('1\n'), copyDone(), sync(), ser.query("insert into items values (7002, 'behind it')")]));
    expect(await c.until(0x43, 1)).toContain('INSERT 0 1');
    // Two COPYs in one Query, a Sync inside the second (the target ignores it).
    s.write(ser.query('copy copied from stdin; copy copied from stdin'));
    await c.until(0x47, 1);
    s.write(Buffer.concat([copyData('3\n'), copyDone()]));
    await c.until(0x47, 1);
    s.write(Buffer.concat([copyData('4\n'), sync(), copyDone()]));
    await c.ready();
    s.write(ser.query("insert into items values (7010, 'after two copies')"));
    expect(await c.ready()).toContain('INSERT 0 1');
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.query').map((e) => [e.sql, e.tags, e.error ?? null])).toEqual([
      ["insert into items values (7001, 'after a failed copy')", ['INSERT 0 1'], null],
      ["insert into items values (7002, 'behind it')", ['INSERT 0 1'], null],
      ['copy copied from stdin; copy copied from stdin', ['COPY 1', 'COPY 1'], null],
      ["insert into items values (7010, 'after two copies')", ['INSERT 0 1'], null],
    ]);
    for (const id of [7001, 7002, 7010]) expect(await rowExists(id), String(id)).toBe(true);
  });

  it('pipelined data for a later COPY waits its turn, a COPY whose text was let go still works, Syncs inside a COPY cost nothing (fifth review)', async () => {
    await copiedTable();
    const { s, sessionId, c } = await session();
    const copyExec = () => [ser.parse('', 'copy copied from stdin'), bind('', ''), execute('')];
    s.write(Buffer.concat([...copyExec(), sync()]));
    await c.until(0x47, 1);
    // This COPY's end, then a whole second COPY with its data, then a query: all in one write.
    s.write(Buffer.concat([copyData('1\n'), copyDone(), sync(), ...copyExec(), sync(), copyData('2\n'), copyDone(), sync(), ser.query('select 40 + 2 as n')]));
    expect(await c.until(0x43, 3)).toContain('42');
    // A COPY statement whose name is let go (a later statement mentions "prepare"), run by name.
    s.write(Buffer.concat([ser.parse('c1', 'copy copied from stdin'), sync()]));
    await c.ready();
    s.write(ser.query("select 'prepared'"));
    await c.ready();
    s.write(Buffer.concat([bind('', 'c1'), execute(''), sync()]));
    await c.until(0x47, 1);
    // A Sync after every row: counted, not queued.
    const rows: Buffer[] = [];
    for (let i = 0; i < 2000; i++) rows.push(copyData(`${i}\n`), sync());
    s.write(Buffer.concat([...rows, copyDone(), sync()]));
    await c.ready();
    s.write(ser.query('select 6 * 7 as n'));
    expect(await c.ready()).toContain('42');
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.execute').map((e) => e.tag)).toEqual(['COPY 1', 'COPY 1', 'COPY 2000']);
  });

  it('rolled_back is only claimed for what an implicit transaction undid (fourth review)', async () => {
    const { s, sessionId, c } = await session();
    const run = (sql: string) => [ser.parse('', sql), bind('', ''), execute('')];
    // A Query in the middle commits the implicit transaction; so does a COMMIT.
    s.write(Buffer.concat([...run("insert into items values (7004, 'kept')"), ser.query('select 1'), ...run('select 1/0'), sync()]));
    await c.ready(2);
    s.write(Buffer.concat([...run('begin'), ...run("insert into items values (7006, 'committed')"), ...run('commit'), ...run("insert into items values (7007, 'undone')"), ...run('select 1/0'), sync()]));
    await c.ready();
    s.end(ser.terminate());
    const events = await statements(sessionId);
    const rolledBack = events.filter((e) => e.type === 'gateway.rolled_back');
    const undone = events.find((e) => e.tag === 'INSERT 0 1' && e.sql === "insert into items values (7007, 'undone')");
    expect(rolledBack).toEqual([{ type: 'gateway.rolled_back', cause: 'error', error: '22012', executions: [undone?.statementId] }]);
    expect([await rowExists(7004), await rowExists(7006), await rowExists(7007)]).toEqual([true, true, false]);
  });

  it('an error later in an extended batch rolls back what the batch ran before it, and the audit says so', async () => {
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([
      ser.parse('', "insert into items values (9201, 'undone')"), bind('', ''), execute(''),
      ser.parse('', 'select 1 / (g - 2) from generate_series(1, 2) g'), bind('', ''), execute(''), sync(),
    ]));
    await c.ready();
    s.end(ser.terminate());
    const events = await statements(sessionId);
    const insert = events.find((e) => e.tag === 'INSERT 0 1');
    expect(events).toContainEqual({ type: 'gateway.rolled_back', cause: 'error', error: '22012', executions: [insert?.statementId] });
    expect(await rowExists(9201)).toBe(false);
  });

  it('a Bind that fails is audited with its Execute and error', async () => {
    const client = fx.client(fx.grant({ role: 'write' }));
    const before = fx.sink.ofType('gateway.session.start').length;
    await client.connect();
    await expect(client.query({ text: 'insert into items values ($1, $2)', values: ['notint', 'a'] })).rejects.toMatchObject({ code: '22P02' });
    await client.end();
    await expect.poll(() => fx.sink.ofType('gateway.session.start').length).toBeGreaterThan(before);
    const events = await statements(fx.sink.ofType('gateway.session.start').at(-1)?.data.sessionId as string);
    expect(events.find((e) => e.type === 'gateway.execute')).toMatchObject({ sql: 'insert into items values ($1, $2)', error: '22P02', tag: null });
  });

  it('a portal fetched in parts reports the rows of each part, and a named portal is named', async () => {
    const { s, sessionId, c } = await session();
    s.write(Buffer.concat([ser.parse('', 'select g from generate_series(1, 5) g'), bind('cur', ''), typed('E', Buffer.concat([cstr('cur'), Buffer.from([0, 0, 0, 2])])), flush()]));
    await c.until(0x73, 1); // PortalSuspended
    s.write(Buffer.concat([typed('E', Buffer.concat([cstr('cur'), Buffer.from([0, 0, 0, 2])])), typed('E', Buffer.concat([cstr('cur'), Buffer.from([0, 0, 0, 2])])), sync()]));
    await c.ready();
    s.end(ser.terminate());
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.execute').map((e) => [e.portal, e.rows, e.suspended ?? false])).toEqual([['cur', 2, true], ['cur', 2, true], ['cur', 1, false]]);
  });

  it('a statement sent with Terminate runs to its end on the target, as on a direct connection', async () => {
    const { s, sessionId } = await session();
    s.write(Buffer.concat([ser.query("insert into items select 9400, pg_sleep(0.3)::text"), ser.terminate()]));
    const events = await statements(sessionId);
    expect(events).toEqual([expect.objectContaining({ type: 'gateway.query', tags: ['INSERT 0 1'] })]);
    expect(await rowExists(9400)).toBe(true);
    s.destroy();
  });

  it('a statement waiting for its check never overtakes what waits behind a COPY sent before it (review of the parser thread)', async () => {
    await admin.query('create table if not exists ordered (seq serial, v text)');
    await admin.query(`grant all on ordered, ordered_seq_seq to ${fx.roles.rw.user}`);
    const { s, sessionId, c } = await session(['truncate']);
    s.write(ser.query("insert into ordered(v) values ('A')")); // A is checked now, and cached
    await c.ready();
    await admin.query('delete from ordered');
    fx.gateway.parser.pause(); // B's check takes a while
    try {
      s.write(Buffer.concat([
        // Text that looks like COPY … FROM STDIN: what follows waits for the target's answer to it.
        ser.parse('', "select 'copy' as a, 'from stdin' as b"), bind('', ''), execute(''), sync(),
        ser.query("insert into ordered(v) values ('A')"),
        ser.query("insert into ordered(v) values ('B')"),
      ]));
      await expect.poll(() => fx.gateway.parser.waiting).toBe(1);
      await new Promise((r) => setTimeout(r, 300)); // the target answers the COPY-looking statement meanwhile
    } finally {
      fx.gateway.parser.resume();
    }
    await c.ready(3);
    expect((await admin.query('select v from ordered order by seq')).rows.map((r) => r.v)).toEqual(['A', 'B']);
    s.end(ser.terminate());
    expect((await statements(sessionId)).map((e) => e.sql)).toEqual([
      "insert into ordered(v) values ('A')",
      "select 'copy' as a, 'from stdin' as b",
      "insert into ordered(v) values ('A')",
      "insert into ordered(v) values ('B')",
    ]);
  });

  it('a malformed message sent with the login ends the session as a protocol error, after what came before it (third review)', async () => {
    const grant = fx.grant({ role: 'write' });
    const s = await rawStartup(fx.port);
    s.write(Buffer.concat([ser.passwordMessage(fx.authority.token(grant)), ser.query('select 1'), typed('B', Buffer.from([0]))]));
    const ended = async () => fx.sink.ofType('gateway.session.end').find((e) => e.grantId === grant);
    await expect.poll(ended).toBeDefined();
    expect((await ended())?.data.reason).toBe('protocol_error');
    // A session that had logged in is not a refused login.
    expect(fx.sink.ofType('gateway.refused').filter((e) => e.grantId === grant)).toEqual([]);
    s.destroy();
  });

  it('bytes after a Terminate that do not frame change nothing: what came before it runs to its end (review: a protocol error, and the cut stopped it)', async () => {
    const unframed = Buffer.from([0x51, 0, 0, 0, 1]); // a length below 4
    const endOf = (sessionOrGrant: (e: { grantId?: string; data: Record<string, unknown> }) => boolean) => fx.sink.ofType('gateway.session.end').find(sessionOrGrant)?.data.reason;
    // Sent with the login…
    const grant = fx.grant({ role: 'write' });
    const s = await rawStartup(fx.port);
    s.on('error', () => {});
    s.write(Buffer.concat([ser.passwordMessage(fx.authority.token(grant)), ser.query("insert into items select 9501, pg_sleep(0.3)::text"), ser.terminate(), unframed]));
    await expect.poll(() => endOf((e) => e.grantId === grant), { timeout: 10_000 }).toBe('client_terminate');
    expect(await rowExists(9501)).toBe(true);
    s.destroy();
    // …and after it.
    const later = await session();
    later.s.write(Buffer.concat([ser.query("insert into items select 9502, pg_sleep(0.3)::text"), ser.terminate(), unframed]));
    expect(await statements(later.sessionId)).toEqual([expect.objectContaining({ type: 'gateway.query', tags: ['INSERT 0 1'] })]);
    expect(endOf((e) => e.data.sessionId === later.sessionId)).toBe('client_terminate');
    expect(await rowExists(9502)).toBe(true);
    later.s.destroy();
  });

  it('an answer the gateway cannot match ends the session instead of being credited to another statement', async () => {
    // Simulated from the tracker's side: a Sync's ReadyForQuery with nothing pending cannot happen
    // unless the two sides disagree; the session must end with a protocol error.
    const { StatementTracker } = await import('./tracker.js');
    const { GuardrailChecker } = await import('./guardrails.js');
    const t = new StatementTracker('gws_x', { resource: 'db', role: 'r', guardrails: [], readOnly: false, storeParameters: false }, new GuardrailChecker(), () => {});
    expect(() => t.fromServer(0x5a, ser.readyForQuery('I'))).toThrow(/expected nothing/);
    t.fromClient(0x51, ser.query('select 1'));
    expect(() => t.fromServer(0x31, Buffer.from([0x31, 0, 0, 0, 4]))).toThrow(/answer to a Query/);
  });
});
