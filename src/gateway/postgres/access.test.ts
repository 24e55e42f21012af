import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, TEST_USER, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { copyData } from '../../../test/support/frontend-messages.js';
import { rawLogin, receiveUntil } from '../../../test/support/gateway-raw-client.js';
import * as ser from './serializer.js';

const run = promisify(execFile);
let fx: GatewayFixture;

beforeAll(async () => {
  fx = await startGatewayFixture();
});
afterAll(async () => {
  await fx?.stop();
});

/** Runs psql and returns its exit code and stderr. */
async function psqlResult(env: NodeJS.ProcessEnv, sql: string): Promise<{ code: number; stderr: string; stdout: string }> {
  try {
    const { stdout, stderr } = await run('psql', ['-X', '-At', '-c', sql], { env });
    return { code: 0, stderr, stdout: stdout.trim() };
  } catch (e) {
    const err = e as { code?: number; stderr?: string; stdout?: string };
    return { code: err.code ?? -1, stderr: err.stderr ?? '', stdout: err.stdout ?? '' };
  }
}

async function flushed(): Promise<void> {
  await new Promise((r) => setTimeout(r, 30));
}

/** The token with the last character of its MAC changed (regression: setting it to 'A' left 1 token in 64 intact). */
const forge = (token: string): string => `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;

describe('refused attempts', () => {
  const cases: Array<[string, () => NodeJS.ProcessEnv, RegExp, string]> = [
    ['a bad token', () => ({ ...fx.env(fx.grant()), PGPASSWORD: 'hpg_not.a.token' }), /invalid gateway token/, 'bad_token'],
    ['a token signed with another key', () => ({ ...fx.env(fx.grant()), PGPASSWORD: forge(fx.authority.token(fx.grant())) }), /invalid gateway token/, 'bad_token'],
    ['an expired grant', () => fx.env(fx.grant({ expiresAt: new Date(Date.now() - 1000) })), /has expired/, 'expired'],
    ['a revoked grant', () => fx.env(fx.grant({ status: 'revoked' })), /was revoked/, 'revoked'],
    ['a grant not active yet', () => fx.env(fx.grant({ status: 'scheduled' })), /not active yet/, 'not_active'],
    ['the wrong resource', () => ({ ...fx.env(fx.grant()), PGDATABASE: 'billing' }), /this token is for app, not billing/, 'wrong_resource'],
    ['a grant of another user', () => fx.env(fx.grant(), { user: 'mallory' }), /belongs to another user/, 'not_owner'],
    ['a password outside TLS', () => fx.env(fx.grant(), { sslmode: 'disable' }), /requires TLS/, 'tls_required'],
  ];
  for (const [name, env, message, code] of cases) {
    it(`refuses ${name} with a clear error and an audit event with the client address`, async () => {
      const before = fx.sink.ofType('gateway.refused').length;
      const r = await psqlResult(env(), 'select 1');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(message);
      await flushed();
      const ev = fx.sink.ofType('gateway.refused').slice(before);
      expect(ev).toHaveLength(1);
      expect(ev[0]?.data).toMatchObject({ code, clientAddress: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
    });
  }

  it('refuses a replayed token and an expired token', async () => {
    const g = fx.grant();
    const env = fx.env(g);
    expect((await psqlResult(env, 'select 1')).code).toBe(0);
    const again = await psqlResult(env, 'select 1');
    expect(again.stderr).toMatch(/already used/);
    const stale = { ...env, PGPASSWORD: fx.authority.token(g, 1) };
    await new Promise((r) => setTimeout(r, 5));
    expect((await psqlResult(stale, 'select 1')).stderr).toMatch(/gateway token has expired/);
    await flushed();
    expect(fx.sink.ofType('gateway.refused').slice(-2).map((e) => e.data.code)).toEqual(['replayed', 'expired']);
  });
});

describe('cut-off', () => {
  async function sleepingPsql(grantId: string) {
    const child = spawn('psql', ['-X', '-c', 'select pg_sleep(600)'], { env: fx.env(grantId) });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', r));
    await waitFor(async () => (await sleeps()) === 1);
    return { exited, stderr: () => stderr };
  }

  it('cuts a psql session in pg_sleep(600) at the grant end, by its own timer, and cancels the query', async () => {
    const expiresAt = new Date(Date.now() + 2500);
    const g = fx.grant({ expiresAt });
    const p = await sleepingPsql(g);
    expect(await p.exited).not.toBe(0);
    expect(p.stderr()).toMatch(/FATAL: {2}hallpass: access to app expired/);
    await waitFor(async () => (await sleeps()) === 0);
    await flushed();
    const end = fx.sink.ofType('gateway.session.end').find((e) => e.grantId === g);
    expect(end?.data.reason).toBe('expired');
    expect(end?.at.getTime()).toBeLessThanOrEqual(expiresAt.getTime());
  });

  it('cuts every session of a revoked grant at once, mid-query', async () => {
    const g = fx.grant();
    const a = await sleepingPsql(g);
    const c = fx.client(g);
    await c.connect();
    c.on('error', () => {});
    expect(fx.gateway.sessions().filter((x) => x.grantId === g)).toEqual([
      expect.objectContaining({ userName: TEST_USER, resource: 'app' }),
      expect.objectContaining({ userName: TEST_USER, resource: 'app' }),
    ]);
    expect(await fx.gateway.endGrant(g, 'revoked')).toBe(2);
    expect(fx.gateway.sessions().filter((x) => x.grantId === g)).toEqual([]);
    expect(await a.exited).not.toBe(0);
    expect(a.stderr()).toMatch(/hallpass: access to app revoked/);
    await expect(c.query('select 1')).rejects.toThrow();
    await waitFor(async () => (await sleeps()) === 0);
    await flushed();
    expect(fx.sink.ofType('gateway.session.end').filter((e) => e.grantId === g).map((e) => e.data.reason)).toEqual(['revoked', 'revoked']);
    await c.end().catch(() => {});
  });

  it('ends even a statement that catches the cancel, once its session is cut (review)', async () => {
    const g = fx.grant();
    const c = fx.client(g);
    await c.connect();
    c.on('error', () => {});
    expect((await c.query('show client_connection_check_interval')).rows).toEqual([{ client_connection_check_interval: '1s' }]);
    const loop = "do $$ begin loop begin perform pg_sleep(600); exception when query_canceled then raise notice 'caught'; end; end loop; end $$";
    const running = c.query(loop).then(() => undefined, (e: Error) => e);
    const looping = () => sleeps('do $$ begin loop%');
    await waitFor(async () => (await looping()) === 1);
    expect(await fx.gateway.endGrant(g, 'revoked')).toBe(1);
    expect((await running)?.message).toMatch(/hallpass: access to app revoked/);
    // The cancel is caught and the loop goes on, until the target's connection check sees the
    // gateway gone (every second): without it the backend ran on for minutes.
    await waitFor(async () => (await looping()) === 0, 100);
  });

  it('runs nothing the client pipelined behind the statement a cut-off cancels (fourth review: 1,100+ inserts ran after it)', async () => {
    const admin = await fx.target.admin();
    try {
      await admin.query('create table after_cut (id int)');
      await admin.query(`grant all on after_cut to ${fx.roles.rw.user}`);
      const g = fx.grant();
      const s = await rawLogin(fx.port, fx.authority.token(g));
      s.on('error', () => {});
      s.resume();
      // One write: the inserts wait in the target's socket buffer behind the sleep.
      s.write(Buffer.concat([ser.query('select pg_sleep(600)'), ...Array.from({ length: 2000 }, (_, i) => ser.query(`insert into after_cut values (${i})`))]));
      await waitFor(async () => (await sleeps()) === 1);
      expect(await fx.gateway.endGrant(g, 'revoked')).toBe(1);
      // The backend is gone, so nothing more can run; before, it ran the inserts after the cancel.
      const backends = async () => (await admin.query<{ n: number }>('select count(*)::int as n from pg_stat_activity where usename = $1', [fx.roles.rw.user])).rows[0]?.n;
      await waitFor(async () => (await backends()) === 0);
      expect((await admin.query('select count(*)::int as n from after_cut')).rows).toEqual([{ n: 0 }]);
      s.destroy();
    } finally {
      await admin.query('drop table if exists after_cut');
      await admin.end();
    }
  });

  it('a client killed while its statement runs: the statement is stopped soon after, as before half-close support (review: pg_sleep ran to its end)', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    s.on('error', () => {});
    s.resume();
    s.write(ser.query('select pg_sleep(600)'));
    await waitFor(async () => (await sleeps()) === 1);
    s.destroy();
    // The target's connection check (every second) sees the gateway's side closed.
    await waitFor(async () => (await sleeps()) === 0);
    expect(await sessionEndReason(g)).toBe('client_closed');
  });

  it('runs what a client sent before its Terminate to its end and commits it, as a direct connection does, though the client has gone (review: rolled back)', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    s.on('error', () => {});
    // As libpq's last statement: sent with a Terminate, and the socket closed at once.
    const sql = "insert into items values (9101, 'behind a terminate'); select pg_sleep(1.5)";
    s.end(Buffer.concat([ser.query(sql), ser.terminate()]), () => s.destroy());
    await sessionEndReason(g);
    const admin = await fx.target.admin();
    try {
      expect((await admin.query('select name from items where id = 9101')).rows).toEqual([{ name: 'behind a terminate' }]);
    } finally {
      await admin.end();
    }
    const events = fx.sink.events.filter((e) => e.grantId === g).map((e) => [e.type, e.data.reason ?? e.data.tags ?? null, e.data.outcome ?? null]);
    expect(events).toEqual([
      ['gateway.session.start', null, null],
      ['gateway.query', ['INSERT 0 1', 'SELECT 1'], null],
      ['gateway.session.end', 'client_terminate', null],
    ]);
  });

  it('still cuts a statement sent before a Terminate when the grant is revoked while it runs', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    s.on('error', () => {});
    s.end(Buffer.concat([ser.query('select pg_sleep(600)'), ser.terminate()]), () => s.destroy());
    await waitFor(async () => (await sleeps()) === 1);
    expect(await fx.gateway.endGrant(g, 'revoked')).toBe(1);
    await waitFor(async () => (await sleeps()) === 0);
    expect(await sessionEndReason(g)).toBe('revoked');
  });

  it('records a target that ends a half-closed session itself as the target closing, not the client (review: client_closed)', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    s.on('error', () => {});
    const got = receiveUntil(s, () => false);
    s.end(ser.query('select pg_sleep(600)')); // half-closed: it still reads
    await waitFor(async () => (await sleeps()) === 1);
    const admin = await fx.target.admin();
    try {
      await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where query = 'select pg_sleep(600)'");
    } finally {
      await admin.end();
    }
    expect((await got).toString('latin1')).toMatch(/57P01/);
    expect(await sessionEndReason(g)).toBe('upstream_closed');
  });

  it('a client that leaves inside a COPY it never ended, by Terminate or by its FIN: its session ends at once, as its own leaving (the target answers with a FATAL), and the COPY is rolled back', async () => {
    const cases = [[ser.terminate(), 'client_terminate'], [Buffer.alloc(0), 'client_closed']] as const;
    // Once the COPY started, or in the same write as it (review: then recorded as upstream_closed).
    for (const [[leave, reason], waitForCopy] of cases.flatMap((c) => [[c, true], [c, false]] as const)) {
      const g = fx.grant();
      const s = await rawLogin(fx.port, fx.authority.token(g));
      s.on('error', () => {});
      const copy = ser.query('copy items from stdin');
      if (waitForCopy) {
        const got = receiveUntil(s, (b) => b.includes('G'));
        s.write(copy);
        await got;
      }
      // CopyData of one row, then the Terminate (or nothing), and the FIN: no CopyDone ever comes.
      s.end(Buffer.concat([waitForCopy ? Buffer.alloc(0) : copy, copyData('9201\tcopied, never ended\n'), leave]));
      // The target answers a Terminate inside a COPY with a FATAL (08P01): still the client's leaving, not the target's.
      expect(await sessionEndReason(g)).toBe(reason);
      s.destroy();
    }
    await waitFor(async () => (await sleeps('copy items%')) === 0);
    const admin = await fx.target.admin();
    try {
      expect((await admin.query('select count(*)::int as n from items where id = 9201')).rows).toEqual([{ n: 0 }]);
    } finally {
      await admin.end();
    }
  });

  it('a resync never moves a session\'s end earlier (its read may predate an extension: second review)', async () => {
    const g = fx.grant({ expiresAt: new Date(Date.now() + 1500) });
    const c = fx.client(g);
    await c.connect();
    try {
      fx.gateway.updateGrantExpiry(g, new Date(Date.now() + 3_600_000)); // the extension's event
      fx.gateway.lengthenGrant(g, new Date(Date.now() + 1500)); // a resync that read the store before it
      await new Promise((r) => setTimeout(r, 2000));
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end();
    }
  });

  it('keeps a session open past the old end after an extension', async () => {
    const g = fx.grant({ expiresAt: new Date(Date.now() + 1500) });
    const c = fx.client(g);
    await c.connect();
    try {
      fx.gateway.updateGrantExpiry(g, new Date(Date.now() + 3_600_000));
      await new Promise((r) => setTimeout(r, 2000));
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end();
    }
  });
});

describe('guardrails in a session', () => {
  it('denies a statement with a clear error, audits it, and the session stays usable', async () => {
    const c = fx.client(fx.grant({ guardrails: ['ddl', 'write_without_where', 'truncate'] }));
    await c.connect();
    try {
      await expect(c.query('drop table items')).rejects.toThrow(/hallpass: statement denied on app for role write \(ddl\): DROP is DDL/);
      await expect(c.query('select 1; /* hidden */ delete from items')).rejects.toThrow(/write_without_where/);
      await expect(c.query({ text: 'truncate items', values: [] })).rejects.toThrow(/\(truncate\)/);
      await expect(c.query("do $$ begin execute 'drop table items'; end $$")).rejects.toThrow(/dynamic SQL/);
      expect((await c.query('select count(*)::int as n from items where id < 10')).rows).toEqual([{ n: 9 }]);
      // Inside a transaction the denial aborts it, as any error would.
      await c.query('begin');
      await expect(c.query('delete from items')).rejects.toThrow(/denied/);
      await expect(c.query('select 1')).rejects.toThrow(/current transaction is aborted/);
      await c.query('rollback');
      expect((await c.query('select count(*)::int as n from items where id <= 100')).rows).toEqual([{ n: 100 }]);
    } finally {
      await c.end();
    }
  });

  it('denies a temporary function or procedure whose body breaks a guardrail, and SELECT INTO inside a UNION (review)', async () => {
    const c = fx.client(fx.grant({ guardrails: ['write_without_where', 'truncate', 'set_role'] }));
    await c.connect();
    try {
      await expect(c.query('create procedure pg_temp.p() language sql as $$ delete from items $$')).rejects.toThrow(/\(write_without_where\): DELETE without a WHERE clause/);
      await expect(c.query('call pg_temp.p()')).rejects.toThrow(/does not exist/);
      await expect(c.query("create function pg_temp.f() returns text language plpgsql as $$ begin perform set_config('role', 'postgres', false); return 'x'; end $$"))
        .rejects.toThrow(/\(set_role\)/);
      expect((await c.query('select count(*)::int as n from items where id <= 100')).rows).toEqual([{ n: 100 }]);
    } finally {
      await c.end();
    }
    const d = fx.client(fx.grant({ guardrails: ['ddl'] }));
    await d.connect();
    try {
      await expect(d.query('select 1 as a into temp made_by_union union select 2')).rejects.toThrow(/\(ddl\): SELECT INTO creates a table/);
      await expect(d.query('select * from made_by_union')).rejects.toThrow(/does not exist/);
    } finally {
      await d.end();
    }
  });

  it('keeps responses in order when a denied statement is pipelined between allowed ones', async () => {
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ guardrails: ['ddl'] })));
    const typed = (type: string, body: Buffer) => {
      const b = Buffer.alloc(5 + body.length);
      b.write(type, 0, 'latin1');
      b.writeInt32BE(4 + body.length, 1);
      body.copy(b, 5);
      return b;
    };
    const bind = typed('B', Buffer.from('\0\0\0\0\0\0\0\0', 'latin1'));
    const execute = typed('E', Buffer.from('\0\0\0\0\0', 'latin1'));
    const sync = typed('S', Buffer.alloc(0));
    let got = '';
    const done = new Promise<void>((resolve) => {
      s.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.split('Z\u0000\u0000\u0000\u0005').length - 1 === 5) resolve();
      });
    });
    s.write(
      Buffer.concat([
        ser.query("select 'first'"),
        ser.query('drop table items'),
        ser.query("select 'third'"),
        // extended batch: an allowed statement, then a denied one: the target skips to Sync
        ser.parse('', "select 'fourth'"), bind, execute,
        ser.parse('', 'create table x (a int)'), bind, execute, sync,
        ser.parse('', "select 'fifth'"), bind, execute, sync,
      ]),
    );
    await done;
    const order = ['first', 'hallpass: statement denied on app for role write (ddl): DROP is DDL', 'third', 'fourth', '(ddl): CREATE is DDL', 'fifth'];
    const positions = order.map((m) => got.indexOf(m));
    expect(positions.every((p) => p >= 0)).toBe(true);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(got).not.toContain('invalid input syntax'); // the stand-in error never reaches the client
    s.end(ser.terminate());
  });

  it('keeps a read-only role read-only', async () => {
    const c = fx.client(fx.grant({ role: 'read' }));
    await c.connect();
    try {
      expect((await c.query('show default_transaction_read_only')).rows).toEqual([{ default_transaction_read_only: 'on' }]);
      await expect(c.query('set default_transaction_read_only = off')).rejects.toThrow(/read_only/);
      await expect(c.query('begin read write')).rejects.toThrow(/read_only/);
      await expect(c.query("insert into items values (5000, 'x')")).rejects.toThrow(/read-only transaction|permission denied/);
    } finally {
      await c.end();
    }
  });
});

describe('audit', () => {
  it('records every statement of a scripted session, in order, without parameter values by default', async () => {
    const g = fx.grant({ guardrails: ['ddl'] });
    const c = fx.client(g);
    await c.connect();
    await c.query('select 1');
    await c.query('select name from items where id = $1', [3]);
    await c.query({ name: 'p1', text: 'select id from items where id = $1', values: [4] });
    await c.query({ name: 'p1', text: 'select id from items where id = $1', values: [5] });
    await c.query('create table nope (a int)').catch(() => {});
    await c.query('select * from missing_table').catch(() => {});
    await c.query("update items set name = 'renamed' where id = 1");
    await c.end();
    await waitFor(async () => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.session.end'));
    const events = fx.sink.events.filter((e) => e.grantId === g);
    const summary = events.map((e) => [e.type, e.data.sql ?? e.data.tag ?? e.data.reason ?? null, e.data.denied ?? e.data.error ?? null]);
    expect(summary).toEqual([
      ['gateway.session.start', null, null],
      ['gateway.query', 'select 1', null],
      ['gateway.execute', 'select name from items where id = $1', null],
      ['gateway.execute', 'select id from items where id = $1', null],
      ['gateway.execute', 'SELECT 1', null],
      ['gateway.query', 'create table nope (a int)', { guardrail: 'ddl', reason: 'CREATE is DDL' }],
      ['gateway.query', 'select * from missing_table', '42P01'],
      ['gateway.query', "update items set name = 'renamed' where id = 1", null],
      ['gateway.session.end', 'client_terminate', null],
    ]);
    // Extended protocol: the text once per Parse (with the first execution), each Execute counted.
    const [, exec1, exec2] = events.filter((e) => e.type === 'gateway.execute');
    expect(exec1?.data).toMatchObject({ sql: 'select id from items where id = $1', tag: 'SELECT 1', rows: 1 });
    expect(exec2?.data.sql).toBeUndefined();
    expect(exec2?.data.statementId).toBe(exec1?.data.statementId);
    expect(events.find((e) => e.data.sql?.toString().startsWith('update'))?.data).toMatchObject({ tags: ['UPDATE 1'], rows: 1 });
    expect(JSON.stringify(events)).not.toMatch(/"params"/);
    const end = events[events.length - 1];
    expect(end?.data).toMatchObject({ tls: true, bytesFromClient: expect.any(Number), bytesToClient: expect.any(Number) });
    expect(end?.actor).toBe(TEST_USER);
    expect(JSON.stringify(events)).not.toContain(fx.roles.rw.password);
  });

  it('audits a statement prepared but never executed, and a failed Parse', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    const sync = Buffer.from([0x53, 0, 0, 0, 4]);
    s.write(Buffer.concat([ser.parse('only_described', 'select 42'), sync, ser.parse('bad', 'select nope'), sync]));
    await waitFor(async () => fx.sink.events.filter((e) => e.grantId === g && e.type === 'gateway.statement').length === 1);
    s.end(ser.terminate());
    await waitFor(async () => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.session.end'));
    const stmts = fx.sink.events.filter((e) => e.grantId === g && e.type === 'gateway.statement').map((e) => e.data);
    expect(stmts).toEqual([
      expect.objectContaining({ sql: 'select nope', error: '42703' }),
      expect.objectContaining({ sql: 'select 42', executions: 0 }),
    ]);
  });

  it('stores parameter values when the resource asks for it', async () => {
    const g = fx.grant({ storeParameters: true });
    const c = fx.client(g);
    await c.connect();
    await c.query('select $1::text as a, $2::int as b', ['hello', null]);
    await c.end();
    await waitFor(async () => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.execute'));
    expect(fx.sink.events.find((e) => e.grantId === g && e.type === 'gateway.execute')?.data.params).toEqual(['hello', null]);
  });
});

/** Waits for the session of grant `g` to end; why it ended. */
async function sessionEndReason(g: string): Promise<unknown> {
  const end = () => fx.sink.ofType('gateway.session.end').find((e) => e.grantId === g);
  await waitFor(async () => end() !== undefined);
  return end()?.data.reason;
}

/** How many statements like `like` are running on the target. */
async function sleeps(like = 'select pg_sleep%'): Promise<number> {
  const admin = await fx.target.admin();
  try {
    const r = await admin.query<{ n: number }>("select count(*)::int as n from pg_stat_activity where query like $1 and state = 'active'", [like]);
    return r.rows[0]?.n ?? 0;
  } finally {
    await admin.end();
  }
}

async function waitFor(cond: () => Promise<boolean>, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not reached');
}

