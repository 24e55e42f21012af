import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { startPgTarget, type PgTarget } from './pg-target.js';

describe('pg-target (scram-sha-256 test PostgreSQL)', () => {
  let target: PgTarget;
  beforeAll(async () => {
    target = await startPgTarget();
  });
  afterAll(async () => {
    await target.stop();
  });

  it('refuses a wrong password, so auth tests against it are not vacuous', async () => {
    const c = new pg.Client({ host: target.host, port: target.port, user: 'postgres', password: 'wrong', database: target.database });
    await expect(c.connect()).rejects.toThrow(/password authentication failed/);
    const ok = await target.admin();
    const r = await ok.query<{ method: string }>("select current_setting('password_encryption') as method");
    expect(r.rows[0]?.method).toBe('scram-sha-256');
    await ok.end();
  });
});
