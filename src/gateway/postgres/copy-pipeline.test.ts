import net from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { bind, copyData, copyDone, copyFail, cstr, execute, sync, typed } from '../../../test/support/frontend-messages.js';
import { startGatewayFixtureWithAdmin, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { rawLogin } from '../../../test/support/gateway-raw-client.js';
import * as ser from './serializer.js';
import { connectUpstream } from './upstream.js';

/**
 * A client may pipeline a COPY FROM STDIN with its data, its end and what follows, without waiting
 * for any answer: each case below works on a direct connection and, found in review, ended the
 * session (or lost a statement) through the gateway.
 */
let fx: GatewayFixture;
let admin: pg.Client;
let stop: (() => Promise<void>) | undefined;
beforeAll(async () => {
  ({ fx, admin, stop } = await startGatewayFixtureWithAdmin());
  await admin.query('create table piped_copy (a int)');
  // A COPY of a row another transaction holds uncommitted waits for it: a COPY still running after its CopyInResponse.
  await admin.query('create table piped_locked (a int primary key)');
  // A COPY into a view fails after its CopyInResponse, before reading anything.
  await admin.query('create view piped_view as select 1 as a');
  await admin.query(`grant all on piped_copy, piped_locked, piped_view to ${fx.roles.rw.user}`);
});
afterAll(() => stop?.());
beforeEach(async () => {
  await admin.query('truncate piped_copy, piped_locked');
});


const until = async (ok: () => boolean | Promise<boolean>, what: string | (() => string)): Promise<void> => {
  for (let t = 0; !(await ok()); t++) {
    if (t > 1000) throw new Error(`gave up waiting: ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/**
 * The answers a connection got, in order, one string each: the type, and for CommandComplete its
 * tag, for ErrorResponse its SQLSTATE, for a DataRow its first value.
 */
function answers(s: net.Socket) {
  const got: string[] = [];
  let buf = Buffer.alloc(0);
  let closed = false;
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    let i = 0;
    for (; i + 5 <= buf.length && i + 1 + buf.readInt32BE(i + 1) <= buf.length; i += 1 + buf.readInt32BE(i + 1)) {
      const type = String.fromCharCode(buf[i] as number);
      const body = buf.subarray(i + 5, i + 1 + buf.readInt32BE(i + 1));
      if (type === 'C') got.push(`C ${body.toString('utf8', 0, body.length - 1)}`);
      else if (type === 'E') got.push(`E ${/C([0-9A-Z]{5})\0/.exec(body.toString('latin1'))?.[1]}`);
      else if (type === 'D') got.push(`D ${body.toString('utf8', 6, 6 + body.readInt32BE(2))}`);
      else if (type !== 'N' && type !== 'S') got.push(type);
    }
    buf = buf.subarray(i);
  });
  s.once('close', () => (closed = true));
  const count = (m: string) => got.filter((g) => g === m).length;
  return {
    got,
    closed: () => closed,
    /** Waits for the n-th ReadyForQuery (or the close); the answers so far. */
    ready: async (n: number): Promise<string[]> => {
      await until(() => closed || count('Z') >= n, () => `ReadyForQuery #${n} in ${got.join(' ')}`);
      return got;
    },
  };
}

/** A raw session through the gateway (write role, no guardrails), and its id. */
async function viaGateway(): Promise<{ s: net.Socket; sessionId: string }> {
  const before = fx.sink.ofType('gateway.session.start').length;
  const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ role: 'write' })));
  await until(() => fx.sink.ofType('gateway.session.start').length > before, 'session.start');
  return { s, sessionId: fx.sink.ofType('gateway.session.start').at(-1)?.data.sessionId as string };
}

/** A raw session straight to the target, as the same role: what the client should get. */
async function direct(): Promise<net.Socket> {
  const { host, port } = fx.target;
  const u = await connectUpstream({ host, port, database: 'app', user: fx.roles.rw.user, password: fx.roles.rw.password }, new Map(), 10_000);
  u.socket.resume();
  return u.socket;
}

/** The session's statement events (type and the fields that matter here), once it has ended. */
async function statements(sessionId: string): Promise<Array<Record<string, unknown>>> {
  await until(() => fx.sink.ofType('gateway.session.end').some((e) => e.data.sessionId === sessionId), 'session.end');
  return fx.sink.events
    .filter((e) => e.data.sessionId === sessionId && !e.type.startsWith('gateway.session'))
    .map((e) => {
      const { sessionId: _s, durationMs: _d, ...rest } = e.data as Record<string, unknown>;
      return { type: e.type, ...rest };
    });
}

const endReason = (sessionId: string) => fx.sink.ofType('gateway.session.end').find((e) => e.data.sessionId === sessionId)?.data.reason;
const rows = async (table: string): Promise<number[]> => (await admin.query(`select a from ${table} order by a`)).rows.map((r: { a: number }) => r.a);

/** Holds row `a` of piped_locked in an open transaction until the returned function ends it (rolled back). */
async function lockRow(a: number): Promise<() => Promise<void>> {
  const c = await fx.target.admin();
  await c.query('begin');
  await c.query('insert into piped_locked values ($1)', [a]);
  return async () => {
    await c.query('rollback');
    await c.end();
  };
}

describe('gateway: COPY FROM STDIN pipelined with its end and what follows', () => {
  it('a Query COPY whose data, CopyDone, Syncs and a second COPY all went before its CopyInResponse: answered as on a direct connection', async () => {
    // One write; the Sync inside the first COPY's data the target ignores, the one after its end it answers.
    const pipeline = Buffer.concat([
      ser.query('copy piped_copy from stdin'), copyData('1\n'), sync(), copyDone(), sync(),
      ser.query('copy piped_copy from stdin; select 7'), copyData('2\n'), copyDone(),
      ser.query('select 42'),
    ]);
    const d = await direct();
    const expected = answers(d);
    d.write(pipeline);
    await expected.ready(4);
    d.destroy();
    expect(expected.got).toEqual(['G', 'C COPY 1', 'Z', 'Z', 'G', 'C COPY 1', 'T', 'D 7', 'C SELECT 1', 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
    await admin.query('truncate piped_copy');

    const { s, sessionId } = await viaGateway();
    const got = answers(s);
    s.write(pipeline);
    expect(await got.ready(4)).toEqual(expected.got);
    // Still in step: a later statement gets its own answer.
    s.write(ser.query('select 43'));
    expect((await got.ready(5)).slice(-4)).toEqual(['T', 'D 43', 'C SELECT 1', 'Z']);
    s.end(ser.terminate());
    expect(await rows('piped_copy')).toEqual([1, 2]);
    expect((await statements(sessionId)).map((e) => [e.type, e.sql, e.tags])).toEqual([
      ['gateway.query', 'copy piped_copy from stdin', ['COPY 1']],
      ['gateway.query', 'copy piped_copy from stdin; select 7', ['COPY 1', 'SELECT 1']],
      ['gateway.query', 'select 42', ['SELECT 1']],
      ['gateway.query', 'select 43', ['SELECT 1']],
    ]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  it('an extended-protocol COPY nobody held (its text let go), its end and a Sync behind it in one write: the Sync after its end is answered', async () => {
    // c1's text is let go (a later statement mentions "prepare"): its Execute is not held.
    const setup = [Buffer.concat([ser.parse('c1', 'copy piped_copy from stdin'), sync()]), ser.query("select 'prepared'")];
    const pipeline = Buffer.concat([bind('', 'c1'), execute(''), sync(), copyData('3\n'), copyDone(), sync(), ser.query('select 42')]);
    const run = async (s: net.Socket): Promise<string[]> => {
      const got = answers(s);
      s.write(setup[0] as Buffer);
      await got.ready(1);
      s.write(setup[1] as Buffer);
      await got.ready(2);
      s.write(pipeline);
      return got.ready(4);
    };
    const d = await direct();
    const expected = await run(d);
    d.destroy();
    expect(expected.slice(-8)).toEqual(['2', 'G', 'C COPY 1', 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
    await admin.query('truncate piped_copy');

    const { s, sessionId } = await viaGateway();
    expect(await run(s)).toEqual(expected);
    s.end(ser.terminate());
    expect(await rows('piped_copy')).toEqual([3]);
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.execute')).toEqual([{ type: 'gateway.execute', statementId: null, statement: 'c1', tag: 'COPY 1', rows: 1 }]);
    expect(events.filter((e) => e.type === 'gateway.query').map((e) => [e.sql, e.tags])).toEqual([["select 'prepared'", ['SELECT 1']], ['select 42', ['SELECT 1']]]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  it('what the client sends while a COPY it already ended still runs (its CopyDone went before the CopyInResponse): not swallowed, not held, later COPY data kept', async () => {
    // The COPY's row waits for a lock, so the target is still in it when the client's next write comes.
    const first = Buffer.concat([ser.query('copy piped_locked from stdin'), copyData('1\n'), copyDone()]);
    const next = [
      // (Through the gateway, this statement's audit event shows it read this write: the one before
      // it, "probe", is let go as it goes.)
      ser.query("select 'prepare'"),
      sync(),
      ser.query('copy piped_locked from stdin'), copyData('2\n'), copyDone(), sync(),
      ser.query('select 42'),
    ];
    const run = async (s: net.Socket, readNext: () => Promise<void>): Promise<string[]> => {
      const got = answers(s);
      s.write(Buffer.concat([ser.parse('probe', 'select 1'), sync()]));
      await got.ready(1);
      const release = await lockRow(1);
      try {
        s.write(first);
        await until(() => got.closed() || got.got.includes('G'), 'CopyInResponse');
        s.write(Buffer.concat(next));
        await readNext();
      } finally {
        await release();
      }
      return got.ready(7);
    };
    const d = await direct();
    const expected = await run(d, async () => {});
    d.destroy();
    expect(expected).toEqual(['1', 'Z', 'G', 'C COPY 1', 'Z', 'T', 'D prepare', 'C SELECT 1', 'Z', 'Z', 'G', 'C COPY 1', 'Z', 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
    await admin.query('truncate piped_locked');

    const { s, sessionId } = await viaGateway();
    const probed = () => fx.sink.ofType('gateway.statement').some((e) => e.data.sessionId === sessionId && e.data.name === 'probe');
    expect(await run(s, () => until(probed, 'the probe let go'))).toEqual(expected);
    s.end(ser.terminate());
    expect(await rows('piped_locked')).toEqual([1, 2]);
    expect((await statements(sessionId)).filter((e) => e.type === 'gateway.query').map((e) => [e.sql, e.tags])).toEqual([
      ['copy piped_locked from stdin', ['COPY 1']],
      ["select 'prepare'", ['SELECT 1']],
      ['copy piped_locked from stdin', ['COPY 1']],
      ['select 42', ['SELECT 1']],
    ]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  /**
   * An extended-protocol COPY as libpq runs it: Execute and Sync, then once CopyInResponse came
   * its data and CopyDone; and `behind` right behind them, in the same write, while the COPY waits
   * for a lock. The answers, once the lock is let go; whether the gateway stopped reading the
   * client meanwhile.
   */
  async function behindCopyEnd(behind: Buffer, answersDue: number): Promise<{ sessionId: string; all: string[]; paused: boolean; closed: boolean }> {
    const { s, sessionId, got, paused } = await copyWaitingOnLock(behind, false);
    const all = await got.ready(answersDue);
    const closed = got.closed();
    s.end(ser.terminate());
    return { sessionId, all, paused, closed };
  }

  /**
   * The COPY of behindCopyEnd with `behind` sent (and, with `leave`, the client's side closed) while
   * it waits for the lock; returns once the gateway stopped reading the client or the session
   * ended, with the lock let go.
   */
  async function copyWaitingOnLock(behind: Buffer, leave: boolean) {
    const { s, sessionId } = await viaGateway();
    const got = answers(s);
    let paused = false;
    const pause = net.Socket.prototype.pause;
    const release = await lockRow(1);
    try {
      s.write(Buffer.concat([ser.parse('', 'copy piped_locked from stdin'), bind('', ''), execute(''), sync()]));
      await until(() => got.closed() || got.got.includes('G'), 'CopyInResponse');
      // From here: the gateway stops reading this client (its socket there is the one whose peer is `s`).
      net.Socket.prototype.pause = function (this: net.Socket) {
        if (this.remotePort === s.localPort) paused = true;
        return pause.call(this);
      };
      const out = Buffer.concat([copyData('1\n'), copyDone(), behind]);
      if (leave) s.end(out);
      else s.write(out);
      await until(() => paused || got.closed() || endReason(sessionId) !== undefined, 'the client paused, or the session ended');
    } finally {
      net.Socket.prototype.pause = pause;
      await release();
    }
    return { s, sessionId, got, paused };
  }

  it('a Terminate pipelined behind a COPY the client ended waits for what it sent before: all of it runs, as on a direct connection (fifth review: both rows were lost)', async () => {
    // The client leaves at once, as a script's last batch might.
    const { sessionId } = await copyWaitingOnLock(Buffer.concat([sync(), ser.query('insert into piped_copy values (7)'), ser.terminate()]), true);
    await until(() => endReason(sessionId) !== undefined, 'session.end');
    expect(endReason(sessionId)).toBe('client_terminate');
    // The target may still be finishing what the gateway passed on when the session's end is audited.
    await until(async () => (await rows('piped_copy')).length > 0, 'the insert');
    expect(await rows('piped_locked')).toEqual([1]);
    expect(await rows('piped_copy')).toEqual([7]);
  });

  it('a COPY whose implicit transaction no Sync commits (the client leaves after CopyDone) is audited as rolled back (sixth review: audited as done)', async () => {
    const { sessionId } = await copyWaitingOnLock(ser.terminate(), true);
    const events = await statements(sessionId);
    expect(await rows('piped_locked')).toEqual([]); // as on a direct connection: the target rolled it back
    expect(events.filter((e) => e.type === 'gateway.execute').map((e) => e.tag)).toEqual(['COPY 1']);
    expect(events.filter((e) => e.type === 'gateway.rolled_back').map((e) => [e.cause, (e.executions as unknown[]).length])).toEqual([['session_end', 1]]);
  });

  it('a named COPY statement stays held after a statement makes the gateway forget names; when it fails the session goes on (sixth review: it ended with 08P01)', async () => {
    const { s, sessionId } = await viaGateway();
    const got = answers(s);
    // As tokio-postgres's copy_in: the COPY prepared by name, then any statement saying "prepare".
    s.write(Buffer.concat([ser.parse('s0', 'copy piped_copy from stdin'), sync()]));
    await got.ready(1);
    s.write(ser.query('select 1 as prepared_at'));
    await got.ready(2);
    s.write(Buffer.concat([bind('', 's0'), execute(''), sync()]));
    await until(() => got.closed() || got.got.includes('G'), 'CopyInResponse');
    s.write(Buffer.concat([copyData('1\n'), copyData('x\n'), copyDone(), sync(), ser.query('insert into piped_locked values (4)')]));
    await until(() => got.closed() || got.got.at(-2) === 'C INSERT 0 1', 'the insert');
    expect(got.closed()).toBe(false);
    expect(got.got).toContain('E 22P02');
    expect(got.got.filter((a) => a === 'E 08P01')).toEqual([]);
    expect(await rows('piped_locked')).toEqual([4]);
    expect(await rows('piped_copy')).toEqual([]);
    s.end(ser.terminate());
    await until(() => endReason(sessionId) !== undefined, 'session.end');
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  it('more than 10,000 Syncs inside one COPY end the session with a protocol error (sixth review: millions took 2 GB and stalled every session)', async () => {
    const { s, sessionId } = await viaGateway();
    const got = answers(s);
    s.write(Buffer.concat([ser.parse('', 'copy piped_copy from stdin'), bind('', ''), execute(''), sync()]));
    await until(() => got.closed() || got.got.includes('G'), 'CopyInResponse');
    s.write(Buffer.concat([copyData('1\n'), ...Array.from({ length: 10_001 }, sync)]));
    await until(() => got.closed(), 'the session closed');
    expect(got.got.at(-1)).toBe('E 08P01');
    await until(() => endReason(sessionId) !== undefined, 'session.end');
    expect(endReason(sessionId)).toBe('protocol_error');
  });

  it('no rollback is audited when what was in flight at the end may have committed (a Query ends the implicit transaction)', async () => {
    const { s, sessionId } = await viaGateway();
    const got = answers(s);
    // An Execute answered through a Flush, no Sync: its implicit transaction is open.
    s.write(Buffer.concat([ser.parse('', 'insert into piped_copy values (11)'), bind('', ''), execute(''), typed('H', Buffer.alloc(0))]));
    await until(() => got.got.includes('C INSERT 0 1'), 'the insert');
    // A simple Query commits it before it runs; the client leaves at once.
    s.end(Buffer.concat([ser.query('select 1'), ser.terminate()]));
    const events = await statements(sessionId);
    await until(async () => (await rows('piped_copy')).length > 0, 'the commit');
    expect(await rows('piped_copy')).toEqual([11]);
    expect(events.filter((e) => e.type === 'gateway.rolled_back')).toEqual([]);
  });

  it('a client that stopped reading and left while messages wait behind its COPY ends its session (sixth review: it hung until the grant ended)', async () => {
    const { s, sessionId } = await viaGateway();
    s.removeAllListeners('data');
    s.pause(); // never reads again: the gateway's socket to it fills, and the gateway stops reading the target
    s.write(Buffer.concat([
      ser.query("select repeat('x', 100000) from generate_series(1, 1000)"), // ~100 MB of answers
      ser.parse('', 'copy piped_copy from stdin'), bind('', ''), execute(''), sync(), copyData('8\n'), copyDone(), sync(),
      ser.query('insert into piped_locked values (9)'), ser.terminate(),
    ]));
    await until(async () => (await admin.query("select count(*)::int as n from pg_stat_activity where wait_event = 'ClientWrite' and usename = $1", [fx.roles.rw.user])).rows[0].n === 1, 'the target blocked writing');
    // ... and give the gateway time to fill its socket to the client and stop reading the target
    // (a slow host could only let this pass without the fix, never fail with it).
    await new Promise((r) => setTimeout(r, 1000));
    s.destroy();
    await until(() => endReason(sessionId) !== undefined, 'session.end');
    expect(endReason(sessionId)).toBe('client_terminate');
    await until(async () => (await admin.query('select count(*)::int as n from pg_stat_activity where usename = $1', [fx.roles.rw.user])).rows[0].n === 0, 'no backend left');
  });

  it('more than 1 MiB of statements pipelined behind an extended COPY\'s end: the client is paused, not cut off, and all of it runs', async () => {
    const n = 12_000;
    const pad = 'x'.repeat(100);
    // A Sync (as libpq sends with CopyDone), then the statements.
    const behind = Buffer.concat([sync(), ...Array.from({ length: n }, (_, i) => ser.query(`select ${i} as n -- ${pad}`)), ser.query('insert into piped_copy values (5)')]);
    expect(behind.length).toBeGreaterThan(1.25 * 1024 * 1024);
    const { sessionId, all, paused, closed } = await behindCopyEnd(behind, n + 2);
    // Had the gateway read on while the COPY ran, over 1 MiB would have waited in it: the session would have ended.
    expect([paused, closed]).toEqual([true, false]);
    expect(all.slice(0, 5)).toEqual(['1', '2', 'G', 'C COPY 1', 'Z']);
    expect(all.filter((a) => a.startsWith('D '))).toEqual(Array.from({ length: n }, (_, i) => `D ${i}`));
    expect(all.slice(-2)).toEqual(['C INSERT 0 1', 'Z']);
    expect(all.filter((a) => a.startsWith('E'))).toEqual([]);
    expect(await rows('piped_locked')).toEqual([1]);
    expect(await rows('piped_copy')).toEqual([5]);
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.execute').map((e) => e.tag)).toEqual(['COPY 1']);
    const queries = events.filter((e) => e.type === 'gateway.query');
    expect(queries.map((e) => e.sql)).toEqual([...Array.from({ length: n }, (_, i) => `select ${i} as n -- ${pad}`), 'insert into piped_copy values (5)']);
    expect(queries.filter((e) => e.error !== undefined)).toEqual([]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  it('one 2 MiB statement right behind an extended COPY\'s CopyDone: the client is paused before it is read, and it runs as on a direct connection', async () => {
    // No Sync between (as a client that pipelines requests from several tasks may send).
    const big = 'y'.repeat(2 * 1024 * 1024);
    const behind = Buffer.concat([ser.query(`select length('${big}')`), ser.query('insert into piped_copy values (6)')]);
    const d = await direct();
    const expected = answers(d);
    d.write(Buffer.concat([ser.parse('', 'copy piped_copy from stdin'), bind('', ''), execute(''), sync()]));
    await until(() => expected.got.includes('G'), 'CopyInResponse');
    d.write(Buffer.concat([copyData('1\n'), copyDone(), behind]));
    await expected.ready(2);
    d.destroy();
    expect(expected.got).toEqual(['1', '2', 'G', 'C COPY 1', 'T', `D ${big.length}`, 'C SELECT 1', 'Z', 'C INSERT 0 1', 'Z']);
    await admin.query('truncate piped_copy');

    const { sessionId, all, paused, closed } = await behindCopyEnd(behind, 2);
    expect([paused, closed]).toEqual([true, false]);
    expect(all).toEqual(expected.got);
    expect(await rows('piped_locked')).toEqual([1]);
    expect(await rows('piped_copy')).toEqual([6]);
    const events = await statements(sessionId);
    expect(events.filter((e) => e.type === 'gateway.execute').map((e) => e.tag)).toEqual(['COPY 1']);
    expect(events.filter((e) => e.type === 'gateway.query').map((e) => [e.tags, e.error ?? null])).toEqual([[['SELECT 1'], null], [['INSERT 0 1'], null]]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  /**
   * A COPY as libpq runs it through the extended protocol (Parse, Bind, Describe, Execute, Sync),
   * then, once `after` came (CopyInResponse), `rest` and `select 42` in one write, sent to the
   * target directly and through the gateway: the answers of each (once `select 42` is answered,
   * which comes last either way), and the gateway's session, still open.
   */
  async function failedCopyBothWays(rest: Buffer[], into = 'piped_copy', after = 'G'): Promise<{ expected: string[]; got: ReturnType<typeof answers>; s: net.Socket; sessionId: string }> {
    const run = async (s: net.Socket) => {
      const got = answers(s);
      const describePortal = typed('D', Buffer.concat([Buffer.from('P'), cstr('')]));
      s.write(Buffer.concat([ser.parse('', `copy ${into} from stdin`), bind('', ''), describePortal, execute(''), sync()]));
      await until(() => got.closed() || got.got.includes(after), after);
      s.write(Buffer.concat([...rest, ser.query('select 42')]));
      await until(() => got.closed() || got.got.slice(-3).join() === 'D 42,C SELECT 1,Z', () => `the answer to select 42 in ${got.got.join(' ')}`);
      return got;
    };
    const d = await direct();
    const expected = [...(await run(d)).got];
    d.destroy();
    const { s, sessionId } = await viaGateway();
    return { expected, got: await run(s), s, sessionId };
  }

  /** A statement event's type, text, result (an execute's tag, a query's tags) and error. */
  const outcome = (e: Record<string, unknown>) => [e.type, e.sql, 'tag' in e ? e.tag : e.tags, e.error ?? null];

  // The target read and ignored the Sync sent with the Execute while copying; the bad row (or the
  // CopyFail) fails the COPY. The gateway used to answer that Sync too (G E Z Z).
  for (const [how, rest, code] of [
    ['on bad data, then CopyDone and Sync', [copyData('x\n'), copyDone(), sync()], '22P02'],
    ['by the client\'s CopyFail, then Sync', [copyData('1\n'), copyFail('client gave up'), sync()], '57014'],
  ] as const) {
    it(`an extended COPY that fails ${how}: answered G E Z as on a direct connection`, async () => {
      const { expected, got, s, sessionId } = await failedCopyBothWays([...rest]);
      expect(expected).toEqual(['1', '2', 'n', 'G', `E ${code}`, 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
      expect(got.got).toEqual(expected);
      // Still in step: a later statement gets its own answer.
      s.write(ser.query('select 43'));
      expect((await got.ready(3)).slice(-4)).toEqual(['T', 'D 43', 'C SELECT 1', 'Z']);
      s.end(ser.terminate());
      expect(await rows('piped_copy')).toEqual([]);
      expect((await statements(sessionId)).map(outcome)).toEqual([
        ['gateway.execute', 'copy piped_copy from stdin', null, code],
        ['gateway.query', 'select 42', ['SELECT 1'], null],
        ['gateway.query', 'select 43', ['SELECT 1'], null],
      ]);
      expect(endReason(sessionId)).toBe('client_terminate');
    });
  }

  it('a COPY into a view fails after CopyInResponse before reading anything: the Sync sent with the Execute is answered, as on a direct connection', async () => {
    // libpq gets the error before it sends anything more (the target fails right after CopyInResponse).
    const { expected, got, s, sessionId } = await failedCopyBothWays([copyDone(), sync()], 'piped_view', 'E 42809');
    expect(expected).toEqual(['1', '2', 'n', 'G', 'E 42809', 'Z', 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
    expect(got.got).toEqual(expected);
    s.end(ser.terminate());
    expect((await statements(sessionId)).map(outcome)).toEqual([
      ['gateway.execute', 'copy piped_view from stdin', null, '42809'],
      ['gateway.query', 'select 42', ['SELECT 1'], null],
    ]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });

  it('a held COPY Execute the target skips after an earlier error: what waited behind it is skipped too, as on a direct connection (review: audited as run, then 08P01; with a Terminate, open until the grant ended)', async () => {
    const batch = Buffer.concat([
      ser.parse('', 'select 1/0'), bind('', ''), execute(''),
      ser.parse('', 'copy piped_copy from stdin'), bind('', ''), execute(''),
      ser.query('insert into piped_locked values (5)'),
      sync(),
    ]);
    const run = async (s: net.Socket) => {
      const got = answers(s);
      s.write(batch);
      await got.ready(1);
      s.write(ser.query('select 42'));
      await got.ready(2);
      return got.got;
    };
    const d = await direct();
    const expected = [...(await run(d))];
    d.destroy();
    expect(expected).toEqual(['1', 'E 22012', 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
    const { s, sessionId } = await viaGateway();
    expect(await run(s)).toEqual(expected);
    s.end(ser.terminate());
    expect(await rows('piped_locked')).toEqual([]);
    expect((await statements(sessionId)).map(outcome)).toEqual([
      ['gateway.execute', 'select 1/0', null, '22012'],
      ['gateway.statement', 'copy piped_copy from stdin', undefined, 'skipped'],
      ['gateway.query', 'insert into piped_locked values (5)', [], 'skipped'],
      ['gateway.query', 'select 42', ['SELECT 1'], null],
    ]);
    expect(endReason(sessionId)).toBe('client_terminate');
    // The same batch with a Terminate behind it: the session ends at once, not at the grant's end.
    const again = await viaGateway();
    again.s.on('error', () => {});
    again.s.end(Buffer.concat([batch, ser.terminate()]));
    await until(() => endReason(again.sessionId) !== undefined, 'session.end');
    expect(endReason(again.sessionId)).toBe('client_terminate');
  });

  it('an insert pipelined after a CopyFail with no Sync between is skipped, as on a direct connection, and audited as skipped (it used to run)', async () => {
    const insert = [ser.parse('', 'insert into piped_locked values (9)'), bind('', ''), execute('')];
    const { expected, got, s, sessionId } = await failedCopyBothWays([copyFail('client gave up'), ...insert, sync()]);
    // The target skips the insert up to the Sync: no ParseComplete, no INSERT.
    expect(expected).toEqual(['1', '2', 'n', 'G', 'E 57014', 'Z', 'T', 'D 42', 'C SELECT 1', 'Z']);
    expect(got.got).toEqual(expected);
    s.end(ser.terminate());
    expect(await rows('piped_locked')).toEqual([]);
    expect((await statements(sessionId)).map(outcome)).toEqual([
      ['gateway.execute', 'copy piped_copy from stdin', null, '57014'],
      ['gateway.statement', 'insert into piped_locked values (9)', undefined, 'skipped'],
      ['gateway.query', 'select 42', ['SELECT 1'], null],
    ]);
    expect(endReason(sessionId)).toBe('client_terminate');
  });
});
