import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { commandComplete, dataRow, rowDescription, startFakeUpstream, type FakeUpstream } from '../../../test/support/gateway-fake-upstream.js';
import { MemoryAuditSink, TestAuthority } from '../../../test/support/gateway-harness.js';
import { rawLogin } from '../../../test/support/gateway-raw-client.js';
import { readCommandTag, readErrorFields, readStartupPacket } from './messages.js';
import * as ser from './serializer.js';
import { PostgresGateway } from './server.js';

/**
 * Fuzz test of the gateway: random and mutated bytes from clients (before and after login) and
 * from the target. Every input is generated from one seed (HALLPASS_FUZZ_SEED replays a run).
 * Throughout, one healthy session keeps querying and must get every answer right; every fuzzed
 * connection must be closed (or answer) within DEADLINE_MS of its last byte; whenever the gateway
 * detects a protocol violation the client must get a FATAL 08P01 ErrorResponse before the close;
 * after each phase no session is left over and memory growth stays bounded.
 */

/** Deterministic PRNG (mulberry32) so a failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.HALLPASS_FUZZ_SEED ?? 20261121);
const rand = prng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

/** A real gc, so memory is compared without garbage (the flag works at runtime in Node 20). */
const gc: (() => void) | undefined = (() => {
  try {
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  } catch {
    return undefined;
  }
})();

const MAX_MESSAGE = 1 << 20;
const MAX_STARTUP = 10_000; // login.ts
const LOGIN_TIMEOUT_MS = 1000;
// A hang detector, not a latency bound: generous for a loaded shared machine.
const DEADLINE_MS = 5000;

let upstream: FakeUpstream;
let gateway: PostgresGateway;
let port = 0;
let dir = '';
const authority = new TestAuthority();
const sink = new MemoryAuditSink();
let grantId = '';
let baselineSessions = 0;

/** The healthy session: queries in a loop for the whole file, every answer checked. */
const healthy = { answered: 0, failures: [] as string[], stop: false, done: Promise.resolve() };

beforeAll(async () => {
  upstream = await startFakeUpstream(rand);
  dir = mkdtempSync(join(tmpdir(), 'hp-gwfuzz-'));
  gateway = new PostgresGateway({ authority, audit: sink, port: 0, tls: { selfSignedDir: dir }, maxMessageBytes: MAX_MESSAGE, loginTimeoutMs: LOGIN_TIMEOUT_MS });
  ({ port } = await gateway.start());
  grantId = authority.addGrant({
    userId: 'usr_a',
    userName: 'alice',
    resource: 'app',
    role: 'write',
    expiresAt: new Date(Date.now() + 3_600_000),
    upstream: { host: '127.0.0.1', port: upstream.port, database: 'app', user: 'u', password: 'p' },
    guardrails: ['ddl'],
    readOnly: false,
    storeParameters: true,
  });
  const s = await login();
  baselineSessions = gateway.sessions().length;
  expect(baselineSessions).toBe(1);
  healthy.done = (async () => {
    for (let i = 0; !healthy.stop; i++) {
      const want = `healthy-${i}`;
      const got = await Promise.race([
        query(s, `select '${want}'`),
        new Promise<undefined>((r) => setTimeout(r, DEADLINE_MS, undefined)),
      ]);
      if (got === undefined) {
        healthy.failures.push(`no answer to query ${i} within ${DEADLINE_MS} ms`);
        return;
      }
      const rows = got.filter((m) => m.type === 0x44).map((m) => m.body.toString('utf8', 6));
      const tags = got.filter((m) => m.type === 0x43).map((m) => m.body.toString('utf8', 0, m.body.length - 1));
      if (rows.join() !== want || tags.join() !== 'SELECT 1' || got.some((m) => m.type === 0x45)) {
        healthy.failures.push(`query ${i}: wrong answer ${JSON.stringify(got.map((m) => [String.fromCharCode(m.type), m.body.toString('latin1')]))}`);
        return;
      }
      healthy.answered++;
      await new Promise((r) => setTimeout(r, 5));
    }
    s.end(ser.terminate());
  })();
});

afterAll(async () => {
  healthy.stop = true;
  await healthy.done;
  await gateway?.close();
  await upstream?.close();
  rmSync(dir, { recursive: true, force: true });
});

const login = (): Promise<Socket> => rawLogin(port, authority.token(grantId));

interface Msg {
  readonly type: number;
  readonly body: Buffer;
}

/** Splits backend bytes into messages; `rest` is what does not form a whole message. */
function parseBackend(buf: Buffer): { msgs: Msg[]; rest: Buffer } {
  const msgs: Msg[] = [];
  let off = 0;
  while (buf.length - off >= 5) {
    const n = buf.readInt32BE(off + 1);
    if (n < 4 || buf.length - off < n + 1) break;
    msgs.push({ type: buf[off] ?? 0, body: buf.subarray(off + 5, off + 1 + n) });
    off += n + 1;
  }
  return { msgs, rest: buf.subarray(off) };
}

function errorFields(m: Msg): Map<string, string> {
  const f = new Map<string, string>();
  let off = 0;
  while (off < m.body.length && m.body[off] !== 0) {
    const end = m.body.indexOf(0, off + 1);
    if (end < 0) break;
    f.set(String.fromCharCode(m.body[off] ?? 0), m.body.toString('utf8', off + 1, end));
    off = end + 1;
  }
  return f;
}

/** The client got a FATAL 08P01 ErrorResponse as its very last message. */
function expectFatalProtocolViolation(received: Buffer, what: string): void {
  const { msgs, rest } = parseBackend(received);
  const last = msgs.at(-1);
  expect(rest.length, `${what}: trailing bytes after the last message`).toBe(0);
  expect(last?.type, `${what}: last message is not an ErrorResponse: ${received.toString('latin1')}`).toBe(0x45);
  const f = errorFields(last as Msg);
  expect([f.get('S'), f.get('C')], what).toEqual(['FATAL', '08P01']);
}

/** Any 08P01 the gateway sends is FATAL and the last thing on the connection. */
function expectNo08P01ExceptLast(msgs: Msg[], what: string): void {
  msgs.forEach((m, i) => {
    if (m.type !== 0x45) return;
    const f = errorFields(m);
    if (f.get('C') === '08P01') {
      expect(f.get('S'), what).toBe('FATAL');
      expect(i, `${what}: 08P01 not last`).toBe(msgs.length - 1);
    }
  });
}

/** Sends a simple query and resolves with the messages up to ReadyForQuery. */
function query(s: Socket, sql: string): Promise<Msg[]> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const { msgs } = parseBackend(got);
      if (msgs.some((m) => m.type === 0x5a)) {
        s.off('data', onData);
        resolve(msgs);
      }
    };
    s.on('data', onData);
    s.write(ser.query(sql));
  });
}

/** A connection under test: what it received, when it closed. */
interface Watched {
  readonly socket: Socket;
  received(): Buffer;
  /** Resolves with the close time, or undefined if still open `ms` after `from`. */
  closedBy(from: number, ms: number): Promise<number | undefined>;
}

function watch(s: Socket): Watched {
  const got: Buffer[] = [];
  let closedAt: number | undefined;
  const closed = new Promise<number>((r) => s.once('close', () => r((closedAt = Date.now()))));
  s.on('data', (d: Buffer) => got.push(d));
  return {
    socket: s,
    received: () => Buffer.concat(got),
    closedBy: (from, ms) =>
      closedAt !== undefined ? Promise.resolve(closedAt) : Promise.race([closed, new Promise<undefined>((r) => setTimeout(r, Math.max(0, from + ms - Date.now()), undefined))]),
  };
}

/** Where a message stream stops being well framed (the gateway's framing rules). */
function frames(buf: Buffer, max: number, startup: boolean): { frames: [number, Buffer][]; error: boolean; partial: number } {
  const out: [number, Buffer][] = [];
  let off = 0;
  const h = startup ? 4 : 5;
  while (buf.length - off >= h) {
    const n = startup ? buf.readInt32BE(off) : buf.readInt32BE(off + 1);
    const total = startup ? n : n + 1;
    if (startup ? n < 8 || n > max : n < 4 || n + 1 > max) return { frames: out, error: true, partial: 0 };
    if (buf.length - off < total) return { frames: out, error: false, partial: buf.length - off };
    out.push([startup ? 0 : (buf[off] ?? 0), buf.subarray(off, off + total)]);
    off += total;
  }
  return { frames: out, error: false, partial: buf.length - off };
}

async function expectNoLeaks(before: NodeJS.MemoryUsage): Promise<void> {
  const until = Date.now() + DEADLINE_MS;
  while (gateway.sessions().length !== baselineSessions && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  expect(gateway.sessions().length, 'sessions left over').toBe(baselineSessions);
  gc?.();
  const after = process.memoryUsage();
  // Without --expose-gc the heap holds garbage: the bound is generous then.
  const bound = (gc ? 16 : 192) * 1024 * 1024;
  expect(after.heapUsed - before.heapUsed, 'heap growth').toBeLessThan(bound);
  expect(after.arrayBuffers - before.arrayBuffers, 'arrayBuffers growth').toBeLessThan(bound);
  if (process.env.HALLPASS_FUZZ_VERBOSE) console.log('memory growth (MiB)', { gc: gc !== undefined, heap: (after.heapUsed - before.heapUsed) / 2 ** 20, arrayBuffers: (after.arrayBuffers - before.arrayBuffers) / 2 ** 20 });
}

function memory(): NodeJS.MemoryUsage {
  gc?.();
  return process.memoryUsage();
}

afterEach(() => {
  expect(healthy.failures, 'the healthy session was disturbed').toEqual([]);
});

describe(`gateway fuzz (seed ${SEED}; replay with HALLPASS_FUZZ_SEED=${SEED})`, () => {
  it('closes connections that send random bytes or mutated startup packets, each within the deadline', async () => {
    onTestFailed(() => console.error(`fuzz seed ${SEED}: replay with HALLPASS_FUZZ_SEED=${SEED}`));
    const before = memory();
    const startedAt = healthy.answered;
    const valid = ser.startupMessage(new Map([['user', 'alice'], ['database', 'app']]));
    const inputs: Buffer[] = [];
    for (let i = 0; i < 60; i++) inputs.push(bytes(1 + int(200)));
    for (let i = 0; i < 60; i++) {
      const m = Buffer.from(valid);
      for (let k = 0; k < 1 + int(4); k++) m[int(m.length)] = int(256);
      inputs.push(Buffer.concat([int(2) === 0 ? m : m.subarray(0, int(m.length)), bytes(int(20))]));
    }
    inputs.push(Buffer.from([0, 0, 0x27, 0x11, 0, 3, 0, 0])); // 10001-byte startup: over the limit
    inputs.push(Buffer.concat([ser.sslRequest(), Buffer.from('not a TLS handshake')])); // plaintext injected before the handshake
    await Promise.all(
      inputs.map(async (input, i) => {
        const s = netConnect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        const w = watch(s);
        await new Promise((r) => s.once('connect', r));
        s.write(input);
        const lastByte = Date.now();
        const closedAt = await w.closedBy(lastByte, DEADLINE_MS);
        const what = `pre-login input ${i} (${input.toString('hex')})`;
        expect(closedAt, `${what}: not closed within ${DEADLINE_MS} ms of its last byte`).toBeDefined();
        // What the gateway must have detected: a bad first packet, or data after SSLRequest.
        const f = frames(input, MAX_STARTUP, true);
        const first = f.frames[0];
        let expectViolation = f.error && f.frames.length === 0;
        if (first) {
          try {
            const p = readStartupPacket(first[1]);
            // Any data after SSLRequest, framing or not, is refused before the handshake.
            if (p.kind === 'ssl' && input.length > first[1].length) expectViolation = true;
          } catch {
            expectViolation = true;
          }
        }
        if (expectViolation) expectFatalProtocolViolation(w.received(), what);
      }),
    );
    expect(healthy.answered).toBeGreaterThan(startedAt);
    await expectNoLeaks(before);
  });

  // Regression: a non-framing tail after SSLRequest made the framer fail silently; the gateway
  // started TLS anyway and the connection only ended at the login timeout, with no FATAL.
  it('answers plaintext injected after SSLRequest that does not frame with FATAL 08P01', async () => {
    const s = netConnect({ port, host: '127.0.0.1' });
    s.on('error', () => {});
    const w = watch(s);
    await new Promise((r) => s.once('connect', r));
    s.write(Buffer.concat([ser.sslRequest(), Buffer.from('not a TLS handshake')]));
    const closedAt = await w.closedBy(Date.now(), DEADLINE_MS);
    expect(closedAt).toBeDefined();
    expectFatalProtocolViolation(w.received(), 'plaintext after SSLRequest');
  });

  it('survives random and mutated frontend messages after login: each connection closes with 08P01 or still answers', async () => {
    onTestFailed(() => console.error(`fuzz seed ${SEED}: replay with HALLPASS_FUZZ_SEED=${SEED}`));
    const before = memory();
    const startedAt = healthy.answered;
    const templates = [
      ser.query('select 1'),
      ser.parse('s', 'select $1'),
      Buffer.from([0x42, 0, 0, 0, 14, 0, 0x73, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), // Bind (mangled below)
      Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]), // Execute
      Buffer.from([0x53, 0, 0, 0, 4]), // Sync
      Buffer.from([0x46, 0, 0, 0, 4]), // FunctionCall with no body
      Buffer.from([0x43, 0, 0, 0, 5, 0x53]), // Close with no name terminator
    ];
    const inputs = Array.from({ length: 24 }, () => {
      const parts: Buffer[] = [];
      for (let i = 0, n = 1 + int(8); i < n; i++) {
        const t = Buffer.from(templates[int(templates.length)] ?? Buffer.alloc(0));
        const choice = int(8); // mostly valid messages, so some connections stay well formed
        if (choice === 0) parts.push(bytes(1 + int(40)));
        else if (choice === 1) {
          for (let k = 0; k < 1 + int(3); k++) t[5 + int(Math.max(1, t.length - 5))] = int(256);
          parts.push(t);
        } else if (choice === 2) parts.push(t.subarray(0, 1 + int(t.length)));
        else parts.push(t);
      }
      return Buffer.concat(parts);
    });
    const outcomes = { violation: 0, answered: 0, partial: 0, terminated: 0 };
    await Promise.all(
      inputs.map(async (input, i) => {
        const s = await login();
        const w = watch(s);
        s.write(input);
        let lastByte = Date.now();
        const what = `post-login input ${i} (${input.toString('hex')})`;
        const f = frames(input, MAX_MESSAGE, false);
        const terminate = f.frames.findIndex(([t]) => t === 0x58);
        if (terminate >= 0) {
          outcomes.terminated++;
          expect(await w.closedBy(lastByte, DEADLINE_MS), `${what}: not closed after Terminate`).toBeDefined();
          expectNo08P01ExceptLast(parseBackend(w.received()).msgs, what);
          return;
        }
        if (f.error) {
          outcomes.violation++;
          expect(await w.closedBy(lastByte, DEADLINE_MS), `${what}: not closed within ${DEADLINE_MS} ms of its last byte`).toBeDefined();
          expectFatalProtocolViolation(w.received(), what);
          return;
        }
        if (f.partial > 0) {
          // The gateway rightly waits for the rest of a message: the client gives up (FIN).
          outcomes.partial++;
          s.end();
          lastByte = Date.now();
          expect(await w.closedBy(lastByte, DEADLINE_MS), `${what}: not closed within ${DEADLINE_MS} ms of the client's FIN`).toBeDefined();
          expectNo08P01ExceptLast(parseBackend(w.received()).msgs, what);
          return;
        }
        // Well framed: either a body was malformed (then 08P01 and closed) or the session still answers.
        const probe = `probe-${i}`;
        s.write(ser.query(`select '${probe}'`));
        lastByte = Date.now();
        const deadline = lastByte + DEADLINE_MS;
        let answered = false;
        while (Date.now() < deadline && !answered && (await w.closedBy(Date.now(), 20)) === undefined) {
          answered = parseBackend(w.received()).msgs.some((m) => m.type === 0x44 && m.body.toString('utf8', 6) === probe);
        }
        answered ||= parseBackend(w.received()).msgs.some((m) => m.type === 0x44 && m.body.toString('utf8', 6) === probe);
        if (answered) {
          outcomes.answered++;
          expectNo08P01ExceptLast(parseBackend(w.received()).msgs, what);
          s.end(ser.terminate());
          expect(await w.closedBy(Date.now(), DEADLINE_MS), `${what}: not closed after Terminate`).toBeDefined();
        } else {
          outcomes.violation++;
          expect(await w.closedBy(lastByte, DEADLINE_MS), `${what}: neither answered nor closed within ${DEADLINE_MS} ms of its last byte`).toBeDefined();
          expectFatalProtocolViolation(w.received(), what);
        }
      }),
    );
    if (process.env.HALLPASS_FUZZ_VERBOSE) console.log('post-login outcomes', outcomes);
    // The generator must reach both outcomes, or the test proves less than it says.
    expect(outcomes.violation, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(outcomes.answered + outcomes.partial + outcomes.terminated, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(healthy.answered).toBeGreaterThan(startedAt);
    await expectNoLeaks(before);
  });

  it('closes one connection with FATAL 08P01 on an over-limit message without buffering it', async () => {
    const before = memory();
    const s = await login();
    const w = watch(s);
    const header = Buffer.from([0x51, 0, 0, 0, 0]);
    header.writeInt32BE(2 << 20, 1);
    s.write(header);
    expect(await w.closedBy(Date.now(), DEADLINE_MS)).toBeDefined();
    expectFatalProtocolViolation(w.received(), 'over-limit message');
    expect(w.received().toString('latin1')).toMatch(/exceeds the limit/);
    await expectNoLeaks(before);
  });

  it('relays well-framed target messages, cuts a session whose target breaks the protocol with FATAL 08P01, and keeps serving others', async () => {
    onTestFailed(() => console.error(`fuzz seed ${SEED}: replay with HALLPASS_FUZZ_SEED=${SEED}`));
    const before = memory();
    const startedAt = healthy.answered;
    const answers = [rowDescription('text'), dataRow('value'), commandComplete('SELECT 1'), ser.errorResponse({ severity: 'ERROR', code: '22012', message: 'division by zero' })];
    const scripts = new Map<string, Buffer>();
    for (let i = 0; i < 40; i++) {
      const parts = [];
      for (let k = 0, n = 1 + int(4); k < n; k++) {
        const m = Buffer.from(answers[int(answers.length)] ?? Buffer.alloc(0));
        const how = int(6);
        if (how === 0) m.writeInt32BE(int(4), 1); // length below the minimum
        else if (how === 1) m.writeInt32BE(MAX_MESSAGE + int(1 << 30), 1); // oversized length
        else if (how === 2) m.writeInt32BE(Math.max(4, m.length - 1 - 1 - int(m.length - 5)), 1); // shorter than its contents
        else if (how === 3) m.writeInt32BE(m.length - 1 + 1 + int(8), 1); // longer than its contents
        else if (how === 4) for (let j = 0; j < 1 + int(3); j++) m[5 + int(m.length - 5)] = int(256); // a mangled field
        parts.push(m);
      }
      if (int(3) === 0) parts.push(ser.readyForQuery('I'));
      if (int(4) === 0) parts.push(bytes(1 + int(30)));
      scripts.set(`target-${i}`, Buffer.concat(parts));
    }
    scripts.set('garbage-header', Buffer.concat([Buffer.from([0x44, 0, 0, 0, 2]), bytes(30)]));
    upstream.script = (sql) => {
      const key = /^select '(.*)'$/.exec(sql)?.[1];
      const b = key === undefined ? undefined : scripts.get(key);
      return b && { bytes: b, close: true };
    };
    const outcomes = { violation: 0, relayed: 0 };
    try {
      await Promise.all(
        [...scripts].map(async ([key, sent]) => {
          const s = await login();
          const w = watch(s);
          s.write(ser.query(`select '${key}'`));
          const what = `target answer ${key} (${sent.toString('hex')})`;
          // The target sends at once and closes: the gateway must close within the deadline.
          expect(await w.closedBy(Date.now(), DEADLINE_MS), `${what}: not closed within ${DEADLINE_MS} ms`).toBeDefined();
          // What the gateway checks on the target's side: framing, plus CommandComplete and
          // ErrorResponse contents while a query is running.
          const f = frames(sent, MAX_MESSAGE, false);
          let violation = f.error;
          let ok = f.frames.length;
          let running = true;
          for (let j = 0; j < ok; j++) {
            const [t, frame] = f.frames[j] as [number, Buffer];
            try {
              if (running && t === 0x43) readCommandTag(frame);
              if (running && t === 0x45) readErrorFields(frame);
            } catch {
              violation = true;
              ok = j;
            }
            if (t === 0x5a) running = false;
          }
          const relayed = Buffer.concat(f.frames.slice(0, ok).map(([, b]) => b));
          const got = w.received();
          if (violation) {
            outcomes.violation++;
            expect(got.subarray(0, relayed.length).equals(relayed), `${what}: whole messages before the violation not relayed as sent`).toBe(true);
            expectFatalProtocolViolation(got.subarray(relayed.length), what);
          } else {
            outcomes.relayed++;
            expect(got.toString('hex'), `${what}: not relayed byte for byte`).toBe(relayed.toString('hex'));
          }
        }),
      );
    } finally {
      upstream.script = undefined;
    }
    if (process.env.HALLPASS_FUZZ_VERBOSE) console.log('target outcomes', outcomes, 'healthy answers', healthy.answered);
    expect(outcomes.violation, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(outcomes.relayed, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(healthy.answered).toBeGreaterThan(startedAt);
    await expectNoLeaks(before);
  });
});
