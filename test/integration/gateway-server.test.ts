import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryEvents, verifyChain } from '../../src/audit/index.js';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../support/hallpass.js';
import { createTestDatabase } from '../support/services.js';
import { eventually } from '../support/target-checks.js';

/**
 * The gateway as the server runs it: the core's authority and audit sink, grant events from the
 * scheduler and the API, and (with a PostgreSQL store) LISTEN/NOTIFY across instances.
 */
describe('gateway in the running server', () => {
  let target: PgTarget;
  let store: { url: string; drop: () => Promise<void> };
  let a: TestHallpass;
  let b: TestHallpass;

  const withGateway = async (instanceId: string, masterKey: string) => {
    const port = await freePort();
    return startTestHallpass({
      target, databaseUrl: store.url, instanceId, masterKey, schedulerPollMs: 100,
      start: { extensions: [gatewayExtension({ host: '127.0.0.1', port, requireTls: true })] },
    });
  };

  beforeAll(async () => {
    target = await startPgTarget();
    const admin = await target.admin();
    await admin.query('create table t (id int)');
    await admin.query('insert into t select generate_series(1, 10)');
    await admin.end();
    store = await createTestDatabase('hp_gw');
    const masterKey = randomBytes(32).toString('base64');
    a = await withGateway('gw-a', masterKey);
    b = await withGateway('gw-b', masterKey);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await store?.drop();
    await target?.stop();
  });

  /** Gateway credentials minted by one instance, used against another instance's gateway. */
  const gatewayClient = async (t: TestHallpass, via: TestHallpass, user: string, grantId: string) => {
    const creds = await t.api(await t.token(user), 'GET', `/api/v1/grants/${grantId}/credentials?via=gateway`);
    expect(creds.status, JSON.stringify(creds.body)).toBe(200);
    expect(creds.body.password).toMatch(/^hpg_/);
    expect(creds.body.dsn).not.toContain(target.adminPassword);
    const gw = via.h.gateway!.address();
    const client = new pg.Client({
      host: '127.0.0.1', port: gw.port, user: creds.body.user, password: creds.body.password, database: creds.body.database,
      ssl: { ca: via.h.gateway!.certificatePem, checkServerIdentity: () => undefined },
    });
    client.on('error', () => {});
    return { client, creds: creds.body };
  };

  it('proxies a session with injected credentials and audits every statement', async () => {
    const r = await a.api(await a.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '10m', reason: 'gw' });
    const { client, creds } = await gatewayClient(a, a, 'alice', r.body.grant.id);
    await client.connect();
    expect((await client.query('select count(*)::int as n from t')).rows[0].n).toBe(10);
    expect((await client.query({ text: 'select id from t where id = $1', values: [3] })).rows).toEqual([{ id: 3 }]);
    await expect(client.query('drop table t')).rejects.toThrow();
    await client.end();
    // the token was single-use
    const replay = new pg.Client({ host: '127.0.0.1', port: a.h.gateway!.address().port, user: creds.user, password: creds.password,
      database: creds.database, ssl: { rejectUnauthorized: false } });
    await expect(replay.connect()).rejects.toThrow(/already used|replay/i);
    const db = a.h.deps.store.db;
    expect(await eventually(async () => (await queryEvents(db, { type: 'gateway.session.end', grantId: r.body.grant.id, limit: 5 })).length === 1)).toBe(true);
    const types = (await queryEvents(db, { grantId: r.body.grant.id, limit: 100 })).map((e) => e.type).filter((x) => x.startsWith('gateway.'));
    expect(types[0]).toBe('gateway.session.start');
    expect(types.filter((x) => x === 'gateway.session.end')).toHaveLength(1);
    expect(types.length).toBeGreaterThanOrEqual(5);
    expect(await eventually(async () => (await queryEvents(db, { type: 'gateway.refused', limit: 10 })).length >= 1)).toBe(true);
    expect((await verifyChain(db)).ok).toBe(true);
    await a.api(await a.token('alice'), 'POST', `/api/v1/grants/${r.body.grant.id}/revoke`, {});
  });

  it('mints a reusable token on request (pools, pgbench -C): several connections until it expires', async () => {
    const r = await a.api(await a.token('alice'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '10m', reason: 'pool' });
    const creds = await a.api(await a.token('alice'), 'GET', `/api/v1/grants/${r.body.grant.id}/credentials?via=gateway&reusable=true`);
    expect(creds.body.password).toMatch(/^hpgm_/);
    for (let i = 0; i < 3; i++) {
      const c = new pg.Client({ host: '127.0.0.1', port: a.h.gateway!.address().port, user: creds.body.user, password: creds.body.password,
        database: 'app-db', ssl: { rejectUnauthorized: false } });
      await c.connect();
      expect((await c.query('select 1 as x')).rows[0].x).toBe(1);
      await c.end();
    }
    await a.api(await a.token('alice'), 'POST', `/api/v1/grants/${r.body.grant.id}/revoke`, {});
  });

  it('cuts a session in the middle of pg_sleep(600) when the grant expires', async () => {
    const r = await a.api(await a.token('dave'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '3s', reason: 'expiry cut' });
    const { client } = await gatewayClient(a, a, 'dave', r.body.grant.id);
    await client.connect();
    const t0 = Date.now();
    const err = await client.query('select pg_sleep(600)').then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/hallpass: access to app-db expired/);
    const endsAt = new Date(r.body.grant.expiresAt).getTime();
    expect(Date.now()).toBeGreaterThanOrEqual(endsAt - 50);
    expect(Date.now() - t0).toBeLessThan(60_000); // it did not run to 600 s
  });

  it('cuts a session on another instance when the grant is revoked through this one (LISTEN/NOTIFY)', async () => {
    const r = await a.api(await a.token('carol'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '10m', reason: 'cross-instance' });
    // connect through instance b's gateway
    const { client } = await gatewayClient(b, b, 'carol', r.body.grant.id);
    await client.connect();
    const running = client.query('select pg_sleep(600)').then(() => undefined, (e: Error) => e);
    await new Promise((res) => setTimeout(res, 300));
    const revoked = await a.api(await a.token('carol'), 'POST', `/api/v1/grants/${r.body.grant.id}/revoke`, { reason: 'cut everywhere' });
    expect(revoked.status).toBe(200);
    const err = await running;
    expect(err?.message).toMatch(/hallpass: access to app-db revoked/);
  });
});
