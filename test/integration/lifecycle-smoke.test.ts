import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPgTarget, type PgTarget } from '../support/pg-target.js';
import { startTestHallpass, type TestHallpass } from '../support/hallpass.js';

describe('lifecycle over HTTP against a real PostgreSQL target', () => {
  let target: PgTarget;
  let t: TestHallpass;
  beforeAll(async () => {
    target = await startPgTarget();
    const admin = await target.admin();
    await admin.query('create table orders (id int primary key, total numeric)');
    await admin.query('insert into orders values (1, 10), (2, 20)');
    await admin.end();
    t = await startTestHallpass({ target });
  });
  afterAll(async () => {
    await t?.close();
    await target?.stop();
  });

  it('auto-approves a read grant whose credential reads but cannot write', async () => {
    const alice = await t.token('alice');
    const r = await t.api(alice, 'POST', '/api/v1/requests', { resource: 'app-db', role: 'read', duration: '5m', reason: 'investigate INC-1' });
    expect(r.status).toBe(201);
    expect(r.body.request.status).toBe('approved');
    expect(r.body.grant.status).toBe('active');
    const creds = await t.api(alice, 'GET', `/api/v1/grants/${r.body.grant.id}/credentials`);
    expect(creds.status).toBe(200);
    const c = new pg.Client({ connectionString: creds.body.dsn });
    await c.connect();
    const rows = await c.query('select count(*)::int as n from orders');
    expect(rows.rows[0].n).toBe(2);
    await expect(c.query('insert into orders values (3, 30)')).rejects.toThrow(/read-only transaction|permission denied/);
    // the policy's readOnly role reaches the target as default_transaction_read_only
    expect((await c.query('show default_transaction_read_only')).rows[0].default_transaction_read_only).toBe('on');
    await c.end();
  });
});
