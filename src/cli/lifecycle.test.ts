import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPgTarget, type PgTarget } from '../../test/support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../../test/support/hallpass.js';
import { memoryIo } from './io.js';
import { buildProgram, runCli } from './program.js';
import type { Grant, Request, RequestOutcome } from './views.js';

let target: PgTarget;
let t: TestHallpass;
let home: string;

/** Runs one hallpass command in-process as `user`; returns exit code and output. */
async function hp(user: string | undefined, args: string[], extraEnv: Record<string, string> = {}) {
  const env: Record<string, string> = { XDG_CONFIG_HOME: home, HALLPASS_SERVER: t.h.url, ...extraEnv };
  if (user) env.HALLPASS_TOKEN = user === 'admin' ? t.adminToken : await t.token(user);
  const io = memoryIo(env, { pollIntervalMs: 50 });
  const code = await runCli(buildProgram(io), args);
  return { code, out: io.out, err: io.err };
}

async function hpJson<T>(user: string, args: string[]): Promise<T> {
  const r = await hp(user, [...args, '--json']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as T;
}

const request = (user: string, role: string, extra: string[] = []) =>
  hpJson<RequestOutcome>(user, ['request', 'app-db', '--role', role, '--reason', `cli test ${role}`, ...extra]);

async function query(dsn: string, sql: string): Promise<unknown[]> {
  const c = new pg.Client({ connectionString: dsn });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

/** Runs /usr/bin/psql with `dsn` as its argument, with no PG* variables and no password file. */
async function psql(dsn: string, sql: string): Promise<{ code: number; out: string; err: string }> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
  return new Promise((resolve) => {
    execFile('/usr/bin/psql', [dsn, '-X', '-tA', '-c', sql], { env: { ...env, PGPASSFILE: '/dev/null', PGCONNECT_TIMEOUT: '5' } }, (error, out, err) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, out, err });
    });
  });
}

beforeAll(async () => {
  target = await startPgTarget();
  const admin = await target.admin();
  await admin.query('create table orders (id int primary key, total numeric)');
  await admin.query('insert into orders values (1, 10), (2, 20)');
  await admin.end();
  t = await startTestHallpass({ target });
  home = mkdtempSync(join(tmpdir(), 'hp-cli-home-'));
});

afterAll(async () => {
  await t?.close();
  await target?.stop();
  if (home) rmSync(home, { recursive: true, force: true });
});

describe('hallpass CLI against a real server and PostgreSQL target', () => {
  it('request (auto-approved) then creds --format dsn gives a DSN that psql and node-postgres log in with', async () => {
    const req = await hp('alice', ['request', 'app-db', '--role', 'read', '--for', '5m', '--reason', 'investigate INC-1']);
    expect(req.code).toBe(0);
    expect(req.out).toMatch(/request req_[0-9a-z]{16} approved/);
    expect(req.out).toMatch(/grant (grt_[0-9a-z]{16}) active: app-db\/read as \S+, expires in 4m 5\ds|expires in 5m/);
    const grantId = /grant (grt_[0-9a-z]{16})/.exec(req.out)![1]!;
    const creds = await hp('alice', ['creds', grantId, '--format', 'dsn']);
    expect(creds.code).toBe(0);
    const rows = await query(creds.out.trim(), 'select count(*)::int as n from orders');
    expect(rows).toEqual([{ n: 2 }]);
    // psql takes the printed line as is, as in `psql "$(hallpass creds ... --format dsn)"`; the
    // target demands scram-sha-256, so the DSN's password is what lets it in
    expect(creds.out.split('\n').filter(Boolean)).toHaveLength(1);
    const ok = await psql(creds.out.trim(), 'select 1');
    expect(ok.err).toBe('');
    expect(ok).toMatchObject({ code: 0, out: '1\n' });
    const wrong = await psql(creds.out.trim().replace(/:([^:@/]+)@/, ':not-the-password@'), 'select 1');
    expect(wrong.code).not.toBe(0);
    expect(wrong.err).toMatch(/password authentication failed/);
  });

  it('creds --format env prints shell-quoted exports and json parses', async () => {
    const o = await request('dave', 'read');
    const env = await hp('dave', ['creds', o.grant!.id]);
    expect(env.out).toMatch(/^export PGHOST='127\.0\.0\.1'$/m);
    expect(env.out).toMatch(/^export PGPASSWORD='[^']*'$/m);
    const j = await hpJson<{ user: string; dsn: string; viaGateway: boolean }>('dave', ['creds', o.grant!.id]);
    expect(j.viaGateway).toBe(false);
    expect(j.dsn).toContain(encodeURIComponent(j.user));
  });

  it('a request needing approval is approved by another user, who can shorten it', async () => {
    const o = await request('alice', 'write', ['--for', '1h']);
    expect(o.request.status).toBe('pending');
    expect(o.grant).toBeUndefined();
    const self = await hp('alice', ['approve', o.request.id]);
    expect(self.code).toBe(1);
    expect(self.err).toMatch(/^hallpass: .*approve/m);
    const ok = await hp('bob', ['approve', o.request.id, '--for', '15m', '--comment', 'ok for INC-1']);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/approved/);
    expect(ok.out).toMatch(/grant grt_[0-9a-z]{16} active: app-db\/write/);
    const listed = await hpJson<{ requests: Request[] }>('alice', ['requests']);
    const mine = listed.requests.find((r) => r.id === o.request.id)!;
    expect(mine.status).toBe('approved');
    expect(mine.approvals[0]).toMatchObject({ approver: 'bob', duration: '15m', comment: 'ok for INC-1' });
  });

  it('deny with a reason; the requester sees it', async () => {
    const o = await request('alice', 'write');
    const pending = await hp('bob', ['requests', '--pending']);
    expect(pending.out).toContain(o.request.id);
    const d = await hp('bob', ['deny', o.request.id, '--reason', 'use the read role']);
    expect(d.code).toBe(0);
    expect(d.out).toContain(`request ${o.request.id} denied: use the read role`);
  });

  it('cancel a pending request', async () => {
    const o = await request('alice', 'write');
    const c = await hp('alice', ['cancel', o.request.id]);
    expect(c.code).toBe(0);
    expect(c.out).toContain(`request ${o.request.id} cancelled`);
    const again = await hp('alice', ['cancel', o.request.id]);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/^hallpass: /);
  });

  it('request --wait prints credentials once another user approves in parallel', async () => {
    const waiting = hp('dave', ['request', 'app-db', '--role', 'write', '--reason', 'deploy fix', '--wait', '--format', 'dsn']);
    let pendingId: string | undefined;
    while (!pendingId) {
      const list = await hpJson<{ requests: Request[] }>('bob', ['requests', '--pending']);
      pendingId = list.requests.find((r) => r.requester === 'dave' && r.reason === 'deploy fix')?.id;
    }
    const approved = await hp('carol', ['approve', pendingId]);
    expect(approved.code).toBe(0);
    const r = await waiting;
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/waiting: request req_\w+ pending: 0\/1 approvals from sre/);
    const rows = await query(r.out.trim(), 'select total::int from orders where id = 1');
    expect(rows).toEqual([{ total: 10 }]);
  });

  it('request --wait exits 1 with the reason when the request is denied', async () => {
    const waiting = hp('dave', ['request', 'app-db', '--role', 'write', '--reason', 'to be denied', '--wait']);
    let pendingId: string | undefined;
    while (!pendingId) {
      const list = await hpJson<{ requests: Request[] }>('bob', ['requests', '--pending']);
      pendingId = list.requests.find((r) => r.reason === 'to be denied')?.id;
    }
    expect((await hp('bob', ['deny', pendingId, '--reason', 'not during the freeze'])).code).toBe(0);
    const r = await waiting;
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toContain(`hallpass: request ${pendingId} was denied: not during the freeze`);
  });

  it('request --wait --timeout gives up with exit 1 and says the request stays open', async () => {
    const r = await hp('dave', ['request', 'app-db', '--role', 'write', '--reason', 'nobody answers', '--wait', '--timeout', '1s']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/hallpass: gave up waiting for request (req_\w+) \(still pending\); it stays open: hallpass cancel \1\n$/);
    const id = /cancel (req_\w+)/.exec(r.err)![1]!;
    expect((await hp('dave', ['cancel', id])).code).toBe(0);
  });

  it('extend an active grant; revoke it and its credential stops working', async () => {
    const o = await request('alice', 'read', ['--for', '5m']);
    const grantId = o.grant!.id;
    const ext = await hpJson<RequestOutcome>('alice', ['extend', grantId, '--by', '10m', '--reason', 'still digging']);
    expect(ext.request.kind).toBe('extension');
    expect(ext.request.status).toBe('approved');
    const dsn = (await hp('alice', ['creds', grantId, '--format', 'dsn'])).out.trim();
    await expect(query(dsn, 'select 1 as one')).resolves.toEqual([{ one: 1 }]);
    const rv = await hp('alice', ['revoke', grantId, '--reason', 'done']);
    expect(rv.code).toBe(0);
    expect(rv.out).toMatch(new RegExp(`grant ${grantId} (revoked|revoking)`));
    const after = (await hpJson<{ grants: Grant[] }>('alice', ['grants'])).grants.find((g) => g.id === grantId)!;
    expect(['revoked', 'revoking']).toContain(after.status);
    await expect(query(dsn, 'select 1')).rejects.toThrow();
  });

  it('grants --active lists live grants in a table with relative expiry', async () => {
    const o = await request('carol', 'read', ['--for', '5m']);
    const r = await hp('carol', ['grants', '--active']);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[0]).toMatch(/^ID\s+STATUS\s+USER\s+RESOURCE\s+ROLE/);
    expect(r.out).toMatch(new RegExp(`${o.grant!.id}\\s+active\\s+carol\\s+app-db\\s+read\\s+\\S+\\s+expires in (4m \\d+s|5m)`));
  });

  it('--json output of list commands parses', async () => {
    expect((await hpJson<{ resources: Array<{ name: string }> }>('alice', ['resources'])).resources.map((r) => r.name)).toEqual(['app-db']);
    expect(await hpJson<{ name: string; groups: string[] }>('alice', ['me'])).toMatchObject({ name: 'alice', groups: ['engineers'] });
    expect(Array.isArray((await hpJson<{ grants: unknown[] }>('alice', ['grants', '--active'])).grants)).toBe(true);
    expect(Array.isArray((await hpJson<{ requests: unknown[] }>('alice', ['requests'])).requests)).toBe(true);
  });

  it('a bad duration is a usage error (exit 2) before any call', async () => {
    const r = await hp('alice', ['request', 'app-db', '--role', 'read', '--for', '30x', '--reason', 'x'], { HALLPASS_SERVER: 'http://127.0.0.1:9' });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^hallpass: option '--for <duration>' argument '30x' is invalid\. not a duration/);
    expect(r.out).toBe('');
  });

  it('a missing reason is a usage error (exit 2)', async () => {
    const r = await hp('alice', ['request', 'app-db', '--role', 'read']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("hallpass: required option '--reason <text>' not specified");
  });

  it('an unknown resource fails with the server\'s message (exit 1) and no stack trace', async () => {
    const r = await hp('alice', ['request', 'no-such-db', '--role', 'read', '--reason', 'x']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^hallpass: .*no-such-db/);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(r.err.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('a wrong token is refused and the token is never printed', async () => {
    const bogus = `hp_tok_${'x'.repeat(43)}`;
    const r = await hp(undefined, ['grants'], { HALLPASS_TOKEN: bogus });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^hallpass: /);
    expect(r.err + r.out).not.toContain(bogus);
  });

  it('connect runs psql with the credentials in its environment, not its arguments', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'hp-fake-psql-'));
    const log = join(bin, 'log');
    writeFileSync(join(bin, 'psql'), `#!/bin/sh\n{ echo "args=$*"; echo "user=$PGUSER"; echo "pw=$PGPASSWORD"; echo "tok=$HALLPASS_TOKEN"; echo "svc=$PGSERVICE"; } > ${log}\nexit 3\n`);
    chmodSync(join(bin, 'psql'), 0o755);
    try {
      const o = await request('dave', 'read');
      // dave holds write (from the --wait test) and read: the role must be chosen.
      const both = await hp('dave', ['connect', 'app-db'], { PATH: `${bin}:/usr/bin:/bin` });
      expect(both.code).toBe(1);
      expect(both.err).toMatch(/^hallpass: you hold several roles on app-db \((write, read|read, write)\): choose one with --role\n$/);
      const r = await hp('dave', ['connect', 'app-db', '--role', 'read', '--', '-c', 'select 1'], { PATH: `${bin}:/usr/bin:/bin`, PGSERVICE: 'elsewhere' });
      expect(r.err).toContain(`connecting to app-db as ${o.grant!.principal}`);
      expect(r.code).toBe(3); // psql's own exit code
      const seen = readFileSync(log, 'utf8');
      expect(seen).toContain('args=-c select 1');
      expect(seen).toContain(`user=${o.grant!.principal}`);
      expect(seen).toMatch(/^pw=\S+$/m);
      expect(seen).toContain('tok=\n');
      expect(seen).toContain('svc=\n');
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });

  it('connect says clearly when psql is missing, and when there is no grant', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'hp-empty-path-'));
    try {
      const missing = await hp('dave', ['connect', 'app-db', '--role', 'read'], { PATH: empty });
      expect(missing.code).toBe(1);
      expect(missing.err).toContain('hallpass: psql is not installed (not found on PATH)');
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    const none = await hp('bob', ['connect', 'app-db']);
    expect(none.code).toBe(1);
    expect(none.err).toContain('hallpass: you have no active grant on app-db');
  });
});
