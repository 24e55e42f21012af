import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectUpstream, connectWithConnectionCheck } from './upstream.js';
import * as ser from './serializer.js';

/** An authentication request ('R') with its code and body. */
const auth = (code: number, body: Buffer = Buffer.alloc(0)): Buffer => {
  const out = Buffer.alloc(9 + body.length);
  out.write('R', 0, 'latin1');
  out.writeInt32BE(8 + body.length, 1);
  out.writeInt32BE(code, 5);
  body.copy(out, 9);
  return out;
};

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A target that asks for SCRAM-SHA-256, reads whatever comes back, then sends `then` (no SASLFinal). */
async function skippingTarget(then: Buffer): Promise<number> {
  server = createServer((s) => {
    s.on('error', () => {});
    let step = 0;
    s.on('data', () => {
      step++;
      if (step === 1) s.write(auth(10, Buffer.from('SCRAM-SHA-256\0\0', 'latin1')));
      else if (step === 2) s.write(then);
    });
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return a.port;
}

describe('upstream login', () => {
  it('refuses a target that ends SCRAM without proving it knows the password', async () => {
    // A target (or anyone between) that answers the client-first message with AuthenticationOk.
    const port = await skippingTarget(Buffer.concat([auth(0), ser.readyForQuery('I')]));
    const target = { host: '127.0.0.1', port, database: 'app', user: 'hp_x', password: 'pw', ssl: false } as Parameters<typeof connectUpstream>[0];
    await expect(connectUpstream(target, new Map(), 5000)).rejects.toThrow(/without proving it knows the password/);
  });
});

/** A target (trust) that refuses startup settings it does not know, as PostgreSQL 13 refuses client_connection_check_interval. */
async function oldTarget(unknown: string, code = '42704', message = `unrecognized configuration parameter "${unknown}"`): Promise<{ port: number; startups: Map<string, string>[] }> {
  const startups: Map<string, string>[] = [];
  server = createServer((s) => {
    s.on('error', () => {});
    s.once('data', (d: Buffer) => {
      const words = d.toString('utf8', 8).split('\0');
      const params = new Map<string, string>();
      for (let i = 0; i + 1 < words.length && words[i] !== ''; i += 2) params.set(words[i]!, words[i + 1]!);
      startups.push(params);
      if (params.has(unknown)) s.end(ser.errorResponse({ severity: 'FATAL', code, message }));
      else s.write(Buffer.concat([auth(0), ser.backendKeyData(7, 8), ser.readyForQuery('I')]));
    });
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return { port: a.port, startups };
}

describe('the connection check on the upstream login', () => {
  it('asks for client_connection_check_interval, and logs in without it (once asked) where the target does not know it', async () => {
    const t = await oldTarget('client_connection_check_interval');
    const target = { host: '127.0.0.1', port: t.port, database: 'app', user: 'hp_x', password: 'pw', ssl: false } as Parameters<typeof connectUpstream>[0];
    const first = await connectWithConnectionCheck(target, new Map([['application_name', 'psql']]), 5000);
    expect(first.pid).toBe(7);
    // Such a target gets a cut-off's cancel before the reset (a pooler cancels by the client connection).
    expect(first.connectionCheck).toBeUndefined();
    first.socket.destroy();
    expect(t.startups.map((p) => p.get('client_connection_check_interval') ?? null)).toEqual(['1000', null]);
    expect(t.startups[1]?.get('application_name')).toBe('psql');
    const second = await connectWithConnectionCheck(target, new Map(), 5000);
    second.socket.destroy();
    expect(t.startups).toHaveLength(3); // remembered: no second refused attempt
    await new Promise<void>((r) => server?.close(() => r()));
    // any other refusal is the caller's to report, not retried, even one naming the setting
    // (a client can put the name in an invalid value of a setting it may forward)
    const named = await oldTarget('TimeZone', '22023', 'invalid value for parameter "TimeZone": "client_connection_check_interval"');
    await expect(connectWithConnectionCheck({ ...target, port: named.port }, new Map([['TimeZone', 'client_connection_check_interval']]), 5000)).rejects.toThrow(/invalid value/);
    expect(named.startups).toHaveLength(1);
    await new Promise<void>((r) => server?.close(() => r()));
    const other = await oldTarget('application_name');
    await expect(connectWithConnectionCheck({ ...target, port: other.port }, new Map([['application_name', 'x']]), 5000)).rejects.toThrow(/unrecognized configuration parameter "application_name"/);
    expect(other.startups).toHaveLength(1);
    // A target that took the setting: a cut-off resets before it cancels.
    const checked = await connectWithConnectionCheck({ ...target, port: other.port }, new Map(), 5000);
    checked.socket.destroy();
    expect(checked.connectionCheck).toBe(true);
    await new Promise<void>((r) => server?.close(() => r()));
    // PgBouncer refuses it its own way (review: every session behind PgBouncer failed)
    const bouncer = await oldTarget('client_connection_check_interval', '08P01', 'unsupported startup parameter: client_connection_check_interval');
    const viaBouncer = await connectWithConnectionCheck({ ...target, port: bouncer.port }, new Map(), 5000);
    viaBouncer.socket.destroy();
    expect(bouncer.startups.map((p) => p.has('client_connection_check_interval'))).toEqual([true, false]);
  });
});

describe('the upstream login reads', () => {
  it('a message longer than what the login keeps before it stops reading (review: a 140 KB NOTICE hung the login)', async () => {
    const text = 'n'.repeat(500_000);
    const body = Buffer.from(`SWARNING\0M${text}\0\0`, 'utf8');
    const notice = Buffer.alloc(5 + body.length);
    notice.write('N', 0, 'latin1');
    notice.writeInt32BE(4 + body.length, 1);
    body.copy(notice, 5);
    server = createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.write(Buffer.concat([auth(0), notice, ser.backendKeyData(7, 8), ser.readyForQuery('I')])));
    });
    await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
    const a = server.address();
    if (a === null || typeof a === 'string') throw new Error('no address');
    const target = { host: '127.0.0.1', port: a.port, database: 'app', user: 'hp_x', password: 'pw', ssl: false } as Parameters<typeof connectUpstream>[0];
    const conn = await connectUpstream(target, new Map(), 5000);
    expect(conn.pid).toBe(7);
    conn.socket.destroy();
  });
});
