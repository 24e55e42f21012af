import pg from 'pg';
import { randomBytes } from 'node:crypto';

/**
 * Where the machine's shared services are. Defaults match CI; env vars override.
 * The machine's PostgreSQL trusts local logins: use it for the state store only, never to
 * prove that a password or an expiry keeps someone out (see test/support/pg-target.ts).
 */
export const services = {
  postgresUrl: process.env.HALLPASS_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  mysqlUrl: process.env.HALLPASS_TEST_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test',
  redisUrl: process.env.HALLPASS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
};

/** Creates a fresh database on the shared PostgreSQL; returns its URL and a drop function. */
export async function createTestDatabase(prefix = 'hp_test'): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: services.postgresUrl });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(services.postgresUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: services.postgresUrl });
      await c.connect();
      try {
        await c.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}
