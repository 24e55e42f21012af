import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ser from '../../src/gateway/postgres/serializer.js';
import { ensureDebianCommand } from '../support/debian.js';
import { startGatewayFixtureWithAdmin, type GatewayFixture } from '../support/gateway-harness.js';
import { rawLogin } from '../support/gateway-raw-client.js';
import { freePort } from '../support/pg-target.js';
import { eventually } from '../support/target-checks.js';

/**
 * A resource reached through PgBouncer (session pooling) in front of the scram target. PgBouncer
 * refuses the connection check the gateway asks PostgreSQL for, and finds the session a cancel
 * is for by its client connection: a cut-off that reset the connection first left the statement
 * running (review, 2026-12-02), and a cancel sent with a half-close was dropped.
 */
const bin = ensureDebianCommand('pgbouncer', 'pgbouncer');
let fx: GatewayFixture;
let admin: pg.Client;
let stop: (() => Promise<void>) | undefined;
let bouncer: { port: number; child: ChildProcess; dir: string } | undefined;

beforeAll(async () => {
  if (!bin) return;
  ({ fx, admin, stop } = await startGatewayFixtureWithAdmin());
  const dir = mkdtempSync(join(tmpdir(), 'hp-pgbouncer-'));
  const port = await freePort();
  writeFileSync(join(dir, 'users.txt'), `"${fx.roles.rw.user}" "${fx.roles.rw.password}"\n`);
  writeFileSync(join(dir, 'pgbouncer.ini'), [
    '[databases]',
    `app = host=127.0.0.1 port=${fx.target.port} dbname=app`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${join(dir, 'users.txt')}`,
    'pool_mode = session',
    `logfile = ${join(dir, 'pgbouncer.log')}`,
    '',
  ].join('\n'));
  chmodSync(dir, 0o777); // as root, pgbouncer runs as postgres and writes its log here
  for (const f of ['users.txt', 'pgbouncer.ini']) chmodSync(join(dir, f), 0o644);
  const args = process.getuid?.() === 0 ? ['-u', 'postgres', join(dir, 'pgbouncer.ini')] : [join(dir, 'pgbouncer.ini')];
  const child = spawn(bin, args, { stdio: 'ignore' });
  bouncer = { port, child, dir };
  const up = await eventually(async () => child.exitCode === null && spawnSync('pg_isready', ['-h', '127.0.0.1', '-p', String(port)]).status === 0, 10_000, 100);
  if (!up) throw new Error(`pgbouncer did not start: ${readFileSync(join(dir, 'pgbouncer.log'), 'utf8').slice(-500)}`);
});
afterAll(async () => {
  bouncer?.child.kill('SIGTERM');
  await stop?.();
  if (bouncer) rmSync(bouncer.dir, { recursive: true, force: true });
});

describe.skipIf(!bin)('gateway: a resource behind PgBouncer', () => {
  const sleeping = async (): Promise<number> =>
    (await admin.query("select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(600)' and state = 'active'")).rows[0].n;

  it('maps Ctrl-C in psql to a cancel that PgBouncer passes on (review: a cancel sent with a half-close was dropped)', async () => {
    const g = fx.grant({ upstream: { host: '127.0.0.1', port: bouncer?.port ?? 0 } });
    const child = spawn('psql', ['-X', '-c', 'select pg_sleep(600)'], { env: fx.env(g) });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', r));
    expect(await eventually(async () => (await sleeping()) === 1)).toBe(true);
    child.kill('SIGINT');
    expect(await exited).not.toBe(0);
    expect(stderr).toMatch(/canceling statement due to user request/);
    expect(await eventually(async () => (await sleeping()) === 0)).toBe(true);
    expect(bouncer?.child.exitCode).toBeNull(); // the review's cancels also crashed PgBouncer 1.18 once
  });

  it('a revocation stops the statement running behind PgBouncer (the cancel goes before the reset)', async () => {
    const g = fx.grant({ upstream: { host: '127.0.0.1', port: bouncer?.port ?? 0 } });
    const s = await rawLogin(fx.port, fx.authority.token(g));
    s.on('error', () => {});
    s.resume();
    s.write(ser.query('select pg_sleep(600)'));
    expect(await eventually(async () => (await sleeping()) === 1)).toBe(true);
    expect(await fx.gateway.endGrant(g, 'revoked')).toBe(1);
    // Before the fix it was still running 6 s later (and would have run its 600 s).
    expect(await eventually(async () => (await sleeping()) === 0, 10_000)).toBe(true);
    s.destroy();
  });
});
