import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allowMd5, startGatewayFixture, TEST_USER, type GatewayFixture } from '../../../test/support/gateway-harness.js';

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

  it('logs in to an md5 target', async () => {
    await allowMd5(fx.target, 'hp_md5', 'md5-secret-pw');
    const g = fx.grant({ upstream: { user: 'hp_md5', password: 'md5-secret-pw' } });
    expect(await psql(g, 'select current_user')).toBe('hp_md5');
  });
});
