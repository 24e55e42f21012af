import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryEvents, verifyChain } from '../../src/audit/index.js';
import { mintGatewayToken } from '../../src/gateway/tokens.js';
import { deriveKey } from '../../src/secrets/index.js';
import { gatewayExtension } from '../../src/server/gateway-extension.js';
import { freePort, startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, targetConnectionYaml, testPolicy, type TestHallpass } from '../support/hallpass.js';
import { createTestDatabase } from '../support/services.js';
import { eventually } from '../support/target-checks.js';

const run = promisify(execFile);

/**
 * The gateway as the server runs it: the core's authority and audit sink, grant events from the
 * scheduler and the API, and (with a PostgreSQL store) LISTEN/NOTIFY across instances.
 */
describe('gateway in the running server', () => {
  let target: PgTarget;
  let store: { url: string; drop: () => Promise<void> };
  let a: TestHallpass;
  let b: TestHallpass;
  let masterKey: string;

  /** The test policy plus a second resource on the same target (for wrong-resource refusals). */
  const policy = () => testPolicy(target).replace('resources:\n', `resources:
  - name: reports-db
    kind: postgres
${targetConnectionYaml(target)}    roles:
      read: { readOnly: true, privileges: { memberOf: [pg_read_all_data] } }
`);

  const withGateway = async (instanceId: string, key: string) => {
    const port = await freePort();
    return startTestHallpass({
      target, databaseUrl: store.url, instanceId, masterKey: key, schedulerPollMs: 100, policy: policy(),
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
    masterKey = randomBytes(32).toString('base64');
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

  it('cuts a session whose grant ended in the store without an event reaching its instance (resync)', async () => {
    const r = await a.api(await a.token('dave'), 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '10m', reason: 'missed event' });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    const { client } = await gatewayClient(b, b, 'dave', r.body.grant.id);
    await client.connect();
    const running = client.query('select pg_sleep(600)').then(() => undefined, (e: Error) => e);
    await new Promise((res) => setTimeout(res, 300));
    // As if the NOTIFY was lost (b's LISTEN down, or the publish failed): the store alone says
    // the grant is being revoked. The revocation on the target is not due yet, so only the
    // gateway's own re-read of the store can end this session.
    await a.h.deps.store.db.updateTable('grants').set({ status: 'revoking', end_reason: 'revoked' }).where('id', '=', r.body.grant.id).execute();
    const err = await running;
    expect(err?.message).toMatch(/hallpass: access to app-db revoked/);
  });

  describe('refusals through the real server: the client is told why, and gateway.refused is stored with the code and client address', () => {
    let caDir: string;
    let caFile: string;
    beforeAll(() => {
      caDir = mkdtempSync(join(tmpdir(), 'hp-gw-refuse-'));
      caFile = join(caDir, 'gateway-ca.pem');
      writeFileSync(caFile, a.h.gateway!.certificatePem!, { mode: 0o600 });
    });
    afterAll(() => rmSync(caDir, { recursive: true, force: true }));

    const grantFor = async (user: string, duration = '10m', resource = 'app-db') => {
      const r = await a.api(await a.token(user), 'POST', '/api/v1/requests', { resource, role: 'read', duration, reason: 'refusals' });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
      return r.body.grant as { id: string; expiresAt: string };
    };
    const apiToken = async (user: string, grantId: string): Promise<string> => {
      const creds = await a.api(await a.token(user), 'GET', `/api/v1/grants/${grantId}/credentials?via=gateway`);
      expect(creds.status, JSON.stringify(creds.body)).toBe(200);
      return creds.body.password as string;
    };
    /** Minted with the server's own key (as the core does), here with a chosen lifetime and no cap at the grant's end. */
    const mint = (grantId: string, now: Date, ttlMs: number) =>
      mintGatewayToken(deriveKey(Buffer.from(masterKey, 'base64'), 'gateway-token-hmac'), { grantId, now, ttlMs }).token;

    const headSeq = async (): Promise<number> => {
      const row = await a.h.deps.store.db.selectFrom('audit_events').select((eb) => eb.fn.max('seq').as('seq')).executeTakeFirst();
      return Number(row?.seq ?? 0);
    };
    /** The one gateway.refused event stored after `seq`, read back through the audit API. */
    const refusedAfter = async (seq: number) => {
      let events: { actor: string; grantId: string | null; data: Record<string, unknown> }[] = [];
      await eventually(async () => {
        const r = await a.api(a.adminToken, 'GET', `/api/v1/audit?type=gateway.refused&afterSeq=${seq}`);
        events = r.body.events;
        return events.length > 0;
      });
      expect(events).toHaveLength(1);
      return events[0]!;
    };

    /** node-postgres, verifying the gateway with its CA; resolves with the error and the client's own address. */
    const pgAttempt = async (user: string, password: string, database = 'app-db') => {
      const client = new pg.Client({
        host: '127.0.0.1', port: a.h.gateway!.address().port, user, password, database, ssl: { ca: a.h.gateway!.certificatePem },
        connectionTimeoutMillis: 10_000,
      });
      client.on('error', () => {});
      let local = '';
      const raw = (client as unknown as { connection: { stream: Socket } }).connection.stream;
      raw.once('connect', () => (local = `${raw.localAddress}:${raw.localPort}`));
      const error = await client.connect().then(() => undefined, (e: Error) => e);
      if (!error) await client.end();
      return { error, local };
    };
    /** The real psql with sslmode=verify-full; resolves with its stderr (it must fail). */
    const psqlAttempt = async (user: string, password: string, database = 'app-db') => {
      const env = {
        PATH: '/usr/bin:/bin', PGHOST: '127.0.0.1', PGPORT: String(a.h.gateway!.address().port), PGUSER: user, PGDATABASE: database,
        PGPASSWORD: password, PGSSLMODE: 'verify-full', PGSSLROOTCERT: caFile, PGCONNECT_TIMEOUT: '10',
      };
      const r = await run('/usr/bin/psql', ['-X', '-Atc', 'select 1'], { env }).then(() => undefined, (e: { code?: number; stderr?: string }) => e);
      expect(r, 'psql connected but should have been refused').toBeDefined();
      expect(r!.code).toBe(2); // psql: the connection failed
      return r!.stderr ?? '';
    };
    const expectRefusal = (
      ev: { actor: string; grantId: string | null; data: Record<string, unknown> },
      want: { code: string; actor: string; resource: string; clientAddress?: string; grantId?: string },
    ) => {
      expect(ev.data.code).toBe(want.code);
      // An authentic token names its grant and the event says which; a bad one names none.
      expect(ev.grantId).toBe(want.grantId ?? null);
      expect(ev.actor).toBe(want.actor);
      expect(ev.data.resource).toBe(want.resource);
      expect(ev.data.tls).toBe(true);
      expect(ev.data.clientAddress).toMatch(/^127\.0\.0\.1:\d+$/);
      if (want.clientAddress !== undefined) expect(ev.data.clientAddress).toBe(want.clientAddress);
      expect(JSON.stringify(ev.data)).not.toContain('hpg_'); // the token itself is never stored
    };

    it('a garbage token (psql): bad_token', async () => {
      const seq = await headSeq();
      const stderr = await psqlAttempt('alice', 'hpg_not-a-token');
      expect(stderr).toMatch(/FATAL:\s+hallpass: invalid gateway token/);
      expectRefusal(await refusedAfter(seq), { code: 'bad_token', actor: 'alice', resource: 'app-db' });
    });

    it('a well-formed token with a forged MAC (node-postgres): bad_token', async () => {
      const g = await grantFor('alice');
      const token = mint(g.id, new Date(), 60_000);
      const forged = `${token.slice(0, -1)}${token.endsWith('A') ? 'B' : 'A'}`;
      const seq = await headSeq();
      const { error, local } = await pgAttempt('alice', forged);
      expect(error?.message).toBe('hallpass: invalid gateway token');
      expectRefusal(await refusedAfter(seq), { code: 'bad_token', actor: 'alice', resource: 'app-db', clientAddress: local });
    });

    it('an expired gateway token (minted with a 300 ms TTL, used after it) for a live grant: expired', async () => {
      const g = await grantFor('alice');
      const token = mint(g.id, new Date(), 300);
      await new Promise((r) => setTimeout(r, 400));
      const seq = await headSeq();
      const { error, local } = await pgAttempt('alice', token);
      expect(error?.message).toMatch(/^hallpass: gateway token expired: mint a new one/);
      // The token is authentic: its refusal names the grant (third review, 2026-12-02: it did not,
      // so a tokenless flood could hide a leaked token tried late among the anonymous refusals).
      expectRefusal(await refusedAfter(seq), { code: 'expired', actor: 'alice', resource: 'app-db', clientAddress: local, grantId: g.id });
      // psql says the same
      const seq2 = await headSeq();
      expect(await psqlAttempt('alice', token)).toMatch(/FATAL:\s+hallpass: gateway token expired/);
      expectRefusal(await refusedAfter(seq2), { code: 'expired', actor: 'alice', resource: 'app-db', grantId: g.id });
    });

    it('a token for a revoked grant (psql): revoked', async () => {
      const g = await grantFor('alice');
      const token = await apiToken('alice', g.id);
      expect((await a.api(await a.token('alice'), 'POST', `/api/v1/grants/${g.id}/revoke`, { reason: 'refusal test' })).status).toBe(200);
      const seq = await headSeq();
      expect(await psqlAttempt('alice', token)).toMatch(/FATAL:\s+hallpass: access to app-db was revoked/);
      expectRefusal(await refusedAfter(seq), { code: 'revoked', actor: 'alice', resource: 'app-db', grantId: g.id });
    });

    it('a token for an expired grant (real scheduler expiry): expired, whether the token outlives the grant or not', async () => {
      const g = await grantFor('dave', '3s');
      const fromApi = await apiToken('dave', g.id); // capped at the grant's end
      const outliving = mint(g.id, new Date(), 10 * 60_000); // valid past the grant's end: the grant itself is checked
      expect(await eventually(async () => (await a.api(await a.token('dave'), 'GET', `/api/v1/grants/${g.id}`)).body.status === 'expired', 15_000, 100)).toBe(true);

      const seq = await headSeq();
      const first = await pgAttempt('dave', outliving);
      expect(first.error?.message).toBe('hallpass: access to app-db expired');
      expectRefusal(await refusedAfter(seq), { code: 'expired', actor: 'dave', resource: 'app-db', clientAddress: first.local, grantId: g.id });

      const seq2 = await headSeq();
      const second = await pgAttempt('dave', fromApi);
      expect(second.error?.message).toMatch(/^hallpass: gateway token expired/);
      expectRefusal(await refusedAfter(seq2), { code: 'expired', actor: 'dave', resource: 'app-db', clientAddress: second.local, grantId: g.id });
    });

    it('a token used with the database name of another resource: wrong_resource (and the token is not spent)', async () => {
      const g = await grantFor('alice');
      const token = await apiToken('alice', g.id);
      const seq = await headSeq();
      const { error, local } = await pgAttempt('alice', token, 'reports-db');
      expect(error?.message).toBe('hallpass: this token is for app-db, not reports-db');
      expectRefusal(await refusedAfter(seq), { code: 'wrong_resource', actor: 'alice', resource: 'reports-db', clientAddress: local, grantId: g.id });
      const seq2 = await headSeq();
      expect(await psqlAttempt('alice', token, 'reports-db')).toMatch(/FATAL:\s+hallpass: this token is for app-db, not reports-db/);
      expectRefusal(await refusedAfter(seq2), { code: 'wrong_resource', actor: 'alice', resource: 'reports-db', grantId: g.id });
      // The right resource still works with the same token: a refusal did not use it up.
      expect((await pgAttempt('alice', token)).error).toBeUndefined();
      await a.api(await a.token('alice'), 'POST', `/api/v1/grants/${g.id}/revoke`, {});
    });

    it('another user\'s grant: dave\'s token presented as alice is not_owner', async () => {
      const g = await grantFor('dave');
      const token = await apiToken('dave', g.id);
      const seq = await headSeq();
      const { error, local } = await pgAttempt('alice', token);
      expect(error?.message).toBe('hallpass: this token belongs to another user\'s grant');
      expectRefusal(await refusedAfter(seq), { code: 'not_owner', actor: 'alice', resource: 'app-db', clientAddress: local, grantId: g.id });
      const seq2 = await headSeq();
      expect(await psqlAttempt('alice', token)).toMatch(/FATAL:\s+hallpass: this token belongs to another user's grant/);
      expectRefusal(await refusedAfter(seq2), { code: 'not_owner', actor: 'alice', resource: 'app-db', grantId: g.id });
      await a.api(await a.token('dave'), 'POST', `/api/v1/grants/${g.id}/revoke`, {});
    });

    it('a replayed single-use token: the first connection works, the second is refused as replayed (psql and node-postgres)', async () => {
      const g = await grantFor('carol');
      const token = await apiToken('carol', g.id);
      expect((await pgAttempt('carol', token)).error).toBeUndefined();
      const seq = await headSeq();
      const { error, local } = await pgAttempt('carol', token);
      expect(error?.message).toBe('hallpass: this gateway token was already used: mint a new one');
      expectRefusal(await refusedAfter(seq), { code: 'replayed', actor: 'carol', resource: 'app-db', clientAddress: local, grantId: g.id });
      const seq2 = await headSeq();
      expect(await psqlAttempt('carol', token)).toMatch(/FATAL:\s+hallpass: this gateway token was already used/);
      expectRefusal(await refusedAfter(seq2), { code: 'replayed', actor: 'carol', resource: 'app-db', grantId: g.id });
      await a.api(await a.token('carol'), 'POST', `/api/v1/grants/${g.id}/revoke`, {});
    });
  });
});
