import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawStartup } from '../../../test/support/gateway-raw-client.js';
import type { GatewayAuditEvent } from '../authority.js';
import { Framer } from './framing.js';
import { Relay } from './relay.js';
import * as ser from './serializer.js';

/**
 * The relay split at every offset: one scripted session (simple multi-statement Query, extended
 * Parse/Bind/Describe/Execute/Sync, COPY FROM STDIN with a row spanning two CopyData, DataRows)
 * replayed through the real gateway in front of a real PostgreSQL with the client's bytes cut in
 * two at each offset (after login, and pipelined behind the password), then the answer recorded
 * from PostgreSQL replayed by a fake target in two chunks cut at each offset. Every cut must give
 * the client the same bytes after login and the audit the same statement events. framing.test.ts
 * does this for the Framer alone; this covers login handoff, relay, tracker and audit around it.
 * Every offset is run (no sampling): the script is 323 bytes, the answer about 480.
 */

const typed = (code: string, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(5 + body.length);
  out.write(code, 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
};
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`);
const int16 = (n: number): Buffer => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const text = (v: string): Buffer => Buffer.concat([int32(Buffer.byteLength(v)), Buffer.from(v)]);

const TABLE = 'split_copy';
/** Statements answered with ReadyForQuery: each Query and the Sync. */
const READY_COUNT = 5;
const SCRIPT = Buffer.concat([
  ser.query("select 1 as one; select 'two' as two, 2.5::numeric as n"),
  ser.parse('s1', 'select id, name from items where id between $1 and $2 order by id'),
  typed('B', cstr(''), cstr('s1'), int16(0), int16(2), text('3'), text('5'), int16(0)),
  typed('D', Buffer.from('P'), cstr('')),
  typed('E', cstr(''), int32(0)),
  typed('S'),
  ser.query('begin'),
  ser.query(`copy ${TABLE} (a, b) from stdin`),
  typed('d', Buffer.from('1\tone\n2\ttw')),
  typed('d', Buffer.from('o\n3\tthree\n')),
  typed('c'),
  ser.query(`select a, b from ${TABLE} order by a; rollback`),
]);

/** Every chunk a Framer was fed, to prove a cut really reached the relay as two reads. */
const fed = new Set<string>();
const realPush = Framer.prototype.push;
vi.spyOn(Framer.prototype, 'push').mockImplementation(function (this: Framer, chunk, onFrame) {
  if (chunk.length <= SCRIPT.length * 4) fed.add(chunk.toString('hex'));
  realPush.call(this, chunk, onFrame);
});

/** What each relay started with: whole messages read during login, and bytes of a partial one. */
const handoffs: Array<{ early: number; partial: number }> = [];
const realStart = Relay.prototype.start;
vi.spyOn(Relay.prototype, 'start').mockImplementation(function (this: Relay, early) {
  handoffs.push({ early: early.length, partial: this.clientFramer.buffered });
  realStart.call(this, early);
});

/** The type bytes of a run of backend messages, as a string. */
function types(bytes: Buffer): string {
  let out = '';
  realPush.call(new Framer(1 << 20), bytes, (type) => (out += String.fromCharCode(type)));
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const writeAll = (s: Socket, b: Buffer) => new Promise<void>((r, j) => s.write(b, (e) => (e ? j(e) : r())));

async function waitFor(cond: () => boolean, what: string, every = 5, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

/**
 * Writes `data` cut at `k`: [0,k), then [k,n) once the gateway has framed the first part on its
 * own (not after a guessed delay, which a busy machine could outlast and coalesce the reads).
 */
async function writeSplit(s: Socket, data: Buffer, k: number): Promise<void> {
  if (k > 0) {
    const first = data.subarray(0, k);
    await writeAll(s, first);
    if (k < data.length) await waitFor(() => fed.has(first.toString('hex')), `the gateway to read the first ${k} bytes`, 1);
  }
  await writeAll(s, data.subarray(k));
}

/** Everything the client gets from now up to the `count`-th ReadyForQuery (within 5 s). */
function collect(s: Socket, count = READY_COUNT): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const got: Buffer[] = [];
    let ready = 0;
    const framer = new Framer(1 << 20);
    const seen = () => JSON.stringify(Buffer.concat(got).toString('latin1'));
    const fail = (why: string) => {
      clearTimeout(timer);
      reject(new Error(`${why} after ${seen()}`));
      s.destroy();
    };
    const onClose = () => fail('closed early');
    const timer = setTimeout(() => fail(`no ReadyForQuery #${ready + 1} in 5 s`), 5000);
    s.on('close', onClose);
    s.on('data', (d: Buffer) => {
      got.push(d);
      realPush.call(framer, d, (type) => {
        if (type === 0x5a && ++ready === count) {
          clearTimeout(timer);
          s.off('close', onClose);
          resolve(Buffer.concat(got));
        }
      });
    });
  });
}

/** The audited statements of one grant's session, without what legitimately varies (ids, timings). */
function auditOf(events: readonly GatewayAuditEvent[], grantId: string): unknown[] {
  return events
    .filter((e) => e.grantId === grantId && e.type !== 'gateway.session.start' && e.type !== 'gateway.session.end')
    .map((e) => {
      const { sessionId: _s, durationMs: _d, ...data } = e.data as Record<string, unknown>;
      return { type: e.type, ...data };
    });
}

let fx: GatewayFixture;
/** What the client of one session saw after login, and what the audit kept of it. */
interface Outcome {
  readonly bytes: Buffer;
  readonly audit: unknown[];
}

/** Runs the script on a fresh session of `grantId` with the client's bytes cut at `k`. */
async function session(grantId: string, k: number): Promise<Outcome> {
  const s = await rawLogin(fx.port, fx.authority.token(grantId));
  const answer = collect(s);
  await writeSplit(s, SCRIPT, k);
  return finish(s, await answer, grantId, k);
}

/** Terminates the session and waits for its end to be audited. */
async function finish(s: Socket, bytes: Buffer, grantId: string, k: number): Promise<Outcome> {
  const closed = new Promise((r) => s.once('close', r));
  s.end(ser.terminate());
  await closed;
  await waitFor(() => fx.sink.events.some((e) => e.grantId === grantId && e.type === 'gateway.session.end'), `session end of cut ${k}`);
  return { bytes, audit: auditOf(fx.sink.events, grantId) };
}

/** The bytes after the first ReadyForQuery (the end of login). */
function afterLogin(bytes: Buffer): Buffer {
  let end = -1;
  let at = 0;
  realPush.call(new Framer(1 << 20), bytes, (type, frame) => {
    at += frame.length;
    if (type === 0x5a && end < 0) end = at;
  });
  return bytes.subarray(end < 0 ? bytes.length : end);
}

/**
 * Logs in over TLS like libpq up to AuthenticationCleartextPassword, then sends the password and
 * the script pipelined behind it, cut at `k`: the cut may fall in the password, in messages the
 * gateway reads while it logs in to the target (handed to the relay as whole early messages or as
 * a partial one in the framer), or in the relay itself.
 */
async function pipelinedLogin(grantId: string, k: number): Promise<Outcome> {
  const s = await rawStartup(fx.port);
  const answer = collect(s, READY_COUNT + 1);
  await writeSplit(s, Buffer.concat([ser.passwordMessage(fx.authority.token(grantId)), SCRIPT]), k);
  return finish(s, afterLogin(await answer), grantId, k);
}

/**
 * Runs `job(k)` for k in [0, n] with `width` at a time; returns the outcomes (or the error) in k
 * order. After 8 errors it runs no more cuts (a broken relay would otherwise time out cut by cut).
 */
async function everyOffset(n: number, width: number, job: (k: number) => Promise<Outcome>): Promise<Array<Outcome | { error: string }>> {
  const out: Array<Outcome | { error: string }> = [];
  let next = 0;
  let errors = 0;
  const worker = async () => {
    for (let k = next++; k <= n && errors < 8; k = next++) {
      try {
        out[k] = await job(k);
      } catch (e) {
        errors++;
        out[k] = { error: e instanceof Error ? e.message : String(e) };
      }
    }
  };
  await Promise.all(Array.from({ length: width }, worker));
  return out;
}

/**
 * A trust-login target that answers the whole script with `answer` cut in two at the offset named
 * by its login user (`cut_<k>`), so concurrent sessions each get their own cut.
 */
async function startDribbler(answer: () => Buffer): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.setNoDelay(true);
    const framer = new Framer(1 << 20, true);
    let cut = 0;
    let received = 0;
    s.on('data', (chunk: Buffer) => {
      realPush.call(framer, chunk, (type, frame) => {
        if (framer.startup) {
          framer.startup = false;
          const params = frame.subarray(8).toString('latin1').split('\0');
          cut = Number(params[params.indexOf('user') + 1]?.replace('cut_', '') ?? 0);
          s.write(Buffer.concat([ser.authenticationOk(), ser.parameterStatus('server_version', '17.0'), ser.backendKeyData(1, 2), ser.readyForQuery('I')]));
          return;
        }
        if (type === 0x58) return void s.end();
        received += frame.length;
        if (received !== SCRIPT.length) return;
        void writeSplit(s, answer(), cut).catch(() => s.destroy());
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

let reference: Outcome;
let dribbler: Awaited<ReturnType<typeof startDribbler>>;

/**
 * Every cut's outcome is the reference's; with `cutOf`, each cut also reached the gateway as two
 * reads (the data it was cut from).
 */
function expectAllLikeReference(results: ReadonlyArray<Outcome | { error: string } | undefined>, cutOf?: Buffer): void {
  for (const [k, r] of results.entries()) {
    if (r === undefined) continue; // not run: too many errors before it
    if ('error' in r) {
      expect.soft(r.error, `cut ${k}`).toBeUndefined();
      continue;
    }
    expect.soft(r.bytes.equals(reference.bytes), `answer for cut ${k}`).toBe(true);
    expect.soft(r.audit, `audit for cut ${k}`).toEqual(reference.audit);
    if (cutOf && k > 0 && k < cutOf.length) {
      const twoReads = fed.has(cutOf.subarray(0, k).toString('hex')) && fed.has(cutOf.subarray(k).toString('hex'));
      expect.soft(twoReads, `cut ${k} reached the gateway as two reads`).toBe(true);
    }
  }
}

beforeAll(async () => {
  fx = await startGatewayFixture();
  const admin = await fx.target.admin();
  await admin.query(`create table ${TABLE} (a int, b text)`);
  await admin.query(`grant all on ${TABLE} to ${fx.roles.rw.user}`);
  await admin.end();
  dribbler = await startDribbler(() => reference.bytes);
  reference = await session(fx.grant(), SCRIPT.length);
});
afterAll(async () => {
  await dribbler?.close();
  await fx?.stop();
});

describe('the relay with a session cut at every byte offset', () => {
  it('records a reference session that exercised every part of the script', () => {
    const text = reference.bytes.toString('latin1');
    expect(text).toContain('item 3');
    expect(text).toContain('item 5');
    expect(text).toContain('three');
    expect(types(reference.bytes)).toBe('TDCTDCZ' + '12TDDDCZ' + 'CZ' + 'GCZ' + 'TDDDCCZ');
    expect(reference.audit).toEqual([
      { type: 'gateway.query', sql: "select 1 as one; select 'two' as two, 2.5::numeric as n", tags: ['SELECT 1', 'SELECT 1'], rows: 1 },
      { type: 'gateway.execute', statementId: 1, sql: 'select id, name from items where id between $1 and $2 order by id', name: 's1', tag: 'SELECT 3', rows: 3 },
      { type: 'gateway.query', sql: 'begin', tags: ['BEGIN'], rows: null },
      { type: 'gateway.query', sql: `copy ${TABLE} (a, b) from stdin`, tags: ['COPY 3'], rows: 3 },
      { type: 'gateway.query', sql: `select a, b from ${TABLE} order by a; rollback`, tags: ['SELECT 3', 'ROLLBACK'], rows: null },
    ]);
  });

  it('client -> gateway: every cut of the client bytes gives identical answers and audit events', async () => {
    expectAllLikeReference(await everyOffset(SCRIPT.length, 4, (k) => session(fx.grant(), k)), SCRIPT);
  });

  it('client -> gateway during login: the password and the script pipelined behind it, cut at every offset', async () => {
    const n = ser.passwordMessage(fx.authority.token(fx.grant())).length + SCRIPT.length;
    handoffs.length = 0;
    expectAllLikeReference(await everyOffset(n, 4, (k) => pipelinedLogin(fx.grant(), k)));
    // The cuts did reach both handoff paths: whole early messages, and a message split across it.
    expect.soft(handoffs.some((h) => h.early > 0), 'some relay started with early messages').toBe(true);
    expect.soft(handoffs.some((h) => h.partial > 0), 'some relay started with a partial message').toBe(true);
  });

  it('gateway -> client: every cut of the target answer reaches the client as the same bytes', async () => {
    const results = await everyOffset(reference.bytes.length, 4, (k) => {
      const g = fx.grant({ upstream: { host: '127.0.0.1', port: dribbler.port, user: `cut_${k}`, password: 'unused' } });
      return session(g, SCRIPT.length);
    });
    expectAllLikeReference(results, reference.bytes);
  });
});
