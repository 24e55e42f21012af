import net from 'node:net';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowMd5, startGatewayFixture, type GatewayFixture } from '../../../test/support/gateway-harness.js';
import { rawLogin, rawQuery, rawTls, receiveUntil } from '../../../test/support/gateway-raw-client.js';
import * as ser from './serializer.js';

const run = promisify(execFile);
let fx: GatewayFixture;

beforeAll(async () => {
  fx = await startGatewayFixture();
});
afterAll(async () => {
  await fx?.stop();
});

async function psql(grantId: string, sql: string, extra: string[] = []): Promise<string> {
  const { stdout } = await run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql, ...extra], { env: fx.env(grantId) });
  return stdout.trim();
}

/** The messages of `b` as [type letter, body], for the startup replies. */
function messages(b: Buffer): Array<[string, Buffer]> {
  const out: Array<[string, Buffer]> = [];
  for (let i = 0; i + 5 <= b.length; ) {
    const len = b.readInt32BE(i + 1);
    out.push([String.fromCharCode(b[i] as number), b.subarray(i + 5, i + 1 + len)]);
    i += 1 + len;
  }
  return out;
}
const askedPassword = (got: Buffer) => messages(got).some(([t, body]) => t === 'R' && body.readInt32BE(0) === 3);

describe('protocol version negotiation', () => {
  const PROTOCOL_3_2 = (3 << 16) | 2;

  it('answers a 3.2 client (PostgreSQL 18 libpq asking for the latest) with NegotiateProtocolVersion 3.0, declines _pq_ options, and the session works in 3.0', async () => {
    const s = await rawTls(fx.port);
    try {
      const reply = receiveUntil(s, askedPassword);
      s.write(ser.startupMessage(new Map([['user', 'alice'], ['database', 'app'], ['_pq_.test_option', 'on']]), PROTOCOL_3_2));
      const got = messages(await reply);
      expect(got.map(([t]) => t)).toEqual(['v', 'R']);
      const v = (got[0] as [string, Buffer])[1];
      expect(v.readInt32BE(0)).toBe(3 << 16); // 3.0, sent whole as PostgreSQL sends it
      expect(v.readInt32BE(4)).toBe(1);
      expect(v.subarray(8).toString('utf8')).toBe('_pq_.test_option\0');
      const ready = receiveUntil(s, (b) => messages(b).some(([t]) => t === 'Z'));
      s.write(ser.passwordMessage(fx.authority.token(fx.grant())));
      const login = messages(await ready).map(([t]) => t);
      expect(login).toContain('K');
      expect(login).not.toContain('E');
      expect(await rawQuery(s, 'select 40 + 2 as answer')).toContain('42');
    } finally {
      s.destroy();
    }
  });

  it('declines _pq_ options from a 3.0 client the same way, and says nothing to a plain 3.0 client', async () => {
    for (const [params, expected] of [
      [new Map([['user', 'alice'], ['database', 'app'], ['_pq_.a', '1'], ['_pq_.b', '2']]), ['v', 'R']],
      [new Map([['user', 'alice'], ['database', 'app']]), ['R']],
    ] as const) {
      const s = await rawTls(fx.port);
      try {
        const reply = receiveUntil(s, askedPassword);
        s.write(ser.startupMessage(params));
        const got = messages(await reply);
        expect(got.map(([t]) => t)).toEqual(expected);
        if (expected[0] === 'v') expect((got[0] as [string, Buffer])[1].subarray(8).toString('utf8')).toBe('_pq_.a\0_pq_.b\0');
      } finally {
        s.destroy();
      }
    }
  });

  it('answers a protocol error during a TLS login inside TLS (it was written in clear on the raw socket, so the client saw only a broken TLS record)', async () => {
    const s = await rawTls(fx.port);
    try {
      const asked = receiveUntil(s, askedPassword);
      s.write(ser.startupMessage(new Map([['user', 'alice'], ['database', 'app']])));
      await asked;
      const got = receiveUntil(s, () => false);
      s.write(ser.query('select 1'));
      const m = messages(await got);
      expect(m.map(([t]) => t)).toEqual(['E']);
      expect((m[0] as [string, Buffer])[1].toString('utf8')).toContain('expected a password message');
      await new Promise((r) => setTimeout(r, 30));
      expect(fx.sink.ofType('gateway.refused').at(-1)?.data).toMatchObject({ code: 'protocol_error', message: 'expected a password message', tls: true });
    } finally {
      s.destroy();
    }
  });

  it('answers nothing in clear to a client that sends SSLRequest and leaves (review: a FATAL followed the S)', async () => {
    const raw = net.connect({ port: fx.port, host: '127.0.0.1' });
    raw.on('error', () => {});
    await new Promise((r) => raw.once('connect', r));
    const got = receiveUntil(raw, () => false);
    const before = fx.sink.ofType('gateway.refused').length;
    raw.end(ser.sslRequest());
    expect((await got).toString('latin1')).toBe('S');
    // Audited as before (so later tests count only their own refusals).
    for (let i = 0; i < 100 && fx.sink.ofType('gateway.refused').length === before; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fx.sink.ofType('gateway.refused').slice(before).map((e) => e.data.message)).toEqual(['closed during the TLS handshake']);
  });

  it('refuses protocol 2.0 and 4.0 with a FATAL and an audit event', async () => {
    for (const major of [2, 4]) {
      const before = fx.sink.ofType('gateway.refused').length;
      const s = await rawTls(fx.port);
      const got = receiveUntil(s, () => false);
      s.write(ser.startupMessage(new Map([['user', 'alice'], ['database', 'app']]), major << 16));
      const m = messages(await got);
      expect(m.map(([t]) => t)).toEqual(['E']);
      const text = (m[0] as [string, Buffer])[1].toString('utf8');
      expect(text).toContain('FATAL');
      expect(text).toContain(`unsupported frontend protocol ${major}.0: the gateway supports 3.0`);
      await new Promise((r) => setTimeout(r, 30));
      expect(fx.sink.ofType('gateway.refused').slice(before).map((e) => [e.data.code, e.data.message])).toEqual([
        ['protocol_error', `unsupported frontend protocol ${major}.0: the gateway supports 3.0`],
      ]);
    }
  });
});

describe('PostgreSQL gateway relay', () => {
  it('runs psql -c over TLS verify-full with the grant credential, never the target password', async () => {
    const g = fx.grant();
    expect(await psql(g, 'select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()')).toBe('hp_rw|f');
    const env = fx.env(g);
    expect(JSON.stringify(env)).not.toContain(fx.roles.rw.password);
  });

  it('relays node-postgres simple and extended queries', async () => {
    const c = fx.client(fx.grant());
    await c.connect();
    try {
      const simple = await c.query('select count(*)::int as n from items');
      expect(simple.rows).toEqual([{ n: 100 }]);
      const ext = await c.query('select name from items where id = $1', [42]);
      expect(ext.rows).toEqual([{ name: 'item 42' }]);
      const named = { name: 'by-id', text: 'select id from items where id = $1', values: [7] };
      expect((await c.query(named)).rows).toEqual([{ id: 7 }]);
      expect((await c.query({ ...named, values: [8] })).rows).toEqual([{ id: 8 }]);
      await expect(c.query('select nope')).rejects.toThrow(/column "nope" does not exist/);
      expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end();
    }
  });

  it('forwards allowed startup settings (PGOPTIONS) and never a role or read-only switch', async () => {
    const g = fx.grant({ role: 'read' });
    const env = { ...fx.env(g), PGOPTIONS: '-c statement_timeout=1234 -c role=postgres -c default_transaction_read_only=off' };
    const { stdout } = await run('psql', ['-X', '-At', '-c', 'select current_user, current_setting(\'statement_timeout\'), current_setting(\'default_transaction_read_only\')'], { env });
    expect(stdout.trim()).toBe('hp_ro|1234ms|on');
  });

  it('logs in to an md5 target', async () => {
    await allowMd5(fx.target, 'hp_md5', 'md5-secret-pw');
    const g = fx.grant({ upstream: { user: 'hp_md5', password: 'md5-secret-pw' } });
    expect(await psql(g, 'select current_user')).toBe('hp_md5');
  });

  it('relays COPY in and out, notices and NOTIFY', async () => {
    const g = fx.grant();
    const out = await psql(g, 'copy (select id, name from items where id <= 3 order by id) to stdout');
    expect(out).toBe('1\titem 1\n2\titem 2\n3\titem 3');
    const input = Array.from({ length: 1000 }, (_, i) => `${1000 + i}\tcopied ${i}`).join('\n');
    const child = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-c', 'copy items from stdin'], { env: fx.env(g) });
    child.stdin.end(`${input}\n`);
    const [code] = await new Promise<[number | null]>((r) => child.on('close', (c) => r([c])));
    expect(code).toBe(0);
    expect(await psql(fx.grant(), 'select count(*) from items where id >= 1000')).toBe('1000');

    const c = fx.client(fx.grant());
    const listener = fx.client(fx.grant());
    await Promise.all([c.connect(), listener.connect()]);
    try {
      const notices: string[] = [];
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await c.query("do $$ begin raise notice 'hello from upstream'; end $$");
      expect(notices).toEqual(['hello from upstream']);
      const got = new Promise<string>((r) => listener.on('notification', (n) => r(n.payload ?? '')));
      await listener.query('listen chan');
      await c.query("notify chan, 'ping'");
      expect(await got).toBe('ping');
    } finally {
      await Promise.all([c.end(), listener.end()]);
    }
  });

  it('runs an interactive psql session from stdin', async () => {
    const child = spawn('psql', ['-X', '-At'], { env: fx.env(fx.grant()) });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stdin.write('select 40 + 2;\n');
    child.stdin.write('begin;\nselect name from items where id = 5;\ncommit;\n');
    child.stdin.end('\\q\n');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).toBe(0);
    expect(stdout.split('\n').filter(Boolean)).toEqual(['42', 'BEGIN', 'item 5', 'COMMIT']);
  });

  it('maps Ctrl-C in psql to a cancel of the upstream query', async () => {
    const child = spawn('psql', ['-X', '-c', 'select pg_sleep(60)'], { env: fx.env(fx.grant()) });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor(async () => (await activeSleeps()) === 1);
    child.kill('SIGINT');
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(code).not.toBe(0);
    expect(stderr).toMatch(/canceling statement due to user request/);
    expect(await activeSleeps()).toBe(0);
  });

  it('answers a client that half-closes its socket after sending, as PostgreSQL does (review: it got nothing)', async () => {
    const g = fx.grant();
    const s = await rawLogin(fx.port, fx.authority.token(g));
    const done = receiveUntil(s, () => false); // everything until the gateway closes
    // A statement running for seconds after the FIN too (eighth review: the target's connection
    // check stopped it when the gateway passed the FIN on).
    s.end(Buffer.concat([ser.query('select 41 + 1 as a'), ser.query('select pg_sleep(2.5)'), ser.query("select 'still here' as b")]));
    const got = messages(await done);
    const rows = got.filter(([t]) => t === 'D').map(([, body]) => body.toString('utf8', 6));
    expect(rows).toEqual(['42', '', 'still here']);
    expect(got.filter(([t]) => t === 'Z')).toHaveLength(3);
    expect(got.filter(([t]) => t === 'E')).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    expect(fx.sink.ofType('gateway.session.end').find((e) => e.grantId === g)?.data.reason).toBe('client_closed');
    expect(fx.sink.ofType('gateway.query').filter((e) => e.grantId === g).map((e) => e.data.tags)).toEqual([['SELECT 1'], ['SELECT 1'], ['SELECT 1']]);
  });

  it('applies backpressure: a client that stops reading stalls the target, not the gateway memory', async () => {
    const s = await rawLogin(fx.port, fx.authority.token(fx.grant()));
    const rssBefore = process.memoryUsage().rss;
    s.pause();
    // About 400 MB of rows: far more than any buffer between the target and the client.
    s.write(ser.query("select repeat('x', 4000) from generate_series(1, 100000)"));
    await waitFor(async () => {
      const admin = await fx.target.admin();
      try {
        const r = await admin.query<{ n: number }>(
          "select count(*)::int as n from pg_stat_activity where query like 'select repeat%' and wait_event = 'ClientWrite'",
        );
        return r.rows[0]?.n === 1;
      } finally {
        await admin.end();
      }
    });
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
    s.destroy();
    await waitFor(async () => (await activeSleeps('select repeat%')) === 0);
  });

  it('streams a large result to a slow reader and keeps working', async () => {
    const c = fx.client(fx.grant());
    await c.connect();
    try {
      const r = await c.query("select repeat('x', 1000) as pad from generate_series(1, 20000)");
      expect(r.rowCount).toBe(20000);
    } finally {
      await c.end();
    }
  });

  it('runs pgbench through the gateway, simple and extended', async () => {
    const g = fx.grant();
    await run('pgbench', ['-i', '-s', '1', '-q'], { env: fx.env(g) });
    // pgbench opens several connections with one password: a reusable token.
    const env = fx.env(g, { reusable: true });
    for (const args of [['-M', 'simple'], ['-M', 'extended'], ['-M', 'prepared'], ['-M', 'extended', '-C']]) {
      const { stdout } = await run('pgbench', ['-S', ...args, '-c', '2', '-t', '50', '-n'], { env });
      expect(stdout).toMatch(/number of transactions actually processed: 100\/100/);
    }
  });
});

async function activeSleeps(like = 'select pg_sleep%'): Promise<number> {
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
