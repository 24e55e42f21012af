import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayFixture, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { rawLogin } from '../../../test/support/gateway-raw-client.js';
import { ProtocolError, readErrorFields, readFunctionCall } from './messages.js';
import * as ser from './serializer.js';

/** pg_catalog.set_config(text, text, boolean): callable by OID over the function-call protocol. */
const SET_CONFIG = 2078;

let fx: GatewayFixture;
beforeAll(async () => {
  fx = await startGatewayFixture();
});
afterAll(async () => {
  await fx?.stop();
});

/** FunctionCall ('F') with text-format arguments and a text result. */
function functionCall(oid: number, args: (string | null)[]): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0, 0, 0]), Buffer.from([0, 1, 0, 0])]; // OID; one format code: text
  parts[0]?.writeInt32BE(oid, 0);
  const n = Buffer.alloc(2);
  n.writeInt16BE(args.length, 0);
  parts.push(n);
  for (const a of args) {
    const v = a === null ? null : Buffer.from(a, 'utf8');
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : v.length, 0);
    parts.push(len);
    if (v) parts.push(v);
  }
  parts.push(Buffer.from([0, 0])); // result format: text
  const body = Buffer.concat(parts);
  const out = Buffer.alloc(5 + body.length);
  out.write('F', 0, 'latin1');
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

interface Reply {
  readonly type: string;
  readonly body: Buffer;
}

/** Writes `bytes` and resolves with the backend messages received up to the `readies`-th ReadyForQuery. */
function exchange(s: TLSSocket, bytes: Buffer, readies = 1): Promise<Reply[]> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const out: Reply[] = [];
    let seen = 0;
    const onClose = () => reject(new Error(`closed after ${JSON.stringify(out.map((m) => m.type))}`));
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5) {
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) break;
        const m = { type: String.fromCharCode(buf[0] ?? 0), body: buf.subarray(5, 1 + len) };
        buf = buf.subarray(1 + len);
        out.push(m);
        if (m.type === 'Z' && ++seen === readies) {
          s.off('data', onData);
          s.off('close', onClose);
          resolve(out);
          return;
        }
      }
    };
    s.on('data', onData);
    s.once('close', onClose);
    s.write(bytes);
  });
}

/** A compact view of replies: errors as `E:SQLSTATE:message`, rows as `D:first column`, others by type. */
function summary(replies: readonly Reply[]): string[] {
  return replies
    .filter((m) => m.type !== 'T' && m.type !== 'C' && m.type !== 'S' && m.type !== 'N')
    .map((m) => {
      if (m.type === 'E') {
        const f = readErrorFields(Buffer.concat([Buffer.from('E\0\0\0\0', 'latin1'), m.body]));
        return `E:${f.get('C')}:${f.get('M')}`;
      }
      if (m.type === 'D') return `D:${m.body.toString('utf8', 6, 6 + m.body.readInt32BE(2))}`;
      if (m.type === 'V') return `V:${m.body.readInt32BE(0) < 0 ? 'null' : m.body.toString('utf8', 4)}`;
      if (m.type === 'Z') return `Z:${String.fromCharCode(m.body[0] ?? 0)}`;
      return m.type;
    });
}

const value = async (s: TLSSocket, sql: string): Promise<string> => summary(await exchange(s, ser.query(sql))).join(' ');

async function waitFor(cond: () => boolean, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('condition not reached');
}

describe('FunctionCall protocol message', () => {
  it('refuses set_config(default_transaction_read_only, off) by OID on a read-only grant, and the session stays read-only', async () => {
    // The target role could write: only the read-only setting stops it.
    const g = fx.grant({ role: 'read', readOnly: true, upstream: { user: fx.roles.rw.user, password: fx.roles.rw.password } });
    const s = await rawLogin(fx.port, fx.authority.token(g));
    try {
      const r = summary(await exchange(s, functionCall(SET_CONFIG, ['default_transaction_read_only', 'off', 'false'])));
      expect(r).toEqual([
        'E:42501:hallpass: the function-call protocol message is not allowed on app for role read (read_only): a function called by OID cannot be checked',
        'Z:I',
      ]);
      expect(await value(s, 'show default_transaction_read_only')).toBe('D:on Z:I');
      expect(await value(s, "insert into items values (5000, 'x')")).toMatch(/^E:25006:cannot execute INSERT in a read-only transaction Z:I$/);
      // Inside a transaction the refusal aborts it, as a failed FunctionCall would.
      expect(await value(s, 'begin')).toBe('Z:T');
      expect(summary(await exchange(s, functionCall(SET_CONFIG, ['transaction_read_only', 'off', 'true'])))).toEqual([expect.stringMatching(/^E:42501:hallpass: the function-call/), 'Z:E']);
      expect(await value(s, 'rollback')).toBe('Z:I');
    } finally {
      s.end(ser.terminate());
    }
  });

  it('refuses set_config(role, …) by OID on a grant with guardrails, and the role is unchanged', async () => {
    const g = fx.grant({ guardrails: ['set_role'] });
    const s = await rawLogin(fx.port, fx.authority.token(g));
    try {
      const r = summary(await exchange(s, functionCall(SET_CONFIG, ['role', fx.target.adminUser, 'false'])));
      expect(r).toEqual([expect.stringMatching(/^E:42501:hallpass: the function-call protocol message is not allowed on app for role write \(set_role\): /), 'Z:I']);
      expect(await value(s, 'select current_user')).toBe(`D:${fx.roles.rw.user} Z:I`);
    } finally {
      s.end(ser.terminate());
    }
  });

  it('keeps responses in order when a refused FunctionCall is pipelined between queries and an extended batch', async () => {
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant({ guardrails: ['ddl'] })));
    try {
      const sync = Buffer.from([0x53, 0, 0, 0, 4]);
      const bind = Buffer.from([0x42, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]);
      const execute = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);
      const bytes = Buffer.concat([
        ser.query("select 'first'"),
        functionCall(SET_CONFIG, ['role', fx.target.adminUser, 'false']),
        ser.query("select 'third'"),
        ser.parse('', "select 'fourth'"), bind, execute, sync,
        functionCall(SET_CONFIG, ['role', fx.target.adminUser, 'false']),
        ser.query('select current_user'),
      ]);
      const r = summary(await exchange(s, bytes, 6));
      expect(r).toEqual([
        'D:first', 'Z:I',
        expect.stringMatching(/^E:42501:hallpass: the function-call protocol message is not allowed .* \(ddl\)/), 'Z:I',
        'D:third', 'Z:I',
        '1', '2', 'D:fourth', 'Z:I',
        expect.stringMatching(/^E:42501:hallpass: the function-call/), 'Z:I',
        `D:${fx.roles.rw.user}`, 'Z:I',
      ]);
    } finally {
      s.end(ser.terminate());
    }
  });

  it('audits a FunctionCall the target skips after an extended-protocol error, refused or not, and stays in step', async () => {
    for (const guardrails of [['ddl'], []]) {
      const g = fx.grant({ guardrails });
      const s = await rawLogin(fx.port, fx.authority.token(g));
      const sync = Buffer.from([0x53, 0, 0, 0, 4]);
      const r = summary(await exchange(s, Buffer.concat([ser.parse('', 'select nope'), functionCall(SET_CONFIG, ['application_name', 'x', 'false']), sync])));
      expect(r, `guardrails ${guardrails.join()}`).toEqual([expect.stringMatching(/^E:42703:/), 'Z:I']);
      expect(await value(s, "select current_setting('application_name') <> 'x'")).toBe('D:t Z:I');
      s.end(ser.terminate());
      await waitFor(() => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.session.end'));
      const calls = fx.sink.events.filter((e) => e.grantId === g && e.type === 'gateway.function_call').map((e) => e.data);
      expect(calls).toEqual([expect.objectContaining({ functionOid: SET_CONFIG, argCount: 3, error: 'skipped' })]);
    }
  });

  it('audits a refused FunctionCall with its OID, argument count and guardrail, without argument values', async () => {
    const g = fx.grant({ role: 'read' });
    const s = await rawLogin(fx.port, fx.authority.token(g));
    await exchange(s, functionCall(SET_CONFIG, ['default_transaction_read_only', 'off', 'false']));
    s.end(ser.terminate());
    await waitFor(() => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.session.end'));
    const calls = fx.sink.events.filter((e) => e.grantId === g && e.type === 'gateway.function_call');
    expect(calls.map((e) => e.data)).toEqual([
      {
        sessionId: expect.any(String),
        functionOid: SET_CONFIG,
        argCount: 3,
        durationMs: expect.any(Number),
        error: '42501',
        denied: { guardrail: 'read_only', reason: 'a function called by OID cannot be checked' },
      },
    ]);
    expect(JSON.stringify(fx.sink.events.filter((e) => e.grantId === g))).not.toContain('default_transaction_read_only');
  });

  it('forwards and audits a FunctionCall for a grant with no guardrails that is not read-only', async () => {
    const g = fx.grant({ storeParameters: true });
    const s = await rawLogin(fx.port, fx.authority.token(g));
    try {
      expect(summary(await exchange(s, functionCall(SET_CONFIG, ['application_name', 'via-fastpath', 'false'])))).toEqual(['V:via-fastpath', 'Z:I']);
      expect(await value(s, 'show application_name')).toBe('D:via-fastpath Z:I');
      const missing = summary(await exchange(s, functionCall(1, [])));
      expect(missing).toEqual([expect.stringMatching(/^E:42883:/), 'Z:I']);
    } finally {
      s.end(ser.terminate());
    }
    await waitFor(() => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.session.end'));
    const calls = fx.sink.events.filter((e) => e.grantId === g && e.type === 'gateway.function_call').map((e) => e.data);
    expect(calls).toEqual([
      { sessionId: expect.any(String), functionOid: SET_CONFIG, argCount: 3, durationMs: expect.any(Number), params: ['application_name', 'via-fastpath', 'false'] },
      { sessionId: expect.any(String), functionOid: 1, argCount: 0, durationMs: expect.any(Number), error: '42883', params: [] },
    ]);
  });

  it('audits no argument values of a forwarded FunctionCall without storeParameters', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    await exchange(s, functionCall(SET_CONFIG, ['application_name', 'secret-ish', 'false']));
    s.end(ser.terminate());
    await waitFor(() => fx.sink.events.some((e) => e.grantId === g && e.type === 'gateway.function_call'));
    const ev = fx.sink.events.find((e) => e.grantId === g && e.type === 'gateway.function_call');
    expect(ev?.data).toMatchObject({ functionOid: SET_CONFIG, argCount: 3 });
    expect(ev?.data.params).toBeUndefined();
    expect(JSON.stringify(ev)).not.toContain('secret-ish');
  });
});

describe('readFunctionCall', () => {
  it('reads the OID, the argument count and, when asked, the values (binary as hex, NULL as null)', () => {
    const f = functionCall(SET_CONFIG, ['a', null, 'c']);
    expect(readFunctionCall(f, false)).toEqual({ oid: SET_CONFIG, nargs: 3 });
    expect(readFunctionCall(f, true)).toEqual({ oid: SET_CONFIG, nargs: 3, args: ['a', null, 'c'] });
    const binary = Buffer.from(f);
    binary[12] = 1; // the one format code: binary
    expect(readFunctionCall(binary, true).args).toEqual(['\\x61', null, '\\x63']);
  });

  it('treats a truncated FunctionCall as a protocol error', () => {
    const f = functionCall(SET_CONFIG, ['a', 'b']);
    for (let end = 5; end < f.length; end++) {
      expect(() => readFunctionCall(f.subarray(0, end), false), `cut at ${end}`).toThrow(ProtocolError);
    }
  });
});
